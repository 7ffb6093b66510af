"""Bounds (ceiling, floors, fraction of the gap) and paired statistics against their definitions."""

import numpy as np
import pandas as pd
import pytest
from pertprobe.response.bounds import add_bounds, noise_ceiling
from pertprobe.response.statistics import paired_comparisons
from scipy import stats


def test_ceiling_is_perfect_without_noise():
    """Cells identical within a perturbation: both halves equal the full profile, and so does the
    noise-matched profile."""
    rng = np.random.default_rng(0)
    profiles = {p: rng.normal(size=25) for p in ["control", "a", "b", "c", "d"]}
    labels = np.repeat(list(profiles), 6)
    X = np.vstack([profiles[p] for p in labels])
    genes = pd.Index([f"g{i}" for i in range(25)])
    table = noise_ceiling(X, labels, genes, ["a", "b", "c", "d"], profiles["control"], None, n_draws=2)
    for model in ("ceiling", "split_half"):
        wide = table[table["model"] == model].pivot(index="perturbation", columns="metric", values="value")
        np.testing.assert_allclose(wide["pearson_delta"], 1.0)
        assert (wide["rank_delta"] == 0).all() and np.allclose(wide["mse"], 0)


def test_ceiling_reflects_noise_and_is_seeded():
    rng = np.random.default_rng(1)
    labels = np.repeat(["control", "a", "b", "c"], 40)
    X = rng.normal(size=(len(labels), 50)) + np.repeat(rng.normal(size=(4, 50)), 40, axis=0)
    genes = pd.Index([f"g{i}" for i in range(50)])
    args = (X, labels, genes, ["a", "b", "c"], X[labels == "control"].mean(axis=0), None)
    first, again = noise_ceiling(*args, n_draws=3, seed=4), noise_ceiling(*args, n_draws=3, seed=4)
    pd.testing.assert_frame_equal(first, again)
    pearson = first[first["metric"] == "pearson_delta"].set_index(["model", "perturbation"])["value"]
    assert (pearson < 0.999).all() and (pearson > 0.5).all()
    assert (pearson["ceiling"] > pearson["split_half"]).all()  # corrected to full depth
    mse = first[first["metric"] == "mse"].set_index(["model", "perturbation"])["value"]
    # noise-matched: the observation's own noise (σ² = 1 per gene, 40 cells) vs 4σ²/n for two halves
    np.testing.assert_allclose(mse["ceiling"], 1 / 40, rtol=0.35)
    np.testing.assert_allclose(mse["split_half"], 4 / 40, rtol=0.35)
    with pytest.raises(ValueError, match="fewer than 2 cells"):
        noise_ceiling(X[:41], labels[:41], genes, ["a"], X[:40].mean(axis=0), None)


def test_interpolated_duplicate_is_the_duplicate_where_certain_and_the_floor_where_not():
    """α = 1: exactly the split-half duplicate; α = 0: the reference (the mean floor) scored
    against the same half; in between, per gene α·A + (1 − α)·M."""
    rng = np.random.default_rng(2)
    labels = np.repeat(["control", "a", "b", "c"], 30)
    X = rng.normal(size=(len(labels), 40)) + np.repeat(rng.normal(size=(4, 40)), 30, axis=0)
    genes = pd.Index([f"g{i}" for i in range(40)])
    test, control = ["a", "b", "c"], X[labels == "control"].mean(axis=0)
    reference = rng.normal(size=40)

    def run(alpha):
        table = noise_ceiling(X, labels, genes, test, control, None, n_draws=2, seed=3, reference=reference,
                              alpha=pd.DataFrame(alpha, index=test, columns=genes))
        return table.pivot_table(index=["perturbation", "metric"], columns="model", values="value")

    certain = run(np.ones((3, 40)))
    np.testing.assert_allclose(certain["interpolated_duplicate"], certain["split_half"], rtol=1e-12)
    unsure = run(np.zeros((3, 40)))
    floor_mse = unsure.xs("mse", level="metric")["interpolated_duplicate"]
    # the reference against half B: its error is ‖M − B‖²/G, about ‖M − truth‖²/G + σ²·2/n
    truth_error = np.array([np.mean((reference - X[labels == p].mean(axis=0)) ** 2) for p in test])
    np.testing.assert_allclose(floor_mse.loc[test], truth_error, rtol=0.1)
    assert "interpolated_duplicate" not in noise_ceiling(X, labels, genes, test, control, None, n_draws=1)["model"].values


def test_replicate_duplicate_splits_by_batch():
    """Cells of one batch against the other, each centred on its own batch's controls: a shift that
    the controls share is no error, one that only the perturbation shows is; a perturbation in one
    batch has no replicate (NaN); without batches there is no replicate anchor."""
    rng = np.random.default_rng(5)
    labels = np.repeat(["control", "a", "b", "c"], 40)
    batches = np.tile(np.repeat(["b1", "b2"], 20), 4)
    batches[labels == "c"] = "b1"  # c was captured once
    X = rng.normal(scale=0.1, size=(len(labels), 30)) + np.repeat(rng.normal(size=(4, 30)), 40, axis=0)
    X[batches == "b2"] += 0.5  # a batch shift the controls share
    X[(batches == "b2") & (labels == "a")] += 0.3  # and one only perturbation a shows
    genes = pd.Index([f"g{i}" for i in range(30)])
    control = X[labels == "control"].mean(axis=0)
    table = noise_ceiling(X, labels, genes, ["a", "b", "c"], control, None, n_draws=1, batches=batches)
    mse = table[(table["model"] == "replicate_duplicate") & (table["metric"] == "mse")].set_index("perturbation")
    np.testing.assert_allclose(mse.loc["a", "value"], 0.09, rtol=0.2)  # (0.3)²: not explained by the controls
    assert mse.loc["b", "value"] < 0.01  # the shared shift is removed with the controls
    assert np.isnan(mse.loc["c", "value"])
    split = table[(table["model"] == "split_half") & (table["metric"] == "mse")]["value"]
    assert (split < 0.1).all()  # random halves mix the batches
    assert "replicate_duplicate" not in set(noise_ceiling(X, labels, genes, ["a", "b"], control, None,
                                                          n_draws=1)["model"])


def _board(means, sd=0.01, n_splits=5, metric=("pearson_delta", "rank_delta")):
    models = ["mean", "linear", "linear", "ceiling", "target_only"]
    return pd.DataFrame({
        "dataset": "d", "task": "unseen_perturbation", "metric": [m for m in metric for _ in models], "model": models * len(metric),
        "embedding": ["none", "data_pca", "random", "none", "none"] * len(metric),
        "mean": means, "sd": sd, "n_splits": n_splits,
    })


def test_fraction_of_gap_is_oriented_by_the_metric():
    board = _board([0.4, 0.55, 0.45, 0.7, 0.3, 0.5, 0.2, 0.45, 0.05, 0.3])
    out = add_bounds(board, {"mean", "target_only"}, {"target_only"}).set_index(["metric", "model", "embedding"])
    # pearson: floors are mean (0.4), target_only (0.3) and the random-embedding model (0.45)
    row = out.loc[("pearson_delta", "linear", "data_pca")]
    assert row["best_floor"] == 0.45 and row["best_shortcut"] == 0.3 and row["gap_status"] == "ok"
    assert row["fraction_of_gap"] == pytest.approx(0.4) and row["gap"] == pytest.approx(0.25)
    assert row["dynamic_range"] == pytest.approx(0.25 / 0.55)  # (ceiling − floor) / (perfect − floor)
    # rank (lower is better): best floor is target_only (0.3), ceiling 0.05
    row = out.loc[("rank_delta", "linear", "data_pca")]
    assert row["best_floor"] == 0.3 and row["fraction_of_gap"] == pytest.approx(0.4)
    assert row["dynamic_range"] == pytest.approx(0.25 / 0.3)
    assert out.loc[("rank_delta", "ceiling", "none"), "fraction_of_gap"] == pytest.approx(1.0)
    assert out.loc[("rank_delta", "mean", "none"), "gap_status"] == "below the best floor"


def test_fraction_of_gap_is_undefined_when_the_bounds_cannot_separate():
    # rank: the ceiling (0.35) is worse than the best floor (0.3): no fraction, and the reason
    out = add_bounds(_board([0.4, 0.55, 0.45, 0.7, 0.3, 0.5, 0.2, 0.45, 0.35, 0.3]), {"mean", "target_only"})
    rank = out[out["metric"] == "rank_delta"]
    assert rank["fraction_of_gap"].isna().all() and (rank["gap_status"] == "ceiling not above the best floor").all()
    # pearson: gap 0.02 with a standard error of 0.03·√2/√5 ≈ 0.019 per bound: within noise
    out = add_bounds(_board([0.4, 0.55, 0.45, 0.47, 0.3], sd=0.03, metric=("pearson_delta",)), {"mean"})
    assert out["fraction_of_gap"].isna().all()
    assert out["gap_status"].str.startswith("floor-to-ceiling gap within noise").all()
    # the same gap measured without spread is a real gap; a score above the ceiling is flagged
    out = add_bounds(_board([0.4, 0.55, 0.45, 0.47, 0.3], sd=0.0, metric=("pearson_delta",)), {"mean"}).set_index(["metric", "model",
                                                                                           "embedding"])
    assert out.loc[("pearson_delta", "linear", "data_pca"), "gap_status"] == "above the ceiling"
    assert out.loc[("pearson_delta", "linear", "data_pca"), "fraction_of_gap"] == pytest.approx(5.0)


def test_paired_comparisons_match_scipy():
    rng = np.random.default_rng(2)
    rows = []
    for seed in (0, 1):
        for fold in range(3):
            for p in range(10):
                base = rng.normal()
                for model, shift in (("a", 0.3), ("b", 0.0)):
                    rows.append(("d", "unseen_perturbation", f"fold{fold}", seed, model, "none", f"p{p}", "pearson_delta",
                                 base + shift + rng.normal(scale=0.1)))
    metrics = pd.DataFrame(rows, columns=["dataset", "task", "split", "seed", "model", "embedding", "perturbation", "metric",
                                          "value"])
    out = paired_comparisons(metrics, n_bootstrap=1000).iloc[0]
    per_split = metrics.groupby(["model", "seed", "split"])["value"].mean().unstack("model")
    d = (per_split["a"] - per_split["b"]).to_numpy()
    assert out["mean_difference"] == pytest.approx(d.mean())
    # Nadeau & Bengio by hand: J = 6 splits of 3-fold CV, n_test/n_train = 1/2
    t = d.mean() / np.sqrt((1 / 6 + 1 / 2) * d.var(ddof=1))
    assert out["t_corrected"] == pytest.approx(t) and out["p_corrected"] == pytest.approx(2 * stats.t.sf(abs(t), 5))
    # the naive paired t-test over the same splits claims more than the corrected one
    assert stats.ttest_rel(per_split["a"], per_split["b"]).pvalue < out["p_corrected"]
    per_pert = metrics.groupby(["model", "perturbation"])["value"].mean().unstack("model")
    assert out["p_perturbation"] == pytest.approx(stats.ttest_1samp(per_pert["a"] - per_pert["b"], 0).pvalue)
    assert out["ci_low"] < 0.3 < out["ci_high"] and out["ci_low"] > 0.2
    assert out["n_splits"] == 6 and out["n_folds"] == 3 and out["n_perturbations"] == 10


def test_corrected_test_does_not_reject_when_there_is_no_difference():
    """Same perturbations re-tested across seeds: under the null, the naive split-level t-test
    rejects far too often; the corrected and the perturbation-level tests stay near 5%."""
    from pertprobe.response.statistics import corrected_resampled_ttest

    rng = np.random.default_rng(3)
    naive, corrected, per_pert = [], [], []
    for _ in range(300):
        effect = rng.normal(scale=0.3, size=20)  # per-perturbation difference, shared by every seed
        effect -= effect.mean() - rng.normal(scale=0.3 / np.sqrt(20))  # a true null: mean ~ its sampling noise
        splits = [effect[rng.permutation(20)[:5]].mean() + rng.normal(scale=0.01) for _ in range(4 * 5)]
        naive.append(stats.ttest_1samp(splits, 0).pvalue < 0.05)
        corrected.append(corrected_resampled_ttest(np.asarray(splits), 4)[1] < 0.05)
        per_pert.append(stats.ttest_1samp(effect, 0).pvalue < 0.05)
    assert np.mean(naive) > 0.2
    assert np.mean(corrected) < 0.12 and np.mean(per_pert) < 0.12
