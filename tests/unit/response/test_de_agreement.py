"""The Virtual Cell Challenge 2026 DE-agreement metrics: their definitions on cases with a known
answer, cell-eval2's functions on the same DE tables, and the pseudobulk calls of a prediction."""

import numpy as np
import pandas as pd
import pytest
from pertprobe.data.de import bh_adjust
from pertprobe.response.de_agreement import (
    DECalls,
    ObservedDE,
    direction_fidelity,
    direction_reach,
    lfc_nmae,
    sig_jaccard,
)
from pertprobe.response.metrics import response_metrics


def _calls(lfc, p_adj, alpha=0.05):
    lfc, p_adj = np.atleast_2d(np.asarray(lfc, float)), np.atleast_2d(np.asarray(p_adj, float))
    return DECalls(lfc, p_adj / 2, p_adj, p_adj < alpha)


def test_definitions_on_hand_made_tables():
    #            g0    g1    g2    g3    g4    g5 (g5 is the perturbation's own target)
    real = _calls([1.0, -1.0, 2.0, 0.5, 0.1, -3.0], [0.01, 0.01, 0.01, 0.2, 0.9, 0.001])
    pred = _calls([0.5, 1.0, 1.0, 0.2, -1.0, -3.0], [0.01, 0.02, 0.3, 0.01, 0.9, 0.001])
    own = np.array([[False] * 5 + [True]])
    # R = {g0, g1, g2}, P = {g0, g1, g3}: 2 shared of 4
    assert sig_jaccard(real, pred, own)[0] == pytest.approx(2 / 4)
    # predicted significant with a defined observed sign: g0 (agrees), g1 (disagrees), g3 (agrees)
    assert direction_fidelity(real, pred, own)[0] == pytest.approx(2 / max(3, 3))
    # R ordered by the prediction: g0 (sig, p_adj .01, agrees), g1 (sig, .02, wrong), g2 (.3, agrees):
    # purity 1, 1/2, 2/3 -> only depth 1 reaches 0.9
    assert direction_reach(real, pred, own, np.arange(6))[0] == pytest.approx(1 / 3)
    # nMAE needs 10 genes; with the gate lowered: (|.5-1| + |1+1| + |1-2|) / (1 + 1 + 2)
    assert np.isnan(lfc_nmae(real, pred, own)[0])
    assert lfc_nmae(real, pred, own, min_genes=3)[0] == pytest.approx(3.5 / 4)
    # counting the own target would have added a guaranteed hit everywhere
    none = np.zeros_like(own)
    assert sig_jaccard(real, pred, none)[0] == pytest.approx(3 / 5)


def test_edge_cases_follow_cell_eval2():
    nothing = _calls([0.0] * 4, [1.0] * 4)
    real = _calls([1.0, 1.0, -1.0, 0.0], [0.01, 0.01, 0.01, 0.5])
    own = np.zeros((1, 4), bool)
    assert sig_jaccard(nothing, nothing, own)[0] == 1.0  # both empty: they agree there is no response
    assert np.isnan(direction_fidelity(nothing, nothing, own)[0])
    assert direction_fidelity(real, nothing, own)[0] == 0.0
    assert np.isnan(direction_reach(nothing, real, own, np.arange(4))[0])
    zero = _calls([0.0] * 4, [1.0] * 4)
    assert lfc_nmae(real, zero, own, min_genes=1)[0] == pytest.approx(1.0)  # no change scores exactly 1


def _random_tables(rng, n_perts=12, n_genes=80):
    perts = [f"P{i}" for i in range(n_perts)]
    genes = [f"G{i:03d}" for i in range(n_genes)]
    signal = rng.normal(size=(n_perts, n_genes)) * (rng.uniform(size=(n_perts, n_genes)) < 0.3) * 2
    real_lfc = signal + rng.normal(scale=0.3, size=signal.shape)
    pred_lfc = 0.6 * signal + rng.normal(scale=0.5, size=signal.shape)

    def p_values(lfc):
        z = np.abs(lfc) / 0.3
        from scipy import stats

        return 2 * stats.norm.sf(z)

    real_p, pred_p = p_values(real_lfc), p_values(pred_lfc)
    tested = np.ones(signal.shape, bool)
    real = DECalls(real_lfc, real_p, bh_adjust(real_p, tested), None)
    pred = DECalls(pred_lfc, pred_p, bh_adjust(pred_p, tested), None)
    real, pred = (c._replace(significant=c.p_adj < 0.05) for c in (real, pred))
    own = np.zeros(signal.shape, bool)
    own[np.arange(n_perts), np.arange(n_perts)] = True  # P_i targets G_i
    targets = {p: genes[i] for i, p in enumerate(perts)}
    return perts, genes, real, pred, own, targets


def _frame(perts, genes, calls):
    import polars as pl

    return pl.DataFrame({"target": np.repeat(perts, len(genes)), "feature": np.tile(genes, len(perts)),
                         "log2_fold_change": calls.lfc.ravel(), "p_value": calls.p.ravel(),
                         "p_adj": calls.p_adj.ravel()})


def test_equal_to_cell_eval2_on_the_same_de_tables():
    """cell-eval2 0.20's vcc2026 DE members, given the same two DE tables (the own target
    resolved by name, as in the competition), return the same per-perturbation values."""
    from cell_eval2.de import TargetResolution, prepare_de
    from cell_eval2.metrics import de as ce_de
    from cell_eval2.metrics import direction as ce_dir

    rng = np.random.default_rng(0)
    perts, genes, real, pred, own, targets = _random_tables(rng)
    # perturbation labels are not gene names here, so the own target is resolved explicitly
    resolution = TargetResolution(mapping=targets, n_targets=len(perts), n_features=len(genes))
    prepared = prepare_de(_frame(perts, genes, pred), _frame(perts, genes, real), control="control",
                          target_resolution=resolution)
    ours = {
        "jaccard": sig_jaccard(real, pred, own),
        "fidelity": direction_fidelity(real, pred, own),
        "reach": direction_reach(real, pred, own, np.arange(len(genes))),
        "nmae": lfc_nmae(real, pred, own),
    }
    theirs = {
        "jaccard": ce_de.de_sig_jaccard(prepared),
        "fidelity": ce_dir.de_direction_fidelity_yield_raw(prepared),
        "reach": ce_dir.de_direction_reach(prepared, universe="adjudicated", corrected=False),
        "nmae": ce_de.de_lfc_nmae(prepared),
    }
    for name, values in ours.items():
        expected = np.array([theirs[name].get(p, np.nan) for p in perts], dtype=float)
        assert np.isfinite(values).sum() >= 8, name
        np.testing.assert_allclose(values, expected, rtol=1e-12, atol=1e-12, err_msg=name)


def _observed(rng, n_perts=6, n_genes=40, alpha=0.05):
    """A DE table in PREPROCESS's layout with a known spread, and the observed means it implies."""
    perts = [f"P{i}" for i in range(n_perts)]
    genes = [f"G{i:02d}" for i in range(n_genes)]
    control = rng.uniform(0.5, 2.0, size=n_genes)
    effect = rng.normal(size=(n_perts, n_genes)) * (rng.uniform(size=(n_perts, n_genes)) < 0.4)
    obs = control + effect
    se = np.full((n_perts, n_genes), 0.1)
    from scipy import stats

    t = (obs - control) / se
    p = 2 * stats.t.sf(np.abs(t), 50.0)
    tested = np.ones((n_perts, n_genes), bool)
    lfc = np.log2((np.expm1(obs) + 1) / (np.expm1(control) + 1))
    long = pd.DataFrame({"perturbation": np.repeat(perts, n_genes), "gene": np.tile(genes, n_perts),
                         "pval": p.ravel(), "logfoldchange": lfc.ravel(),
                         "tested": tested.ravel(), "se": se.ravel(), "df": 50.0, "sampling_var": se.ravel() ** 2 / 2})
    observed = ObservedDE.from_table(long, {p: [genes[i]] for i, p in enumerate(perts)}, alpha, 1.0)
    return pd.DataFrame(obs, index=perts, columns=genes), control, observed


def test_the_truth_scores_perfectly_and_no_change_scores_as_defined():
    """A prediction equal to the observation makes exactly the observed calls; predicting the
    control calls nothing (Jaccard 0 where something is significant, nMAE 1)."""
    rng = np.random.default_rng(1)
    obs, control, observed = _observed(rng)
    names = ["de_sig_jaccard", "de_direction_fidelity", "de_direction_reach", "de_lfc_nmae"]
    exact = response_metrics(obs.copy(), obs, control, metrics=names, observed_de=observed).pivot(
        index="perturbation", columns="metric", values="value")
    np.testing.assert_allclose(exact[["de_sig_jaccard", "de_direction_fidelity", "de_direction_reach"]], 1.0)
    np.testing.assert_allclose(exact["de_lfc_nmae"], 0.0, atol=1e-12)
    flat = pd.DataFrame(np.tile(control, (len(obs), 1)), index=obs.index, columns=obs.columns)
    none = response_metrics(flat, obs, control, metrics=names, observed_de=observed).pivot(
        index="perturbation", columns="metric", values="value")
    assert (none["de_sig_jaccard"] == 0).all() and (none["de_direction_fidelity"] == 0).all()
    np.testing.assert_allclose(none["de_lfc_nmae"], 1.0)
    assert (none["de_direction_reach"] == 0).all()


def test_a_prediction_is_called_with_the_observed_spread():
    """Predicted calls: Welch t from the observed standard error and degrees of freedom, BH over
    the tested genes, the DE table's pseudocount."""
    from scipy import stats

    rng = np.random.default_rng(2)
    obs, control, observed = _observed(rng)
    pred = obs + rng.normal(scale=0.15, size=obs.shape)
    aligned = observed.align(obs.index, obs.columns)
    calls = aligned.predicted(pred.to_numpy(), control[None, :])
    p = 2 * stats.t.sf(np.abs((pred.to_numpy() - control) / 0.1), 50.0)
    np.testing.assert_allclose(calls.p, p, rtol=1e-10)
    np.testing.assert_allclose(calls.p_adj, bh_adjust(p, np.ones(p.shape, bool)), rtol=1e-10)
    np.testing.assert_allclose(calls.lfc, np.log2((np.expm1(pred.to_numpy()) + 1) / (np.expm1(control) + 1)))
    assert aligned.own[np.arange(6), np.arange(6)].all() and aligned.own.sum() == 6


def _experiment(rng, truth, control, n_cells=30, noise=0.4):
    """One simulated experiment: observed means of n cells around the truth, with their DE table."""
    from scipy import stats

    perts, genes = truth.index, truth.columns
    cells = truth.to_numpy()[:, None, :] + rng.normal(scale=noise, size=(len(perts), n_cells, truth.shape[1]))
    ctrl_cells = control + rng.normal(scale=noise, size=(200, truth.shape[1]))
    obs, ctrl = cells.mean(axis=1), ctrl_cells.mean(axis=0)
    sampling = cells.var(axis=1, ddof=1) / n_cells
    se = np.sqrt(sampling + ctrl_cells.var(axis=0, ddof=1) / 200)
    p = 2 * stats.norm.sf(np.abs(obs - ctrl) / se)
    long = pd.DataFrame({"perturbation": np.repeat(perts, len(genes)), "gene": np.tile(genes, len(perts)),
                         "pval": p.ravel(), "logfoldchange": (obs - ctrl).ravel(), "tested": True,
                         "se": se.ravel(), "df": 50.0, "sampling_var": sampling.ravel()})
    observed = ObservedDE.from_table(long, {q: [genes[i]] for i, q in enumerate(perts)}, 0.05, 1.0)
    return pd.DataFrame(obs, index=perts, columns=genes), ctrl, observed


def test_noise_corrected_mse_against_its_definition_and_its_expectation():
    """Literal N_p / mean D on one experiment; over many, the truth scores 0 on average (its noise
    is subtracted), the control about 1, and the observation itself below 0."""
    rng = np.random.default_rng(3)
    perts, genes = [f"P{i}" for i in range(8)], [f"G{i:02d}" for i in range(60)]
    control = rng.uniform(0.5, 2.0, size=60)
    truth = pd.DataFrame(control + rng.normal(scale=0.5, size=(8, 60)), index=perts, columns=genes)
    obs, ctrl, observed = _experiment(rng, truth, control)
    pred = truth + 0.1
    value = response_metrics(pred, obs, ctrl, metrics=["mse_noise_corrected"], observed_de=observed)["value"]
    de = observed.align(obs.index, obs.columns)
    keep = ~de.own
    n = (np.where(keep, (pred.to_numpy() - obs.to_numpy()) ** 2 - de.sampling_var, 0)).sum(1) / keep.sum(1)
    d = (np.where(keep, (obs.to_numpy() - ctrl) ** 2 - de.sampling_var - de.control_var, 0)).sum(1) / keep.sum(1)
    np.testing.assert_allclose(value, n / d.mean(), rtol=1e-12)
    runs = {"truth": [], "control": [], "itself": []}
    for _ in range(60):
        obs, ctrl, observed = _experiment(rng, truth, control)
        flat = pd.DataFrame(np.tile(ctrl, (8, 1)), index=perts, columns=genes)
        for name, p in (("truth", truth), ("control", flat), ("itself", obs)):
            runs[name].append(response_metrics(p, obs, ctrl, metrics=["mse_noise_corrected"],
                                               observed_de=observed)["value"].mean())
    assert abs(np.mean(runs["truth"])) < 0.01
    assert abs(np.mean(runs["control"]) - 1) < 0.05
    assert max(runs["itself"]) < 0
