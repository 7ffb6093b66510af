"""The bin/ commands: --help/--version, the whole chain on small data, determinism, versions.yml."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from pertprobe import __version__

from ..conftest import BIN

COMMANDS = ["simulate.py", "validate_samplesheet.py", "validate_input.py", "preprocess.py", "embed_cells.py", "embed_genes.py", "predict.py",
            "evaluate.py", "ceiling.py", "eval_cell_embeddings.py", "report.py", "extract_gene_embeddings.py", "registry.py",
            "validate_side_inputs.py", "apply_label_map.py", "predict_finetune.py"]


def test_every_command_is_listed_and_executable():
    """Nextflow runs bin/ scripts directly: each must be executable (and covered by the tests here)."""
    scripts = sorted(p.name for p in BIN.glob("*.py"))
    assert scripts == sorted(COMMANDS)
    assert all(os.access(BIN / name, os.X_OK) for name in scripts)


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_and_version(command, tmp_path):
    help_ = run(BIN / command, "--help", cwd=tmp_path)
    assert help_.returncode == 0, help_.stderr
    assert "--versions-yml" in help_.stdout
    version = run(BIN / command, "--version", cwd=tmp_path)
    assert version.returncode == 0 and __version__ in version.stdout


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


P = "d.crispr_informed_mean.none.unseen_perturbation.seed0.fold1.prediction.parquet"
M = "d.mean.none.unseen_perturbation.seed0.fold1.prediction.parquet"
Q = "ridge/d.ridge.data_pca.unseen_perturbation.seed0.fold1.prediction.parquet"


def _chain(workdir: Path) -> dict[str, str]:
    """simulate -> validate -> preprocess -> embed -> predict -> evaluate -> report; digests of outputs."""
    workdir.mkdir()
    steps = [
        ["simulate.py", "--out", "d.h5ad", "--truth", "t.h5ad", "--n-genes", "200", "--n-programs", "6",
         "--program-size", "15", "--n-single", "12", "--n-double", "2", "--n-nonexpressed", "2",
         "--cells-per-perturbation", "30", "--n-control", "150", "--seed", "4"],
        ["validate_input.py", "--h5ad", "d.h5ad", "--batch-col", "batch", "--out", "v.json"],
        ["preprocess.py", "--h5ad", "d.h5ad", "--batch-col", "batch", "--prefix", "d", "--n-hvg", "100",
         "--n-folds", "3", "--seeds", "0", "--min-genes-per-cell", "20", "--versions-yml", "versions.yml",
         "--task-process", "PREPROCESS"],
        ["embed_cells.py", "--h5ad", "d.processed.h5ad", "--n-comps", "5", "--out", "d.pca.h5ad"],
        ["predict.py", "--pseudobulk", "d.pseudobulk.parquet", "--splits", "d.splits.csv", "--seed", "0",
         "--fold", "1", "--predictor", "crispr_informed_mean", "--predictor", "mean", "--dataset", "d"],
        ["embed_genes.py", "--source", "data_pca", "--pseudobulk", "d.pseudobulk.parquet", "--splits", "d.splits.csv",
         "--seed", "0", "--fold", "1", "--n-dims", "4", "--out", "g.parquet"],
        ["predict.py", "--pseudobulk", "d.pseudobulk.parquet", "--pseudobulk-by-batch", "d.pseudobulk_by_batch.parquet",
         "--splits", "d.splits.csv", "--seed", "0", "--fold", "1", "--predictor", "ridge", "--gene-embedding",
         "g.parquet", "--dataset", "d", "--out-dir", "ridge"],
        ["evaluate.py", "--prediction", P, "--prediction", Q, "--pseudobulk", "d.pseudobulk.parquet", "--de",
         "d.de.parquet", "--splits", "d.splits.csv", "--out", "m.parquet"],
        ["evaluate.py", "--prediction", M, "--pseudobulk", "d.pseudobulk.parquet", "--de", "d.de.parquet",
         "--out", "n.parquet"],
        ["ceiling.py", "--h5ad", "d.processed.h5ad", "--pseudobulk", "d.pseudobulk.parquet", "--de", "d.de.parquet",
         "--splits", "d.splits.csv", "--seed", "0", "--fold", "1", "--n-draws", "2", "--dataset", "d",
         "--out", "c.parquet"],
        ["report.py", "--metrics", "m.parquet", "--metrics", "n.parquet", "--metrics", "c.parquet",
         "--summary", "d.summary.json", "--pseudobulk", "d.pseudobulk.parquet", "--embedding", "d.pca.h5ad",
         "--outdir", "report"],
    ]
    for step in steps:
        result = run(BIN / step[0], *step[1:], cwd=workdir)
        assert result.returncode == 0, f"{step[0]} failed:\n{result.stderr}"
    outputs = ["d.h5ad", "t.h5ad", "v.json", "d.pseudobulk.parquet", "d.de.parquet", "d.splits.csv",
               "d.summary.json", P, M, "g.parquet", Q, "m.parquet", "n.parquet", "c.parquet",
               "report/leaderboard.csv", "report/metrics.parquet", "report/statistics.csv", "report/perturbations.csv",
               "report/knockdown.csv", "report/report.html"]
    return {name: _digest(workdir / name) for name in outputs}


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("chain")
    return root, _chain(root / "a"), _chain(root / "b")


@pytest.mark.slow
def test_chain_outputs_are_byte_identical_across_runs(chain):
    _, first, second = chain
    assert first == second


@pytest.mark.slow
def test_chain_outputs_follow_contracts(chain, tmp_path):
    import anndata as ad
    from pertprobe.io import read_table_metadata

    root, _, _ = chain
    work = root / "a"
    meta = read_table_metadata(work / P)
    assert meta["model"] == "crispr_informed_mean" and meta["split"] == "fold1" and meta["seed"] == 0
    assert meta["task"] == "unseen_perturbation"
    metrics = pd.read_parquet(work / "m.parquet").reset_index()
    assert set(metrics["model"]) == {"crispr_informed_mean", "ridge"}
    # Scoring predictions together or one by one gives the same rows.
    alone = run(BIN / "evaluate.py", "--prediction", P, "--pseudobulk", "d.pseudobulk.parquet", "--de", "d.de.parquet",
                "--splits", "d.splits.csv", "--out", tmp_path / "alone.parquet", cwd=work)
    assert alone.returncode == 0, alone.stderr
    together = metrics[metrics["model"] == "crispr_informed_mean"].reset_index(drop=True)
    pd.testing.assert_frame_equal(together, pd.read_parquet(tmp_path / "alone.parquet").reset_index())
    assert list(metrics.columns) == ["dataset", "task", "split", "seed", "model", "embedding", "perturbation", "metric",
                                     "value", "fallback", "n_fit"]
    emb = ad.read_h5ad(work / "d.pca.h5ad")
    processed = ad.read_h5ad(work / "d.processed.h5ad", backed="r")
    assert list(emb.obs_names) == list(processed.obs_names)
    assert emb.uns["embedding"]["model"] == "pca" and emb.uns["embedding"]["n_dims"] == emb.n_vars == 5
    versions = (work / "versions.yml").read_text()
    assert versions.startswith('"PREPROCESS":') and "scanpy:" in versions and f"pertprobe: {__version__}" in versions
    q = read_table_metadata(work / Q)
    assert q["embedding"] == "data_pca" and "alpha" in q["info"]["hyperparameters"]
    assert read_table_metadata(work / "g.parquet")["fitted_on"] == "training perturbations"
    board = pd.read_csv(work / "report" / "leaderboard.csv")
    assert {"best_floor", "ceiling", "fraction_of_gap"} <= set(board.columns)
    from pertprobe.response.bounds import ANCHORS

    assert set(board["model"]) == {"crispr_informed_mean", "mean", "ridge", *ANCHORS}
    html = (work / "report" / "report.html").read_text()
    assert "crispr_informed_mean" in html and "fraction_of_gap" in html and "data:image/png;base64," in html and "<script src" not in html
    assert "Scores per perturbation" in html and "Own-target knockdown" in html and "Similarity of observed" in html
    scores = pd.read_csv(work / "report" / "perturbations.csv")
    assert set(scores["perturbation"]) <= set(metrics["perturbation"]) and (scores["response_strength"] > 0).all()
    knockdown = pd.read_csv(work / "report" / "knockdown.csv")
    shares = knockdown["share_remaining"]
    assert len(knockdown) and shares.dropna().is_monotonic_increasing and shares.notna().is_monotonic_decreasing
    assert (knockdown.loc[shares.isna(), "status"] == "not expressed in control").all()  # non-expressed simulated targets
    assert knockdown["on_target"].mean() > 0.5  # simulated CRISPRi knocks its targets down


@pytest.mark.slow
def test_prediction_for_a_missing_split_fails_cleanly(chain, tmp_path):
    root, _, _ = chain
    work = root / "a"
    result = run(BIN / "predict.py", "--pseudobulk", work / "d.pseudobulk.parquet", "--splits", work / "d.splits.csv",
                 "--seed", "7", "--fold", "0", "--predictor", "mean", "--dataset", "d", cwd=tmp_path)
    assert result.returncode != 0 and "no split for unseen_perturbation seed 7 fold 0" in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*.parquet"))


def test_side_inputs_are_read_with_the_steps_readers(tmp_path):
    import json

    from ..conftest import TEST_DATA

    models = TEST_DATA / "models"
    out = tmp_path / "ok.json"
    result = run(BIN / "validate_side_inputs.py", "--known-relationships", TEST_DATA / "known_relationships.tsv",
                 "--gene-id-map", models / "gene_id_map.tsv", "--side-input", f"esm2={models / 'proteins.fasta'}",
                 "--side-input", f"genept={models / 'gene_descriptions.tsv'}", "--out", out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(out.read_text())
    assert summary["protein_fasta"]["n_records"] > 0 and summary["known_relationships"]["n_pairs"] > 0


@pytest.mark.parametrize(("option", "content", "words"), [
    ("--known-relationships", "a\tb\nX\tY\n", ["gene_a", "header line"]),
    ("--gene-embedding-table", "gene,dim0\nA,x\n", ["not numeric"]),
    ("--side-input", ">A\nMK?Q\n", ["ESM alphabet", "Fix:"]),
    ("--side-input", "gene,text\nA,a kinase\n", ["description", "Fix:"]),
])
def test_a_bad_side_input_names_its_file_and_the_fix(tmp_path, option, content, words):
    bad = tmp_path / ("bad.fasta" if content.startswith(">") else "bad.tsv" if "\t" in content else "bad.csv")
    bad.write_text(content)
    value = str(bad)
    if option == "--side-input":
        value = f"{'esm2' if content.startswith('>') else 'genept'}={bad}"
    out = tmp_path / "out.json"
    result = run(BIN / "validate_side_inputs.py", option, value, "--out", out, cwd=tmp_path)
    assert result.returncode == 2 and str(bad) in result.stderr, result.stderr
    assert not out.exists()
    for word in words:
        assert word in result.stderr, result.stderr
