"""Downloaded layouts (GEARS, scPerturb) read as the input contract: the same labels, checks and
pseudobulk as the contract's own file, and a clear error when a layout's column is missing."""

import json

import pandas as pd
import pytest
from pertprobe.data.dataset import DatasetSpec
from pertprobe.data.layouts import LAYOUTS, resolve
from pertprobe.data.preprocess import PreprocessConfig, load_counts, preprocess
from pertprobe.data.validate import validate_dataset
from pertprobe.errors import InputError

from ...conftest import ROOT


def _gears(adata):
    """The contract file rewritten in GEARS' layout: condition ctrl / A+ctrl / A+B, Ensembl var_names, gene_name."""
    out = adata.copy()
    labels = out.obs.pop("perturbation").astype(str)
    out.obs["condition"] = [("ctrl" if lab == "control" else lab if "+" in lab else f"{lab}+ctrl") for lab in labels]
    out.obs["cell_type"] = "K562"
    out.var["gene_name"] = out.var_names.astype(str)
    out.var_names = [f"ENSG{i:011d}" for i in range(out.n_vars)]
    return out


def _scperturb(adata):
    """The contract file in scPerturb's layout: control / A / A_B with nperts."""
    out = adata.copy()
    labels = out.obs["perturbation"].astype(str)
    out.obs["perturbation"] = labels.str.replace("+", "_", regex=False).to_numpy()
    out.obs["nperts"] = [0 if lab == "control" else lab.count("+") + 1 for lab in labels]
    out.obs["dose_value"], out.obs["cell_line"] = 0.0, "K562"
    return out


@pytest.fixture(scope="module")
def files(small_sim, tmp_path_factory):
    folder = tmp_path_factory.mktemp("layouts")
    contract = small_sim.to_anndata()
    paths = {}
    for name, convert in (("pertprobe", lambda a: a), ("gears", _gears), ("scperturb", _scperturb)):
        paths[name] = folder / f"{name}.h5ad"
        convert(contract).write_h5ad(paths[name])
    return paths


def _spec(layout, **extra):
    return resolve(DatasetSpec(batch_col="batch", layout=layout, **extra))


@pytest.mark.parametrize("layout,gene_id_type", [("gears", "ensembl"), ("scperturb", "symbol")])
def test_a_layout_reads_as_the_contract(files, layout, gene_id_type):
    reference = validate_dataset(files["pertprobe"], _spec("pertprobe"))
    summary = validate_dataset(files[layout], _spec(layout, gene_id_type=gene_id_type))
    for key in ("n_cells", "n_perturbations", "n_combinations", "n_control_cells", "unresolved_perturbations"):
        assert summary[key] == reference[key], key
    assert summary["n_combinations"] > 0
    config = PreprocessConfig(min_genes_per_cell=20, n_hvg=80, n_folds=3, seeds=(0,))
    ours = preprocess(load_counts(files[layout], _spec(layout, gene_id_type=gene_id_type)),
                      _spec(layout, gene_id_type=gene_id_type), config)
    theirs = preprocess(load_counts(files["pertprobe"], _spec("pertprobe")), _spec("pertprobe"), config)
    control = LAYOUTS[layout].control_label
    ours_means = ours.pseudobulk.means.rename(index={control: "control"})
    ours_means.columns = theirs.pseudobulk.means.columns  # GEARS keys genes by Ensembl ID
    pd.testing.assert_frame_equal(ours_means.sort_index(), theirs.pseudobulk.means.sort_index())
    assert sorted(ours.splits["perturbation"].unique()) == sorted(theirs.splits["perturbation"].unique())


def test_a_row_overrides_the_layout_defaults():
    spec = _spec("gears", perturbation_col="my_condition")
    assert spec.perturbation_col == "my_condition" and spec.control_label == "ctrl" and spec.gene_symbol_col == "gene_name"
    assert _spec("pertprobe") == DatasetSpec(batch_col="batch")


def test_a_missing_layout_column_is_named_with_the_fix(files):
    with pytest.raises(InputError, match=r"obs\['condition'\].*missing.*samplesheet's perturbation_col"):
        validate_dataset(files["pertprobe"], _spec("gears"))
    with pytest.raises(InputError, match=r"obs\['condition'\].*the gears layout reads"):
        load_counts(files["pertprobe"], _spec("gears"))


def test_gears_labels_drop_ctrl_and_keep_combinations():
    obs = pd.DataFrame({"condition": ["ctrl", "A+ctrl", "ctrl+B", "A+B"]})
    labels = LAYOUTS["gears"].relabel(obs, obs["condition"], "ctrl")
    assert labels.tolist() == ["ctrl", "A", "B", "A+B"]
    obs = pd.DataFrame({"perturbation": ["control", "A_1", "A_B"], "nperts": [0, 1, 2]})
    assert LAYOUTS["scperturb"].relabel(obs, obs["perturbation"], "control").tolist() == ["control", "A_1", "A+B"]


def test_the_samplesheet_schema_lists_every_layout():
    schema = json.loads((ROOT / "assets" / "schema_input.json").read_text())
    assert schema["items"]["properties"]["layout"]["enum"] == list(LAYOUTS)
