"""Each bad input gets its own clear error naming the file, the field and the fix."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from click.testing import CliRunner
from pertprobe.data.dataset import DatasetSpec
from pertprobe.data.validate import validate_dataset
from pertprobe.errors import InputError


def _write(adata, tmp_path: Path, name: str = "bad.h5ad") -> Path:
    path = tmp_path / name
    adata.write_h5ad(path)
    return path


def _expect(path, spec, field, fix_words):
    with pytest.raises(InputError) as info:
        validate_dataset(path, spec)
    msg = str(info.value)
    assert str(path) in msg
    assert field in msg
    assert "Fix:" in msg
    for word in fix_words:
        assert word in msg
    return msg


def test_valid_input_passes(small_h5ad, spec):
    assert validate_dataset(small_h5ad, spec)["n_cells"] > 0


def test_wrong_perturbation_column(small_h5ad, spec):
    msg = _expect(small_h5ad, replace(spec, perturbation_col="gene"), "obs['gene']", ["perturbation_col"])
    assert "'perturbation'" in msg  # lists the columns that exist


def test_wrong_batch_column(small_h5ad, spec):
    _expect(small_h5ad, replace(spec, batch_col="replicate"), "obs['replicate']", ["batch_col"])


def test_no_control_cells(small_h5ad, spec):
    _expect(small_h5ad, replace(spec, control_label="non-targeting"), "obs['perturbation']", ["control_label"])


def test_non_integer_counts(tmp_path, small_sim, spec):
    adata = small_sim.to_anndata()
    adata.X = sp.csr_matrix(np.log1p(adata.X.toarray()))
    path = _write(adata, tmp_path)
    _expect(path, spec, "X", ["non-integer", "counts_layer"])


def test_non_integer_counts_in_named_layer(tmp_path, small_sim, spec):
    adata = small_sim.to_anndata()
    adata.layers["counts"] = adata.X * 0.5
    path = _write(adata, tmp_path)
    _expect(path, replace(spec, counts_layer="counts"), "layers['counts']", ["non-integer"])
    _expect(path, replace(spec, counts_layer="raw"), "layers['raw']", ["counts_layer"])


def test_negative_counts(tmp_path, small_sim, spec):
    adata = small_sim.to_anndata()
    adata.X = adata.X.toarray() - 1.0
    _expect(_write(adata, tmp_path), spec, "X", ["negative"])


def test_duplicated_cell_names(tmp_path, small_sim, spec):
    adata = small_sim.to_anndata()
    names = adata.obs_names.to_list()
    names[5] = names[4]
    adata.obs_names = names
    _expect(_write(adata, tmp_path), spec, "obs_names", ["obs_names_make_unique", names[4]])


def test_perturbation_with_too_few_cells(tmp_path, small_sim, spec):
    adata = small_sim.to_anndata()
    victim = small_sim.truth_obs.index[0]
    keep = np.ones(adata.n_obs, dtype=bool)
    keep[np.flatnonzero(adata.obs["perturbation"] == victim)[3:]] = False
    msg = _expect(_write(adata[keep].copy(), tmp_path), spec, "obs['perturbation']",
                  ["min_cells_per_perturbation", f"{victim} (3)"])
    assert "fewer than 10 cells" in msg


def test_symbols_declared_as_ensembl(small_h5ad, spec):
    _expect(small_h5ad, replace(spec, gene_id_type="ensembl"), "var_names", ["gene_id_type", "GENE0000"])


def test_ensembl_declared_as_symbols(tmp_path, small_sim, spec):
    adata = small_sim.to_anndata()
    adata.var_names = adata.var["gene_id"].to_numpy()
    path = _write(adata, tmp_path)
    _expect(path, spec, "var_names", ["gene_id_type", "'ensembl'"])
    ok = validate_dataset(path, replace(spec, gene_id_type="ensembl", gene_symbol_col="gene_symbol"))
    assert ok["targets_not_measured"] == []  # targets resolved through the symbol column


def test_unknown_perturbation_type(small_h5ad, spec):
    _expect(small_h5ad, replace(spec, perturbation_type="CRISPRko"), "perturbation_type", ["CRISPRi"])


def test_not_an_h5ad(tmp_path, spec):
    path = tmp_path / "table.h5ad"
    path.write_text("gene,count\n")
    _expect(path, spec, "h5ad", ["write_h5ad"])


def test_command_fails_cleanly_and_writes_nothing(tmp_path, small_h5ad):
    """The CLI exits non-zero with the message (no traceback) and leaves no output file behind."""
    from validate_input import main

    out = tmp_path / "summary.json"
    result = CliRunner().invoke(main, ["--h5ad", str(small_h5ad), "--perturbation-col", "guide",
                                       "--out", str(out)])
    assert result.exit_code == 2
    assert "obs['guide']" in result.output and "Fix:" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()
    assert list(tmp_path.glob(".summary.json*")) == []


# ---- checks that used to pass validation and produce a report on the wrong data (issue 12) -------

def _expect_checks(path, spec, checks, field, fix_words):
    from pertprobe.data.validate import validate_dataset

    with pytest.raises(InputError) as info:
        validate_dataset(path, spec, checks)
    msg = str(info.value)
    assert str(path) in msg and field in msg and "Fix:" in msg
    for word in fix_words:
        assert word in msg, msg
    return msg


def _relabel(adata, mapping):
    labels = adata.obs["perturbation"].astype(str)
    adata.obs["perturbation"] = labels.map(lambda p: mapping(p) if p != "control" else p).astype("category")
    return adata


def test_ensembl_var_names_with_symbol_labels_need_gene_symbol_col(tmp_path, small_sim, spec):
    adata = small_sim.to_anndata()
    adata.var["symbol"] = adata.var_names
    adata.var_names = [f"ENSG{i:011d}" for i in range(adata.n_vars)]
    path = _write(adata, tmp_path)
    _expect(path, replace(spec, gene_id_type="ensembl"), "obs['perturbation']", ["gene_symbol_col", "Ensembl"])
    assert validate_dataset(path, replace(spec, gene_id_type="ensembl", gene_symbol_col="symbol"))["n_cells"] > 0


def test_guide_level_labels_are_not_targets(tmp_path, small_sim, spec):
    path = _write(_relabel(small_sim.to_anndata(), lambda p: f"sg{p}_1"), tmp_path)
    _expect(path, spec, "obs['perturbation']", ["guide", "target gene"])


@pytest.mark.parametrize("sep", ["_", " + "])
def test_combinations_with_another_separator_are_refused(tmp_path, small_sim, spec, sep):
    """Even a few: each would run as one perturbation with no measured target."""
    path = _write(_relabel(small_sim.to_anndata(), lambda p: p.replace("+", sep)), tmp_path)
    _expect(path, spec, "obs['perturbation']", ["A+B", repr(sep), "combinations"])


def test_unresolved_share_is_a_parameter(tmp_path, small_sim, spec):
    from pertprobe.data.validate import RunChecks

    path = _write(_relabel(small_sim.to_anndata(), lambda p: f"sg{p}_1"), tmp_path)
    assert validate_dataset(path, spec, RunChecks(max_unresolved_fraction=1.0))["unresolved_perturbations"]


@pytest.mark.parametrize("value", [np.nan, ""])
def test_missing_perturbation_labels_are_an_error(tmp_path, small_sim, spec, value):
    adata = small_sim.to_anndata()
    labels = adata.obs["perturbation"].astype(object)
    labels.iloc[:50] = value
    adata.obs["perturbation"] = labels
    _expect(_write(adata, tmp_path), spec, "obs['perturbation']", ["50 cells", "NaN or empty"])


def test_duplicated_gene_names(tmp_path, small_sim, spec):
    adata = small_sim.to_anndata()
    names = list(adata.var_names)
    names[-1] = names[-2]
    adata.var_names = names
    _expect(_write(adata, tmp_path), spec, "var_names", ["duplicated gene names", "var_names_make_unique"])


def test_a_file_without_genes(tmp_path, small_sim, spec):
    adata = small_sim.to_anndata()[:, :0].copy()
    _expect(_write(adata, tmp_path), spec, "var", ["no genes"])


def test_more_folds_than_perturbations(small_h5ad, spec):
    from pertprobe.data.validate import RunChecks

    _expect_checks(small_h5ad, spec, RunChecks(n_folds=1000), "n_folds", ["--n_folds"])


def test_gene_filter_that_keeps_only_targets(small_h5ad, spec):
    from pertprobe.data.validate import RunChecks

    msg = _expect_checks(small_h5ad, spec, RunChecks(min_cells_per_gene=100_000), "min_cells_per_gene",
                         ["--min_cells_per_gene"])
    suggested = int(msg.rsplit("--min_cells_per_gene ", 1)[1].split()[0])
    assert validate_dataset(small_h5ad, spec, RunChecks(min_cells_per_gene=suggested))  # the fix works


def test_cell_filter_that_removes_the_controls(small_h5ad, spec):
    from pertprobe.data.validate import RunChecks

    msg = _expect_checks(small_h5ad, spec, RunChecks(min_genes_per_cell=100_000), "min_genes_per_cell",
                         ["--min_genes_per_cell"])
    suggested = int(msg.rsplit("--min_genes_per_cell ", 1)[1].split()[0])
    assert validate_dataset(small_h5ad, spec, RunChecks(min_genes_per_cell=suggested))


@pytest.mark.parametrize("layout", ["csr", "csc", "dense"])
def test_detection_counts_match_the_matrix(tmp_path, small_sim, layout):
    import h5py
    from pertprobe.data.validate import _detection

    adata = small_sim.to_anndata()
    x = adata.X.toarray()
    adata.X = {"csr": sp.csr_matrix(x), "csc": sp.csc_matrix(x), "dense": x}[layout]
    path = _write(adata, tmp_path)
    with h5py.File(path) as f:
        cells_per_gene, genes_per_cell = _detection(f["X"], adata.shape)
    np.testing.assert_array_equal(cells_per_gene, (x > 0).sum(axis=0))
    np.testing.assert_array_equal(genes_per_cell, (x > 0).sum(axis=1))


def test_a_damaged_anndata_file_is_named_not_a_traceback(tmp_path, small_h5ad, spec):
    import shutil

    import h5py

    damaged = tmp_path / "damaged.h5ad"
    shutil.copy(small_h5ad, damaged)
    with h5py.File(damaged, "r+") as f:
        del f["obs"][f["obs"].attrs["_index"]]  # the cell names are gone
    _expect(damaged, spec, "obs/var", ["cannot be read as AnnData", "write_h5ad"])


# ---- label maps (guide -> target) ----------------------------------------------------------------

def test_label_map_pools_guides_by_target_and_keeps_the_controls(tmp_path):
    import pandas as pd
    from pertprobe.data.label_map import apply_label_map, read_label_map

    table = tmp_path / "map.tsv"
    table.write_text("label\ttarget\nsgA_1\tA\nsgA_2\tA\nsgAB\tA+B\nnt_1\tcontrol\n")
    obs = pd.DataFrame({"perturbation": ["sgA_1", "sgA_2", "sgAB", "nt_1", "control"]})
    mapped = apply_label_map(obs, read_label_map(table), DatasetSpec(), table)
    assert mapped.tolist() == ["A", "A", "A+B", "control", "control"]


@pytest.mark.parametrize(("content", "field", "words"), [
    ("guide,gene\nsgA,A\n", "label,target", ["header line label,target"]),
    ("label,target\nsgA,\n", "label/target", ["empty"]),
    ("label,target\nsgA,A\nsgA,B\n", "label", ["two targets"]),
])
def test_bad_label_maps_are_named(tmp_path, content, field, words):
    from pertprobe.data.label_map import read_label_map

    path = tmp_path / "map.csv"
    path.write_text(content)
    with pytest.raises(InputError) as info:
        read_label_map(path)
    assert str(path) in str(info.value) and f"'{field}'" in str(info.value)
    assert all(w in str(info.value) for w in words)


def test_a_label_missing_from_the_map_is_an_error(tmp_path):
    import pandas as pd
    from pertprobe.data.label_map import apply_label_map

    obs = pd.DataFrame({"perturbation": ["sgA_1", "sgB_1", "control"]})
    with pytest.raises(InputError, match="1 labels are not in the label map .*'sgB_1'.*Fix: add them"):
        apply_label_map(obs, {"sgA_1": "A"}, DatasetSpec(), "data.h5ad")


def test_apply_label_map_command_writes_the_relabelled_dataset(tmp_path, small_sim):
    import subprocess
    import sys

    import anndata as ad

    from ...conftest import BIN

    adata = small_sim.to_anndata()
    labels = adata.obs["perturbation"].astype(str)
    adata.obs["perturbation"] = labels.where(labels == "control", "sg" + labels + "_1")
    _write(adata, tmp_path, "guides.h5ad")
    pairs = sorted({(f"sg{t}_1", t) for t in set(labels) - {"control"}})
    (tmp_path / "map.csv").write_text("label,target\n" + "".join(f"{g},{t}\n" for g, t in pairs))
    result = subprocess.run([sys.executable, str(BIN / "apply_label_map.py"), "--h5ad", "guides.h5ad", "--label-map",
                             "map.csv", "--batch-col", "batch", "--out", "targets.h5ad"], cwd=tmp_path,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    out = ad.read_h5ad(tmp_path / "targets.h5ad")
    assert (out.obs["perturbation"].astype(str) == labels).all()
    assert out.obs["perturbation_label"].astype(str).str.startswith(("sg", "control")).all()
    assert validate_dataset(tmp_path / "targets.h5ad", spec=DatasetSpec(batch_col="batch"))["unresolved_perturbations"] == []
