"""Each bad input gets its own clear error naming the file, the field and the fix."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from click.testing import CliRunner
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
