"""Metrics against their definitions on inputs with known answers."""

import numpy as np
import pandas as pd
import pytest
from pertprobe.registry import entries, names
from pertprobe.response.metrics import directions, rank_metric, response_metrics, rowwise_pearson
from scipy import stats

AGREEMENT = [e.name for e in entries("metric") if "observed_de" in e.needs]  # test_de_agreement.py
METRICS = [m for m in names("metric") if m not in AGREEMENT]
DE_METRICS = [e.name for e in entries("metric") if "de_genes" in e.needs]
WEIGHTED = [e.name for e in entries("metric") if "de_weights" in e.needs]
HIGHER_IS_BETTER = directions()


def _brute_force_rank(pred, obs):
    """Literal definition: position of p's own prediction, ties at their average position."""
    n = len(pred)
    out = []
    for p in range(n):
        cos = [np.dot(obs[p], q) / (np.linalg.norm(obs[p]) * np.linalg.norm(q)) if np.linalg.norm(q) > 0 else 0.0
               for q in pred]
        own = cos[p]
        above = sum(c > own + 1e-12 for i, c in enumerate(cos) if i != p)
        ties = sum(abs(c - own) <= 1e-12 for i, c in enumerate(cos) if i != p)
        out.append((above + 0.5 * ties) / (n - 1))
    return np.array(out)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_pearson_matches_scipy(rng):
    a, b = rng.normal(size=(6, 50)), rng.normal(size=(6, 50))
    expected = [stats.pearsonr(x, y)[0] for x, y in zip(a, b)]
    np.testing.assert_allclose(rowwise_pearson(a, b), expected, rtol=1e-12)


def test_pearson_of_constant_row_is_undefined():
    assert np.isnan(rowwise_pearson(np.zeros((1, 5)), np.arange(5.0)[None])[0])


def test_oracle_is_perfect(rng):
    obs = rng.normal(size=(20, 100))
    assert np.all(rank_metric(obs, obs) == 0.0)
    np.testing.assert_allclose(rowwise_pearson(obs, obs), 1.0)


def test_scaled_oracle_is_perfect(rng):
    obs = rng.normal(size=(10, 40))
    assert np.all(rank_metric(3.0 * obs, obs) == 0.0)


def test_constant_predictor_scores_exactly_one_half(rng):
    obs = rng.normal(size=(25, 60))
    const = np.tile(rng.normal(size=60), (25, 1))
    assert np.all(rank_metric(const, obs) == 0.5)
    assert np.all(rank_metric(np.zeros_like(obs), obs) == 0.5)


def test_anti_oracle_is_worst(rng):
    obs = rng.normal(size=(12, 300))
    assert np.all(rank_metric(-obs, obs) == 1.0)


def test_rank_matches_brute_force_with_ties(rng):
    pred = rng.normal(size=(15, 20))
    pred[3] = pred[7]  # duplicated predictions tie
    pred[9] = 0.0  # a zero prediction
    obs = pred + rng.normal(scale=2.0, size=pred.shape)
    np.testing.assert_allclose(rank_metric(pred, obs), _brute_force_rank(pred, obs), atol=1e-12)


def test_rank_hand_computed():
    obs = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    pred = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.9]])
    # p0: cos to preds = [0, 0, 0.74] -> own 0 ties with pred1, pred2 above -> (1 + 0.5) / 2
    # p1: cos = [1, 1, 0.67] -> own ties pred0 -> 0.5 / 2
    # p2: cos = [0.71, 0.71, 0.9996] -> own best -> 0
    np.testing.assert_allclose(rank_metric(pred, obs), [0.75, 0.25, 0.0])


def _frames(rng, n=8, g=60):
    genes = [f"g{i}" for i in range(g)]
    obs = pd.DataFrame(rng.normal(size=(n, g)), index=[f"p{i}" for i in range(n)], columns=genes)
    de = {p: list(rng.choice(genes, size=20, replace=False)) for p in obs.index}
    return obs, rng.normal(size=g), de


def _weights(obs: pd.DataFrame, rng) -> pd.DataFrame:
    """Miller-like weights: in [0, 1], most near 0, columns shuffled against `obs`."""
    w = rng.uniform(size=obs.shape) ** 4
    return pd.DataFrame(w, index=obs.index, columns=obs.columns).iloc[::-1, ::-1]


def test_oracle_is_perfect_on_every_metric(rng):
    obs, control, de = _frames(rng)
    reference = obs.mean(axis=0).to_numpy()
    wide = response_metrics(obs.copy(), obs, control, de, reference=reference, weights=_weights(obs, rng)).pivot(
        index="perturbation", columns="metric", values="value")
    assert set(wide.columns) == set(METRICS)
    best = {m: (1.0 if HIGHER_IS_BETTER[m] else 0.0) for m in METRICS}
    for metric, value in best.items():
        np.testing.assert_allclose(wide[metric], value, atol=1e-12, err_msg=metric)


def test_metrics_against_literal_definitions(rng):
    obs, control, de = _frames(rng)
    pred = obs + rng.normal(scale=0.7, size=obs.shape)
    reference = control + rng.normal(scale=0.3, size=control.shape)
    from sklearn.metrics import r2_score

    weights = _weights(obs, rng)
    wide = response_metrics(pred, obs, control, de, reference=reference, weights=weights).pivot(
        index="perturbation", columns="metric", values="value")
    for p in obs.index:
        w = weights.loc[p, obs.columns].to_numpy()
        o, q = obs.loc[p].to_numpy(), pred.loc[p].to_numpy()
        do, dq = o - control, q - control
        cols = [obs.columns.get_loc(g) for g in de[p]]
        expected = {
            "pearson": stats.pearsonr(q, o)[0],
            "pearson_delta": stats.pearsonr(dq, do)[0],
            "pearson_delta_centroid": stats.pearsonr(q - reference, o - reference)[0],
            "pearson_de": stats.pearsonr(q[cols], o[cols])[0],
            "pearson_de_delta": stats.pearsonr(dq[cols], do[cols])[0],
            "mse": np.mean((q - o) ** 2),
            "rmse": np.sqrt(np.mean((q - o) ** 2)),
            "mse_de": np.mean((q[cols] - o[cols]) ** 2),
            "rmse_de": np.sqrt(np.mean((q[cols] - o[cols]) ** 2)),
            "l2_delta": np.linalg.norm(dq - do),
            "cosine_delta": dq @ do / np.linalg.norm(dq) / np.linalg.norm(do),
            "direction_accuracy_de": np.mean(np.sign(dq[cols]) == np.sign(do[cols])),
            "de_overlap_at_k": len(set(np.argsort(-np.abs(dq))[:20]) & set(np.argsort(-np.abs(do))[:20])) / 20,
            "wmse": np.average((q - o) ** 2, weights=w),
            "weighted_r2_delta": r2_score(do, dq, sample_weight=w),
        }
        for metric, value in expected.items():
            assert wide.loc[p, metric] == pytest.approx(value, rel=1e-10, abs=1e-12), (p, metric)
    np.testing.assert_allclose(wide.loc[obs.index, "rank_raw"], _brute_force_rank(pred.to_numpy(), obs.to_numpy()))


def test_missing_de_genes_give_nan_not_a_guess(rng):
    obs, control, de = _frames(rng)
    de.pop("p0")
    wide = response_metrics(obs.copy(), obs, control, de).pivot(index="perturbation", columns="metric", values="value")
    assert wide.loc["p0", list(DE_METRICS)].isna().all()
    assert wide.loc["p1", list(DE_METRICS)].notna().all()
    no_de = response_metrics(obs.copy(), obs, control)
    assert set(no_de["metric"]) == set(METRICS) - set(DE_METRICS) - set(WEIGHTED) - {"pearson_delta_centroid"}


def test_de_metrics_use_the_de_genes_a_perturbation_has(rng):
    """Fewer than k DE genes: errors and signs over those genes; correlations need three."""
    obs, control, de = _frames(rng)
    pred = obs + rng.normal(scale=0.7, size=obs.shape)
    de["p1"], de["p2"] = de["p1"][:5], de["p2"][:2]
    wide = response_metrics(pred, obs, control, de, metrics=DE_METRICS).pivot(
        index="perturbation", columns="metric", values="value")
    for p in ("p1", "p2"):
        cols = [obs.columns.get_loc(g) for g in de[p]]
        o, q = obs.loc[p].to_numpy()[cols], pred.loc[p].to_numpy()[cols]
        assert wide.loc[p, "mse_de"] == pytest.approx(np.mean((q - o) ** 2), rel=1e-12)
        assert wide.loc[p, "direction_accuracy_de"] == pytest.approx(
            np.mean(np.sign(q - control[cols]) == np.sign(o - control[cols])))
    assert wide.loc["p1", "pearson_de"] == pytest.approx(stats.pearsonr(
        pred.loc["p1", de["p1"]], obs.loc["p1", de["p1"]])[0], rel=1e-10)
    assert np.isnan(wide.loc["p2", ["pearson_de", "pearson_de_delta"]].astype(float)).all()


def test_weighted_metrics_need_weights_for_every_prediction(rng):
    obs, control, _ = _frames(rng)
    with pytest.raises(ValueError, match="weights must cover"):
        response_metrics(obs.copy(), obs, control, weights=_weights(obs, rng).iloc[1:], metrics=["wmse"])


def test_centroid_delta_scores_the_centroid_zero(rng):
    """A prediction equal to the reference up to a constant carries no perturbation-specific
    signal: 0, not NaN; a constant observation is still undefined."""
    obs, control, _ = _frames(rng)
    reference = obs.mean(axis=0).to_numpy()
    pred = pd.DataFrame(np.tile(reference + 0.3, (len(obs), 1)), index=obs.index, columns=obs.columns)
    obs.iloc[0] = reference + 1.0
    out = response_metrics(pred, obs, control, metrics=["pearson_delta_centroid"], reference=reference)["value"]
    assert np.isnan(out.iloc[0]) and (out.iloc[1:] == 0).all()


def test_response_metrics_rejects_misaligned_inputs(rng):
    obs, control, _ = _frames(rng)
    with pytest.raises(ValueError, match="same perturbations"):
        response_metrics(obs.iloc[::-1], obs, control)
