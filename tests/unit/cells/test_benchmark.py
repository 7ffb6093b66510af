"""The cell-embedding benchmark on simulated screens: floors at chance, PCA above them, batch
metrics respond to alignment, scVI never trains on its query batch, the command's errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from pertprobe.cells.benchmark import CellBenchmarkConfig, evaluate_embedding, target_detection
from pertprobe.cells.embedders import pca, random, scvi
from pertprobe.data.preprocess import PreprocessConfig, load_counts, preprocess
from pertprobe.registry import names

from ...conftest import BIN, small_config

pytestmark = pytest.mark.slow  # a simulated screen through every task (~2 min on 2 cores)

FAST = CellBenchmarkConfig(alignments=("none", "center"), n_permutations=99, n_null=200, n_neighbors=30)


@pytest.fixture(scope="module")
def screen(tmp_path_factory):
    """A small screen with a strong batch effect, processed, with its true program relationships."""
    from pertprobe.data.dataset import DatasetSpec
    from pertprobe.data.simulate import simulate

    sim = simulate(small_config(seed=5, batch_effect_sd=0.6, n_single=24, n_nonexpressed=8, cells_per_perturbation=50))
    path = tmp_path_factory.mktemp("screen") / "screen.h5ad"
    sim.to_anndata().write_h5ad(path)
    spec = DatasetSpec(batch_col="batch")
    result = preprocess(load_counts(path, spec), spec, PreprocessConfig(min_genes_per_cell=20, n_hvg=150, n_folds=3, seeds=(0,)))
    return sim, result


@pytest.fixture(scope="module")
def runs(screen):
    """The whole benchmark of each embedding, as written (summary, per-perturbation table)."""
    sim, result = screen
    return {name: evaluate_embedding(embed(result.adata, n_comps=15, seed=0), result.adata, result.splits, "sim",
                                     sim.program_relationships(), FAST) for name, embed in (("pca", pca), ("random", random))}


@pytest.fixture(scope="module")
def scores(runs):
    return {name: (summary.set_index(["alignment", "metric"])["value"], per_pert)
            for name, (summary, per_pert) in runs.items()}


def test_the_whole_cell_benchmark_reruns_to_the_same_bytes(screen, runs):
    """Every task, every alignment, after other embeddings ran in the same process (issue 12)."""
    sim, result = screen
    again = evaluate_embedding(pca(result.adata, n_comps=15, seed=0), result.adata, result.splits, "sim",
                               sim.program_relationships(), FAST)
    assert again[0].to_csv() == runs["pca"][0].to_csv()
    assert again[1].to_csv() == runs["pca"][1].to_csv()


def test_rerunning_the_batch_task_gives_the_same_bytes(screen):
    """Same embedding, same seeds, same process: identical scores, whatever ran before (issue 12:
    kBET's diffusion map used to draw ARPACK start vectors from the process's generator)."""
    import scipy.sparse as sp
    import scipy.sparse.linalg

    _, result = screen
    emb = pca(result.adata, n_comps=15, seed=0)
    config = CellBenchmarkConfig(alignments=("center",), tasks=("batch",), n_neighbors=30)
    first = evaluate_embedding(emb, result.adata, result.splits, "sim", None, config)[0]
    m = sp.random(300, 300, density=0.05, random_state=1)
    scipy.sparse.linalg.eigsh((m + m.T).tocsr(), k=10)  # move ARPACK's internal generator on
    again = evaluate_embedding(emb, result.adata, result.splits, "sim", None, config)[0]
    assert first.to_csv() == again.to_csv()


def test_summary_covers_every_task_and_alignment(scores):
    summary = scores["pca"][0]
    assert set(summary.index.get_level_values("alignment")) == {"none", "center"}
    per_pert = scores["pca"][1]
    assert {"energy_distance", "energy_p_value", "consistency", "consistency_p_value"} <= set(per_pert.columns)


def test_random_embedding_scores_chance_on_every_task(scores):
    value = scores["random"][0]
    for alignment in ("none", "center"):
        assert abs(value[alignment, "recall"] - 0.10) < 0.08
        assert abs(value[alignment, "top1_accuracy"] - value[alignment, "top1_chance"]) < 0.03
        assert abs(value[alignment, "top5_accuracy"] - value[alignment, "top5_chance"]) < 0.06
        assert value[alignment, "energy_frac_significant"] < 0.2
        assert value[alignment, "consistency_frac_significant"] < 0.2
        assert abs(value[alignment, "structural_integrity"] - 0.5) < 0.02


def test_pca_beats_the_random_floor_on_every_perturbation_task(scores):
    pca_value, rnd = scores["pca"][0], scores["random"][0]
    for metric in ("recall", "top1_accuracy", "energy_frac_significant", "consistency_frac_significant",
                   "structural_integrity", "gene_pearson"):
        assert pca_value["center", metric] > rnd["center", metric] + 0.05, metric


def test_centering_on_controls_removes_a_strong_batch_effect(scores):
    value = scores["pca"][0]
    assert value["none", "ilisi"] < 0.3 < value["center", "ilisi"]
    assert value["none", "kbet"] < value["center", "kbet"]


def test_null_perturbations_are_the_non_expressed_targets(screen):
    sim, result = screen
    detection = target_detection(result.adata)
    expected = sorted(sim.truth_obs.index[sim.truth_obs["class"] == "non_expressed"])
    assert sorted(detection.index[detection <= 0.01]) == expected


def test_scvi_never_trains_on_the_query_batch(screen):
    _, result = screen
    adata = result.adata
    kwargs = dict(n_comps=4, seed=0, query_batches=("batch1",), max_epochs=3, query_epochs=2, accelerator="cpu")
    first = scvi(adata, **kwargs)
    changed = adata.copy()
    query = (changed.obs["batch"] == "batch1").to_numpy()
    counts = changed.layers["counts"].toarray()
    counts[query] = np.random.default_rng(1).poisson(2.0, size=counts[query].shape)
    changed.layers["counts"] = type(adata.layers["counts"])(counts)
    second = scvi(changed, **kwargs)
    # Reference cells are embedded by a model that never saw the query cells: identical either way.
    np.testing.assert_array_equal(first.X[~query], second.X[~query])
    assert not np.array_equal(first.X[query], second.X[query])
    assert first.uns["embedding"]["params"]["query_batches"] == ["batch1"]
    np.testing.assert_array_equal(first.X, scvi(adata, **kwargs).X)  # seeded: same bytes


def test_command_rejects_bad_relationships_and_unknown_alignment(screen, tmp_path):
    _, result = screen
    from pertprobe.io import write_h5ad, write_table

    write_h5ad(result.adata, tmp_path / "p.h5ad")
    write_h5ad(pca(result.adata, n_comps=5), tmp_path / "e.h5ad")
    write_table(result.splits.set_index("task"), tmp_path / "splits.csv")
    (tmp_path / "rels.tsv").write_text("first\tsecond\nA\tB\n")
    base = [sys.executable, str(BIN / "eval_cell_embeddings.py"), "--embedding", "e.h5ad", "--h5ad", "p.h5ad",
            "--splits", "splits.csv", "--dataset", "d", "--prefix", "out"]
    bad = subprocess.run(base + ["--relationships", "rels.tsv"], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 2 and "rels.tsv" in bad.stderr and "gene_a" in bad.stderr
    assert not list(tmp_path.glob("out.*"))
    bad = subprocess.run(base + ["--alignments", "none,zscore"], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 2 and "zscore" in bad.stderr
    bad = subprocess.run(base + ["--null-perturbations", "NOTAGENE"], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 2 and "NOTAGENE" in bad.stderr and "--null-perturbations" in bad.stderr
    ok = subprocess.run(base + ["--tasks", "relationships,integrity", "--alignments", "center"], cwd=tmp_path,
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    table = pd.read_csv(tmp_path / "out.pca.cell_metrics.csv")
    # no relationships file: recall is not invented but reported as not run, with why
    assert set(table.loc[table["metric"] != "not_run", "task"]) == {"integrity"}
    skipped = table[table["metric"] == "not_run"]
    assert list(skipped["task"]) == ["relationships"] and "--known_relationships" in skipped["note"].iloc[0]
    assert set(names("cell_task")) >= set(table["task"])
    # Several embeddings in one process: the same tables as one by one.
    write_h5ad(random(result.adata, n_comps=5, seed=1), tmp_path / "r.h5ad")
    both = subprocess.run(base + ["--embedding", "r.h5ad", "--tasks", "relationships,integrity", "--alignments", "center",
                                  "--prefix", "both"], cwd=tmp_path, capture_output=True, text=True)
    assert both.returncode == 0, both.stderr
    # Progress in the task log: each embedding i/n, then each task of each alignment with its time.
    assert "scoring pca (1/2)" in both.stderr and "scoring random (2/2)" in both.stderr
    assert re.search(r"random center \(1/1\) task integrity \(2/2\) done in [\d.]+ s", both.stderr), both.stderr
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "both.pca.cell_metrics.csv"), table)
    assert set(pd.read_csv(tmp_path / "both.random.cell_metrics.csv")["model"]) == {"random"}
    twice = subprocess.run(base + ["--embedding", "e.h5ad", "--prefix", "twice"], cwd=tmp_path, capture_output=True,
                           text=True)
    assert twice.returncode == 2 and "given twice" in twice.stderr and not list(tmp_path.glob("twice.*"))



def test_compile_cache_keeps_jax_kernels_without_changing_metrics(tmp_path):
    """--compile-cache: scib-metrics' JAX kernels land in the folder (for the next task) and a process
    that reads them back computes the same values as one that compiled them itself."""
    code = ("import sys, json, numpy as np, scib_metrics\n"
            "from pertprobe.cells.batch_mixing import exact_neighbors, use_compile_cache\n"
            "if sys.argv[1] != '-': use_compile_cache(sys.argv[1])\n"
            "rng = np.random.default_rng(0)\n"
            "x = rng.normal(size=(300, 8)).astype(np.float32)\n"
            "batch, label = np.repeat(['a', 'b', 'c'], 100), np.tile(['p', 'q'], 150)\n"
            "print(json.dumps([float(scib_metrics.ilisi_knn(exact_neighbors(x, 15), batch)),\n"
            "                  float(scib_metrics.silhouette_batch(x, label, batch))]))\n")
    cache = tmp_path / "jax_cache"

    def metrics(cache_arg: str) -> str:
        run = subprocess.run([sys.executable, "-c", code, cache_arg], capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(BIN)})
        assert run.returncode == 0, run.stderr
        return run.stdout

    uncached = metrics("-")
    assert metrics(str(cache)) == uncached
    entries = {p.name for p in cache.iterdir()}
    assert len(entries) >= 2
    assert metrics(str(cache)) == uncached
    assert {p.name for p in cache.iterdir()} == entries  # read back: nothing compiled anew
