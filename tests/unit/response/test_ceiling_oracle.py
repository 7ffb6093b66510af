"""The noise ceiling against the truth on the simulator.

Each perturbation has 1,000 simulated cells: 40 are the "observed" experiment and the mean of the
other 960 stands in for the truth (its own noise is 4% of the observed noise). The truth, scored
against the observation by the metric code, is what a perfect predictor would get; the ceiling,
computed from the 40 observed cells alone, must agree with it and never fall below it.
"""

import numpy as np
import pandas as pd
import pytest
from pertprobe.data.pseudobulk import group_means
from pertprobe.data.simulate import simulate
from pertprobe.data.de import de_statistics, de_table, rest_weights, top_de_genes
from pertprobe.response.de_agreement import ObservedDE
from pertprobe.response.bounds import noise_ceiling, spearman_brown_ceiling
from pertprobe.response.metrics import directions, response_metrics

from ...conftest import small_config

N_OBSERVED = 40
# metric -> how far the ceiling may lie from the truth's score (relative for errors)
AGREE = {"weighted_r2_delta": 0.05, "pearson": 0.01, "pearson_delta": 0.03, "pearson_delta_centroid": 0.03, "cosine_delta": 0.03, "pearson_de": 0.01, "rank_delta": 0.02}
AGREE_RELATIVE = {"wmse": 0.2, "mse": 0.15, "rmse": 0.1, "l2_delta": 0.1, "mse_de": 0.2, "rmse_de": 0.1}


@pytest.fixture(scope="module")
def scores():
    sim = simulate(small_config(cells_per_perturbation=1000, n_control=400, n_batches=1, seed=5))
    counts = sim.counts.toarray()
    X = np.log1p(counts / counts.sum(axis=1, keepdims=True) * 1e4)
    labels = sim.obs["perturbation"].astype(str).to_numpy()
    rng = np.random.default_rng(0)
    observed, truth = [], []
    for p in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == p))
        observed += list(idx if p == "control" else idx[:N_OBSERVED])
        truth += [] if p == "control" else list(idx[N_OBSERVED:])
    genes = pd.Index(sim.var.index)
    obs_means = group_means(X[observed], labels[observed])[0].set_axis(genes, axis=1)
    true_means = group_means(X[truth], labels[truth])[0].set_axis(genes, axis=1)
    control = obs_means.loc["control"].to_numpy()
    test = [p for p in obs_means.index if p != "control"]
    # DE genes from the truth, so the check is of the noise correction, not of DE-gene selection
    de = {p: list(genes[np.argsort(-np.abs(true_means.loc[p].to_numpy() - control))[:20]]) for p in test}
    reference = X[[i for i in observed if labels[i] != "control"]].mean(axis=0)  # the perturbed centroid
    weights = rest_weights(X[truth], labels[truth], genes, "control")  # Miller weights, also from the truth
    # the observed side's DE table, as PREPROCESS computes it from the observed cells
    stats = de_statistics(X[observed], labels[observed], genes, "control")
    targets = {p: [p] if p in genes else [] for p in test}
    observed_de = ObservedDE.from_table(de_table(stats, top_de_genes(stats), weights), targets, 0.05, 1.0)
    oracle = response_metrics(true_means.loc[test], obs_means.loc[test], control, de, reference=reference,
                              weights=weights, observed_de=observed_de)
    bounds = noise_ceiling(X[observed], labels[observed], genes, test, control, de, n_draws=10, seed=1,
                           reference=reference, weights=weights, observed_de=observed_de)
    table = bounds.groupby(["model", "metric"])["value"].mean().unstack("model")
    table["oracle"] = oracle.groupby("metric")["value"].mean()
    per_perturbation = bounds[bounds["model"] == "ceiling"].set_index(["metric", "perturbation"])["value"]
    difference = per_perturbation - oracle.set_index(["metric", "perturbation"])["value"]
    table["difference_se"] = difference.groupby("metric").sem()  # the truth's score is one draw of its own noise
    return table


def test_ceiling_agrees_with_the_truth(scores):
    for metric, tol in AGREE.items():
        assert abs(scores.at[metric, "ceiling"] - scores.at[metric, "oracle"]) < tol, (metric, scores.loc[metric])
    for metric, tol in AGREE_RELATIVE.items():
        ratio = scores.at[metric, "ceiling"] / scores.at[metric, "oracle"]
        assert 1 - tol < ratio < 1 + tol, (metric, scores.loc[metric])


def test_ceiling_is_never_below_the_truth(scores):
    """Within two standard errors of the per-perturbation differences (R² of a perturbation with
    almost no response is one noisy draw) and 0.005."""
    for metric, higher in directions().items():
        ceiling, oracle = scores.at[metric, "ceiling"], scores.at[metric, "oracle"]
        slack = max(0.005, 2 * scores.at[metric, "difference_se"])
        if higher:
            assert ceiling > oracle - slack, (metric, scores.loc[metric])
        else:  # errors: the truth's score carries its own 4% noise
            assert ceiling < oracle * 1.05 + slack, (metric, scores.loc[metric])


def test_half_depth_duplicate_falls_below_the_truth(scores):
    """Why half-vs-half is an anchor and not the ceiling: two half-depth experiments agree less."""
    assert scores.at["pearson_delta", "split_half"] < scores.at["pearson_delta", "oracle"] - 0.1
    assert scores.at["mse", "split_half"] > 3 * scores.at["mse", "oracle"]


def test_spearman_brown_against_its_formula():
    r = np.array([0.6, 0.0, -0.3, np.nan, 1.0])
    np.testing.assert_allclose(spearman_brown_ceiling(r), [np.sqrt(1.2 / 1.6), 0, 0, np.nan, 1.0])
