"""The "common errors" table of docs/usage.md is generated from these cases: each breaks one input
the way users do, runs the real check, and records the message's field, problem and fix.

Regenerate after changing a check: PERTPROBE_UPDATE_DOCS=1 pytest tests/unit/test_common_errors.py
"""

import os
import re
from dataclasses import replace

import numpy as np
import pytest
from pertprobe.data.dataset import DatasetSpec
from pertprobe.data.samplesheet import read_samplesheet
from pertprobe.data.validate import RunChecks, validate_dataset
from pertprobe.errors import InputError

from ..conftest import ROOT, TEST_DATA

DOC = ROOT / "docs" / "usage.md"
START, END = "<!-- common-errors:start -->", "<!-- common-errors:end -->"
SPEC = DatasetSpec(batch_col="batch")


def _dataset(tmp_path, change):
    import anndata as ad

    adata = ad.read_h5ad(TEST_DATA / "sim_crispri.h5ad")
    adata = change(adata) or adata
    path = tmp_path / "data.h5ad"
    adata.write_h5ad(path)
    return path


def _relabel(mapping):
    def change(adata):
        labels = adata.obs["perturbation"].astype(str)
        adata.obs["perturbation"] = [p if p == "control" else mapping(p) for p in labels]
    return change


def _ensembl(adata):
    adata.var_names = [f"ENSG{i:011d}" for i in range(adata.n_vars)]


def _nan_labels(adata):
    labels = adata.obs["perturbation"].astype(object)
    labels.iloc[:50] = np.nan
    adata.obs["perturbation"] = labels


def _duplicate_gene(adata):
    names = list(adata.var_names)
    names[-1] = names[0]
    adata.var_names = names


def _log_counts(adata):
    adata.X = np.log1p(adata.X.toarray())


def _sheet(tmp_path, text):
    path = tmp_path / "samplesheet.csv"
    path.write_text(text.replace("DATA", str(TEST_DATA / "sim_crispri.h5ad")))
    return lambda: read_samplesheet(path, ROOT / "assets" / "schema_input.json")


CASES = {
    "var_names are Ensembl IDs, labels are gene symbols": lambda t: lambda: validate_dataset(
        _dataset(t, _ensembl), replace(SPEC, gene_id_type="ensembl")),
    "guide-level labels (sgGENE0011_1)": lambda t: lambda: validate_dataset(
        _dataset(t, _relabel(lambda p: f"sg{p}_1")), SPEC),
    "combinations written A_B": lambda t: lambda: validate_dataset(
        _dataset(t, _relabel(lambda p: p.replace("+", "_"))), SPEC),
    "NaN perturbation labels": lambda t: lambda: validate_dataset(_dataset(t, _nan_labels), SPEC),
    "duplicated gene names": lambda t: lambda: validate_dataset(_dataset(t, _duplicate_gene), SPEC),
    "log-normalized values instead of counts": lambda t: lambda: validate_dataset(_dataset(t, _log_counts), SPEC),
    "wrong perturbation column": lambda t: lambda: validate_dataset(
        _dataset(t, lambda a: None), replace(SPEC, perturbation_col="guide_identity")),
    "wrong control label": lambda t: lambda: validate_dataset(
        _dataset(t, lambda a: None), replace(SPEC, control_label="non-targeting")),
    "--n_folds above the number of perturbations": lambda t: lambda: validate_dataset(
        _dataset(t, lambda a: None), SPEC, RunChecks(n_folds=100)),
    "--min_cells_per_gene that keeps only the targets": lambda t: lambda: validate_dataset(
        _dataset(t, lambda a: None), SPEC, RunChecks(min_cells_per_gene=100_000)),
    "misspelled samplesheet column": lambda t: _sheet(
        t, "dataset,h5ad,perturbation_type,gene_id_type,control_lable\nsim,DATA,CRISPRi,symbol,control\n"),
    "unknown perturbation_type in the samplesheet": lambda t: _sheet(
        t, "dataset,h5ad,perturbation_type,gene_id_type\nsim,DATA,CRISPRko,symbol\n"),
}


def _row(case: str, err: InputError) -> str:
    cell = lambda text: re.sub(r"/\S*/", "", str(text)).replace("|", "\\|")  # noqa: E731 - paths vary per run
    return f"| {case} | `{cell(err.field)}` | {cell(err.problem)} | {cell(err.fix)} |"


def _table(tmp_path_factory) -> str:
    rows = []
    for case, make in CASES.items():
        check = make(tmp_path_factory.mktemp("case"))
        with pytest.raises(InputError) as info:
            check()
        rows.append(_row(case, info.value))
    return "\n".join(["| input | field | problem | fix |", "| --- | --- | --- | --- |", *rows])


def test_common_errors_table_is_generated_from_the_checks(tmp_path_factory):
    table = _table(tmp_path_factory)
    text = DOC.read_text()
    block = f"{START}\n{table}\n{END}"
    if os.environ.get("PERTPROBE_UPDATE_DOCS"):
        DOC.write_text(re.sub(f"{START}.*?{END}", lambda _: block, text, flags=re.S) if START in text
                       else text.replace("\n## Parameters", f"\n### Common errors\n\n{block}\n\n## Parameters", 1))
        text = DOC.read_text()
    assert block in text, "docs/usage.md's common-errors table is stale: regenerate it (see this module's docstring)"
