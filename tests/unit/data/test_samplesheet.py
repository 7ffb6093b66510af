"""The samplesheet against assets/schema_input.json: meta maps, defaults, and errors naming line and field."""

from __future__ import annotations

import json

import pytest
from pertprobe.data.samplesheet import read_samplesheet
from pertprobe.errors import InputError

from ...conftest import ROOT, TEST_DATA

SCHEMA = ROOT / "assets" / "schema_input.json"
HEADER = "dataset,h5ad,perturbation_type,gene_id_type"


def sheet(tmp_path, *rows: str, header: str = HEADER):
    (tmp_path / "d.h5ad").write_bytes(b"")
    path = tmp_path / "samplesheet.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_bundled_samplesheet_gives_meta_with_defaults():
    rows = read_samplesheet(TEST_DATA / "samplesheet.csv", SCHEMA)
    assert rows == [{"meta": {"id": "sim_crispri", "perturbation_type": "CRISPRi", "gene_id_type": "symbol", "layout": "pertprobe",
                              "perturbation_col": "perturbation", "control_label": "control", "batch_col": "batch", "dose_col": "",
                              "counts_layer": "", "gene_symbol_col": ""},
                     "h5ad": str((TEST_DATA / "sim_crispri.h5ad").resolve())}]


def test_every_meta_key_of_the_schema_is_a_dataset_option():
    """ext.args2 turns every meta key but `id` into --key-with-dashes for the dataset commands."""
    import validate_input  # bin/ is on sys.path (tests/unit/conftest.py)
    from click.testing import CliRunner

    help_text = CliRunner().invoke(validate_input.main, ["--help"]).output
    item = json.loads(SCHEMA.read_text())["items"]
    keys = [k for prop in item["properties"].values() for k in prop.get("meta", []) if k != "id"]
    assert keys and all(f"--{k.replace('_', '-')}" in help_text for k in keys)


@pytest.mark.parametrize(("rows", "header", "line", "field", "words"), [
    (["sim,d.h5ad,CRISPRko,symbol"], HEADER, 2, "perturbation_type", ["CRISPRi"]),
    (["sim,d.h5ad,CRISPRi,entrez"], HEADER, 2, "gene_id_type", ["ensembl"]),
    (["a,d.h5ad,KO,symbol", "b b,d.h5ad,KO,symbol"], HEADER, 3, "dataset", ["letters"]),
    (["a,d.h5ad,KO,symbol", "a,d.h5ad,KO,symbol"], HEADER, 3, "dataset", ["repeats line 2"]),
    (["a,missing.h5ad,KO,symbol"], HEADER, 2, "h5ad", ["not found"]),
    (["a,d.csv,KO,symbol"], HEADER, 2, "h5ad", [".h5ad"]),
    (["a,,KO,symbol"], HEADER, 2, "h5ad", ["empty or missing"]),
    (["a,d.h5ad,KO,symbol,control"], HEADER + ",control_lable", 1, "control_lable", ["unknown column", "control_label"]),
])
def test_bad_rows_name_line_field_and_fix(tmp_path, rows, header, line, field, words):
    path = sheet(tmp_path, *rows, header=header)
    with pytest.raises(InputError) as err:
        read_samplesheet(path, SCHEMA, source="/data/sheet.csv" if field != "h5ad" else None)
    message = str(err.value)
    assert f"line {line}" in message and f"field '{field}'" in message and "Fix:" in message
    assert all(w in message for w in words), message


def test_relative_paths_resolve_against_the_source_folder(tmp_path):
    path = sheet(tmp_path, "a,d.h5ad,drug,ensembl")
    (rows,) = read_samplesheet(path, SCHEMA)
    assert rows["h5ad"] == str((tmp_path / "d.h5ad").resolve()) and rows["meta"]["perturbation_type"] == "drug"
    (uri,) = read_samplesheet(sheet(tmp_path, "a,s3://bucket/d.h5ad,KO,symbol"), SCHEMA)
    assert uri["h5ad"] == "s3://bucket/d.h5ad"
