"""PREPROCESS against its definition: normalization, gene selection, pseudobulk, DE genes, splits."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from pertprobe.data.preprocess import PreprocessConfig, load_counts, preprocess
from pertprobe.data.tasks import TaskConfig, TaskNotApplicable, unseen_perturbation
from scipy import stats

CONFIG = PreprocessConfig(min_genes_per_cell=20, n_hvg=80, n_folds=4, seeds=(0, 1))


@pytest.fixture(scope="module")
def processed(small_sim, tmp_path_factory):
    from pertprobe.data.dataset import DatasetSpec

    path = tmp_path_factory.mktemp("pp") / "small.h5ad"
    small_sim.to_anndata().write_h5ad(path)
    spec = DatasetSpec(batch_col="batch")
    return load_counts(path, spec), preprocess(load_counts(path, spec), spec, CONFIG)


def test_raw_counts_kept_and_normalized_over_all_genes(processed, small_sim):
    raw, result = processed
    adata = result.adata
    full = raw[adata.obs_names].X.toarray()
    counts = raw[adata.obs_names, adata.var_names].X.toarray()
    np.testing.assert_array_equal(adata.layers["counts"].toarray(), counts)
    expected = np.log1p(counts / full.sum(axis=1, keepdims=True) * 1e4)
    np.testing.assert_allclose(adata.X.toarray(), expected, rtol=1e-5, atol=1e-5)


def test_gene_selection_is_hvg_union_targets_union_de(processed):
    _, result = processed
    var = result.adata.var
    assert var["highly_variable"].sum() == CONFIG.n_hvg
    expected = set(var.index[var["highly_variable"]]) | set(var.index[var["is_target"]]) | set(result.de["gene"])
    assert set(var.index) == expected
    targets = {g for genes in result.pseudobulk.targets.values() for g in genes}
    assert targets <= set(var.index)
    combos = [p for p in result.pseudobulk.perturbations if "+" in p]
    assert all(len(result.pseudobulk.targets[p]) == 2 for p in combos)


def test_pseudobulk_is_the_mean_of_cells(processed):
    _, result = processed
    adata, pb = result.adata, result.pseudobulk
    for label in [pb.control_label] + pb.perturbations[:5]:
        cells = adata[adata.obs["perturbation"] == label].X.toarray()
        np.testing.assert_allclose(pb.means.loc[label].to_numpy(), cells.mean(axis=0), rtol=1e-6, atol=1e-7)
        assert pb.n_cells[label] == len(cells)
    by_batch = result.pseudobulk_by_batch
    totals = by_batch["n_cells"].groupby(level="perturbation").sum()
    np.testing.assert_array_equal(totals.loc[pb.means.index].to_numpy(), pb.n_cells.to_numpy())


def test_de_table_is_de_py_on_all_genes_restricted_to_the_selection(processed):
    """DE genes come from every gene after QC; the table holds the selected genes, DE genes included,
    and the counts say how many pass per perturbation."""
    from pertprobe.data.de import de_counts, de_gene_sets, de_statistics, top_de_genes

    raw, result = processed
    full = raw[result.adata.obs_names].copy()
    full.X = full.X.astype(np.float64)
    import scanpy as sc

    sc.pp.normalize_total(full, target_sum=1e4)
    sc.pp.log1p(full)
    s = de_statistics(full.X, full.obs["perturbation"].to_numpy(), full.var_names, "control", CONFIG.de)
    top = top_de_genes(s, CONFIG.de)
    sets = de_gene_sets(result.de)
    for pert, rows in top.groupby("perturbation"):
        assert sets.get(pert, []) == list(rows.sort_values("rank")["gene"]), pert
    assert set(result.de["gene"]) == set(result.adata.var_names)
    assert len(result.de) == len(result.pseudobulk.perturbations) * result.adata.n_vars
    pd.testing.assert_frame_equal(result.de_counts, de_counts(s, CONFIG.de))
    fewer = result.de_counts.index[result.de_counts["n_de_genes"] < CONFIG.n_de_genes].tolist()
    assert result.summary["perturbations_with_fewer_de_genes"] == fewer


def test_splits_cover_each_perturbation_once_per_seed(processed):
    _, result = processed
    splits, perts = result.splits, set(result.pseudobulk.perturbations)
    splits = splits[splits["task"] == "unseen_perturbation"]
    for seed, per_seed in splits.groupby("seed"):
        test = per_seed[per_seed["split"] == "test"]
        assert sorted(test["perturbation"]) == sorted(perts)  # every perturbation tested exactly once
        sizes = test.groupby("fold").size()
        assert sizes.max() - sizes.min() <= 1
        for fold, rows in per_seed.groupby("fold"):
            train = set(rows.loc[rows["split"] == "train", "perturbation"])
            assert train.isdisjoint(rows.loc[rows["split"] == "test", "perturbation"])
            assert train | set(rows.loc[rows["split"] == "test", "perturbation"]) == perts
    combos = [p for p in perts if "+" in p]
    assert combos and set(combos) <= set(splits["perturbation"])  # combinations are whole units


def test_splits_deterministic_and_seed_dependent():
    perts = [f"P{i}" for i in range(30)] + ["P1+P2"]
    config = TaskConfig(n_folds=5, seeds=(0, 1))
    a, b = unseen_perturbation(perts, config), unseen_perturbation(perts, config)
    pd.testing.assert_frame_equal(a, b)
    fold0 = a[(a["split"] == "test") & (a["fold"] == 0)]
    assert set(fold0[fold0["seed"] == 0]["perturbation"]) != set(fold0[fold0["seed"] == 1]["perturbation"])
    with pytest.raises(TaskNotApplicable, match="n_folds"):
        unseen_perturbation(perts[:3], TaskConfig(n_folds=5))


def test_preprocess_is_deterministic(processed, small_sim, tmp_path):
    from pertprobe.data.dataset import DatasetSpec

    raw, result = processed
    spec = DatasetSpec(batch_col="batch")
    again = preprocess(raw.copy(), spec, CONFIG)
    pd.testing.assert_frame_equal(again.pseudobulk.means, result.pseudobulk.means)
    pd.testing.assert_frame_equal(again.de, result.de)
    pd.testing.assert_frame_equal(again.splits, result.splits)


def test_qc_drops_perturbations_that_fall_below_min_cells(processed):
    """A perturbation whose cells fail QC is dropped and reported; none left is an error."""
    import scipy.sparse as sp
    from pertprobe.data.dataset import DatasetSpec

    raw, _ = processed
    spec = DatasetSpec(batch_col="batch")
    victim = sorted(set(raw.obs["perturbation"]) - {"control"})[0]
    X = raw.X.tolil()
    for i in np.flatnonzero(raw.obs["perturbation"] == victim)[5:]:
        X[i, :] = 0
    damaged = raw.copy()
    damaged.X = sp.csr_matrix(X)
    result = preprocess(damaged, spec, CONFIG)
    assert result.summary["perturbations_dropped_after_qc"] == [victim]
    assert victim not in result.pseudobulk.means.index and victim not in set(result.splits["perturbation"])
    with pytest.raises(ValueError, match="after QC"):
        preprocess(raw.copy(), replace(spec, min_cells_per_perturbation=10_000), CONFIG)


def test_label_resolution_lists_every_perturbation_and_its_measured_targets(processed):
    _, result = processed
    table = result.resolution.set_index("perturbation")
    assert list(table.index) == [p for p in result.pseudobulk.perturbations]
    for pert, row in table.iterrows():
        assert row["measured_genes"].split(";") == result.pseudobulk.targets[pert]
        assert row["resolved"] == (len(result.pseudobulk.targets[pert]) == len(pert.split("+")))
    assert result.summary["n_perturbations_unresolved"] == int((~table["resolved"]).sum())


def test_an_unmeasured_target_is_reported_unresolved():
    from pertprobe.data.preprocess import label_resolution

    table = label_resolution(["A", "A+B", "C"], {"A": ["A"], "A+B": ["A"], "C": []}, "CRISPRi").set_index("perturbation")
    assert table["resolved"].to_dict() == {"A": True, "A+B": False, "C": False}
    assert table.loc["A+B", "targets"] == "A+B" and table.loc["A+B", "measured_genes"] == "A"


def test_report_names_unresolved_perturbations():
    from pertprobe.report.html import render_html
    from pertprobe.report.leaderboard import leaderboard

    metrics = pd.DataFrame({"dataset": "d", "task": "unseen_perturbation", "split": "fold0", "seed": 0, "model": ["mean", "ceiling"],
                            "embedding": "none", "perturbation": "A", "metric": "mse", "value": [1.0, 0.5],
                            "fallback": False, "n_fit": np.nan})
    summary = {"n_cells": 10, "unresolved_perturbations": ["sgX_1"], "perturbations_with_fewer_de_genes": ["B", "C"],
               "perturbations_without_de_genes": ["C"]}
    page = render_html(leaderboard(metrics), metrics, {"d": summary}, [], "versions")
    assert "1 perturbation(s) name targets that are not measured" in page and "sgX_1" in page
    assert "2 perturbation(s) have fewer significant, expressed DE genes" in page
    assert "Without any, so their DE-gene metrics are undefined: C." in page
