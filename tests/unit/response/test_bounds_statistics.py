"""Bounds (ceiling, floors, fraction of the gap) and paired statistics against their definitions."""

import numpy as np
import pandas as pd
import pytest
from pertprobe.response.bounds import add_bounds, split_half_ceiling
from pertprobe.response.statistics import paired_comparisons
from scipy import stats


def test_split_half_ceiling_is_perfect_without_noise():
    """Cells identical within a perturbation: both halves equal the full profile."""
    rng = np.random.default_rng(0)
    profiles = {p: rng.normal(size=25) for p in ["control", "a", "b", "c", "d"]}
    labels = np.repeat(list(profiles), 6)
    X = np.vstack([profiles[p] for p in labels])
    genes = pd.Index([f"g{i}" for i in range(25)])
    table = split_half_ceiling(X, labels, genes, ["a", "b", "c", "d"], profiles["control"], None, n_draws=2)
    wide = table.pivot(index="perturbation", columns="metric", values="value")
    np.testing.assert_allclose(wide["pearson_delta"], 1.0)
    assert (wide["rank_delta"] == 0).all() and np.allclose(wide["mse"], 0)


def test_split_half_ceiling_reflects_noise_and_is_seeded():
    rng = np.random.default_rng(1)
    labels = np.repeat(["control", "a", "b", "c"], 40)
    X = rng.normal(size=(len(labels), 50)) + np.repeat(rng.normal(size=(4, 50)), 40, axis=0)
    genes = pd.Index([f"g{i}" for i in range(50)])
    args = (X, labels, genes, ["a", "b", "c"], X[labels == "control"].mean(axis=0), None)
    first, again = split_half_ceiling(*args, n_draws=3, seed=4), split_half_ceiling(*args, n_draws=3, seed=4)
    pd.testing.assert_frame_equal(first, again)
    pearson = first[first["metric"] == "pearson_delta"]["value"]
    assert (pearson < 0.999).all() and (pearson > 0.5).all()
    with pytest.raises(ValueError, match="fewer than 2 cells"):
        split_half_ceiling(X[:41], labels[:41], genes, ["a"], X[:40].mean(axis=0), None)


def test_fraction_of_gap():
    board = pd.DataFrame({
        "dataset": "d", "metric": ["pearson_delta"] * 4 + ["rank_delta"] * 4,
        "model": ["mean", "linear", "linear", "ceiling"] * 2,
        "embedding": ["none", "data_pca", "random", "none"] * 2,
        "mean": [0.4, 0.55, 0.45, 0.7, 0.5, 0.2, 0.45, 0.05],
    })
    out = add_bounds(board, {"mean"}).set_index(["metric", "model", "embedding"])
    # pearson: floors are mean (0.4) and the random-embedding model (0.45): best floor 0.45
    assert out.loc[("pearson_delta", "linear", "data_pca"), "best_floor"] == 0.45
    assert out.loc[("pearson_delta", "linear", "data_pca"), "fraction_of_gap"] == pytest.approx(0.4)
    # rank (lower is better): best floor 0.45, ceiling 0.05
    assert out.loc[("rank_delta", "linear", "data_pca"), "fraction_of_gap"] == pytest.approx(0.625)
    assert out.loc[("rank_delta", "ceiling", "none"), "fraction_of_gap"] == pytest.approx(1.0)


def test_paired_comparisons_match_scipy():
    rng = np.random.default_rng(2)
    rows = []
    for seed in (0, 1):
        for fold in range(3):
            for p in range(10):
                base = rng.normal()
                for model, shift in (("a", 0.3), ("b", 0.0)):
                    rows.append(("d", f"fold{fold}", seed, model, "none", f"p{p}", "pearson_delta",
                                 base + shift + rng.normal(scale=0.1)))
    metrics = pd.DataFrame(rows, columns=["dataset", "split", "seed", "model", "embedding", "perturbation", "metric",
                                          "value"])
    out = paired_comparisons(metrics, n_bootstrap=1000).iloc[0]
    per_split = metrics.groupby(["model", "seed", "split"])["value"].mean().unstack("model")
    expected = stats.ttest_rel(per_split["a"], per_split["b"])
    assert out["p_value"] == pytest.approx(expected.pvalue)
    assert out["mean_difference"] == pytest.approx((per_split["a"] - per_split["b"]).mean())
    assert out["ci_low"] < 0.3 < out["ci_high"] and out["ci_low"] > 0.2
    assert out["n_splits"] == 6 and out["n_perturbations"] == 10
