"""The response-prediction benchmark on the simulator (known effects): the checks of issue 3."""

import numpy as np
import pandas as pd
import pytest
from pertprobe.data.dataset import DatasetSpec
from pertprobe.data.de import de_gene_sets, de_weights
from pertprobe.data.preprocess import PreprocessConfig, load_counts, preprocess
from pertprobe.registry import entries
from pertprobe.response.bounds import noise_ceiling
from pertprobe.response.de_agreement import ObservedDE
from pertprobe.response.gene_embeddings import data_pca, random_embedding
from pertprobe.response.metrics import response_metrics
from pertprobe.response.predictors import predict
from pertprobe.response.statistics import paired_comparisons
from pertprobe.response.training import TrainingData, centroid

from ...conftest import TEST_DATA

FAST = [e for e in entries("predictor") if not e.gpu]  # the torch models have their own tests
DE_METRICS = {e.name for e in entries("metric") if "de_genes" in e.needs}
AGREEMENT = {e.name for e in entries("metric") if "observed_de" in e.needs}


@pytest.fixture(scope="module")
def run():
    spec = DatasetSpec(batch_col="batch")
    result = preprocess(load_counts(TEST_DATA / "sim_crispri.h5ad", spec), spec,
                        PreprocessConfig(n_hvg=300, n_folds=3, seeds=(0, 1)))
    pb, de, weights = result.pseudobulk, de_gene_sets(result.de), de_weights(result.de)
    observed_de = ObservedDE.from_table(result.de, pb.targets, alpha=0.05, pseudocount=1.0)
    scored = {"reference": None, "weights": weights, "observed_de": observed_de}
    frames = []
    for (seed, fold), rows in result.splits[result.splits["task"] == "unseen_perturbation"].groupby(["seed", "fold"]):
        train = rows.loc[rows["split"] == "train", "perturbation"].tolist()
        test = rows.loc[rows["split"] == "test", "perturbation"].tolist()
        observed = pb.means.loc[test]
        reference = centroid(pb, train)
        embeddings = {"data_pca": data_pca(pb.means.loc[train], pb.targets, 10, seed),
                      "random": random_embedding(pb.genes, 10, seed)}
        runs = [(p.name, "none", None) for p in FAST if not p.needs_embedding]
        runs += [(p.name, e, embeddings[e]) for p in FAST if p.needs_embedding for e in embeddings]
        for name, emb_name, emb in runs:
            pred, _ = predict(name, pb, train, test, embedding=emb, by_batch=result.pseudobulk_by_batch, seed=seed)
            frames.append(response_metrics(pred, observed, pb.control, de, **(scored | {"reference": reference}))
                          .assign(model=name, embedding=emb_name))
        frames.append(response_metrics(observed.copy(), observed, pb.control, de, **(scored | {"reference": reference}))
                      .assign(model="oracle", embedding="none"))
        frames.append(noise_ceiling(result.adata.X, result.adata.obs["perturbation"].to_numpy(), pb.genes, test,
                                    pb.control, de, n_draws=3, seed=seed, **(scored | {"reference": reference}))
                      .assign(embedding="none"))
        for frame in frames[-(len(runs) + 2):]:
            frame["seed"], frame["split"] = seed, f"fold{fold}"
    metrics = pd.concat(frames, ignore_index=True).assign(dataset="sim", task="unseen_perturbation")
    return metrics, result


def _score(metrics, model, metric, embedding="none"):
    sel = metrics[(metrics["model"] == model) & (metrics["metric"] == metric) & (metrics["embedding"] == embedding)]
    return sel.groupby(["seed", "split"])["value"].mean().mean()


def test_oracle_is_perfect_on_every_metric(run):
    from pertprobe.response.metrics import directions

    metrics, result = run
    oracle = metrics[metrics["model"] == "oracle"]
    n_de = result.de_counts["n_de_genes"]
    assert (n_de < 20).any()  # some perturbations of the bundled data have fewer significant genes
    for metric, rows in oracle.groupby("metric"):
        values = rows["value"].to_numpy()
        if metric == "mse_noise_corrected":  # the observation itself has none of the noise it subtracts
            assert (values < 0).all()
            continue
        if metric in AGREEMENT:  # undefined without (enough) significant genes besides the target
            assert np.isfinite(values).mean() > 0.5, metric
            np.testing.assert_allclose(values[np.isfinite(values)], 1.0 if directions()[metric] else 0.0, atol=1e-12)
            continue
        needed = {"pearson_de": 3, "pearson_de_delta": 3}.get(metric, 1) if metric in DE_METRICS else 0
        undefined = (n_de.loc[rows["perturbation"]] < needed).to_numpy()
        assert np.isnan(values[undefined]).all() and not np.isnan(values[~undefined]).any(), metric
        np.testing.assert_allclose(values[~undefined], 1.0 if directions()[metric] else 0.0, atol=1e-12,
                                   err_msg=metric)


@pytest.mark.parametrize("model", ["no_change", "mean", "mean_of_means"])
def test_constant_predictors_rank_exactly_one_half(run, model):
    metrics, _ = run
    for metric in ("rank_delta", "rank_raw"):
        values = metrics[(metrics["model"] == model) & (metrics["metric"] == metric)]["value"]
        assert len(values) and (values == 0.5).all(), (model, metric)


def test_crispr_informed_mean_beats_mean_on_rank(run):
    metrics, _ = run
    assert _score(metrics, "crispr_informed_mean", "rank_delta") < _score(metrics, "mean", "rank_delta") - 0.2


def test_linear_model_with_data_embedding_beats_mean_on_pearson_delta(run):
    """Effects are structured by gene programs, so the data-derived embedding carries signal."""
    metrics, _ = run
    stats = paired_comparisons(metrics.query("model in ['linear', 'mean']"), n_bootstrap=500)
    row = stats[(stats["metric"] == "pearson_delta") & (stats["predictor_a"] == "linear/data_pca")
                & (stats["predictor_b"] == "mean")].iloc[0]
    assert row["mean_difference"] > 0.02 and row["ci_low"] > 0


@pytest.mark.parametrize("model", ["linear", "knn", "ridge"])
def test_random_embeddings_do_no_better_than_the_mean(run, model):
    metrics, _ = run
    assert _score(metrics, model, "pearson_delta", "random") < _score(metrics, "mean", "pearson_delta") + 0.02
    assert _score(metrics, model, "pearson_delta", "random") < _score(metrics, model, "pearson_delta", "data_pca")


def test_no_floor_beats_the_ceiling(run):
    """On every metric, in its direction, on average over splits."""
    from pertprobe.response.metrics import directions
    from pertprobe.response.predictors import floors

    metrics, _ = run
    for metric, higher in directions().items():
        ceiling = _score(metrics, "ceiling", metric)
        for model in floors():
            for embedding in metrics.loc[metrics["model"] == model, "embedding"].unique():
                floor = _score(metrics, model, metric, embedding)
                if np.isnan(floor):  # e.g. a correlation with the zero Δ of no_change
                    continue
                assert (floor < ceiling) if higher else (floor > ceiling), (metric, model, embedding, floor, ceiling)


def test_ceiling_is_above_every_predictor_on_the_delta_correlations(run):
    metrics, _ = run
    predictors = metrics[~metrics["model"].isin(["ceiling", "split_half", "oracle"])]
    per_model = predictors.groupby(["model", "embedding", "metric"])["value"].mean().unstack("metric")
    for metric in ("pearson_delta", "pearson_de_delta", "cosine_delta"):
        assert _score(metrics, "ceiling", metric) > per_model[metric].max(), metric


def test_shortcut_probes_are_strong_only_where_their_signal_is(run):
    """target_only carries the perturbed gene's own knockdown: near-perfect identification on the
    rank metric and as much Pearson Δ as the mean (the target dominates Δ), but nothing on the
    downstream DE genes; metadata_only carries no perturbation identity; nearest_training is only
    as good as its embedding."""
    metrics, _ = run
    assert _score(metrics, "target_only", "rank_delta") < 0.15
    assert _score(metrics, "target_only", "pearson_delta") > _score(metrics, "mean", "pearson_delta") - 0.05
    for metric in ("direction_accuracy_de", "de_overlap_at_k"):
        assert _score(metrics, "target_only", metric) < _score(metrics, "mean", metric) - 0.1, metric
    assert abs(_score(metrics, "metadata_only", "rank_delta") - 0.5) < 0.15
    assert _score(metrics, "metadata_only", "pearson_delta") < _score(metrics, "mean", "pearson_delta") + 0.05
    assert (_score(metrics, "nearest_training", "rank_delta", "data_pca")
            < _score(metrics, "nearest_training", "rank_delta", "random") - 0.05)


def test_target_only_fits_the_knockdown_of_the_simulator(run):
    """The simulator multiplies each target's expression by 0.15 (CRISPRi)."""
    _, result = run
    pb = result.pseudobulk
    train = pb.perturbations[: len(pb.perturbations) // 2]
    _, info = predict("target_only", pb, train, pb.perturbations[len(train):])
    assert 0.05 < info["target_fold_change"] < 0.35 and info["n_training_targets"] >= 10


def test_centroid_delta_gives_the_shared_shift_no_credit(run):
    """Systema: against control, the mean (the shift every perturbation shares) gets a sizeable
    Pearson Δ; against the perturbed centroid it scores exactly 0, and so does the unweighted mean
    of means up to noise, while a predictor with perturbation-specific signal keeps a positive score."""
    metrics, _ = run
    assert _score(metrics, "mean", "pearson_delta") > 0.2
    mean = metrics[(metrics["model"] == "mean") & (metrics["metric"] == "pearson_delta_centroid")]["value"]
    assert len(mean) and (mean == 0).all()
    assert abs(_score(metrics, "mean_of_means", "pearson_delta_centroid")) < 0.1
    assert _score(metrics, "linear", "pearson_delta_centroid", "data_pca") > 0.2
    assert _score(metrics, "linear", "pearson_delta_centroid", "random") < 0.1


def test_additive_beats_mean_on_combinations_whose_singles_were_trained(run):
    metrics, result = run
    combos = [p for p in result.pseudobulk.perturbations if "+" in p]
    sel = metrics[metrics["perturbation"].isin(combos) & (metrics["metric"] == "pearson_delta")]
    additive = sel[sel["model"] == "additive"].set_index(["seed", "split", "perturbation"])["value"]
    mean = sel[sel["model"] == "mean"].set_index(["seed", "split", "perturbation"])["value"]
    splits = result.splits[result.splits["task"] == "unseen_perturbation"]
    trained = []
    for (seed, split, pert) in additive.index:
        rows = splits[(splits["seed"] == seed) & (splits["fold"] == int(split.removeprefix("fold")))]
        train = set(rows.loc[rows["split"] == "train", "perturbation"])
        trained.append(all(s in train for s in pert.split("+")))
    trained = np.array(trained)
    assert trained.sum() >= 3
    assert (additive[trained] - mean[trained]).mean() > 0.05
    np.testing.assert_allclose(additive[~trained], mean[~trained])  # fallback is the mean


def test_embedding_fallback_is_counted():
    genes = pd.Index([f"g{i}" for i in range(30)])
    rng = np.random.default_rng(0)
    from pertprobe.data.pseudobulk import Pseudobulk

    perts = ["g1", "g2", "g3", "g4", "g5", "g6", "NOPE"]
    means = pd.DataFrame(rng.normal(size=(8, 30)), index=perts + ["control"], columns=genes)
    pb = Pseudobulk(means, pd.Series(10, index=means.index), {p: [p] if p in genes else [] for p in perts},
                    "control", "CRISPRi")
    emb = random_embedding(genes[:20], 4, 0)
    pred, info = predict("ridge", pb, ["g1", "g2", "g3", "g4", "g5"], ["g6", "NOPE"], embedding=emb)
    assert info["n_fallback"] == 1 and info["fallback"] == ["NOPE"]
    mean_pred, _ = predict("mean", pb, ["g1", "g2", "g3", "g4", "g5"], ["NOPE"])
    np.testing.assert_allclose(pred.loc["NOPE"], mean_pred.loc["NOPE"])
    assert "alpha" in info["hyperparameters"]


def test_linear_model_solves_its_ridge_problem():
    """K from the closed form satisfies the two-sided ridge normal equations."""
    from pertprobe.response.predictors import _linear_fit_predict

    rng = np.random.default_rng(1)
    genes = pd.Index([f"g{i}" for i in range(40)])
    means = pd.DataFrame(rng.normal(size=(12, 40)), index=[f"p{i}" for i in range(12)], columns=genes)
    train = TrainingData(means, pd.Series(5, index=means.index), np.zeros(40), {}, "CRISPRi")
    P = rng.normal(size=(12, 6))
    lam = 0.3
    pred, info = _linear_fit_predict(train, list(means.index), P, means.to_numpy(), P, 0, n_components=5, ridge=lam)
    G = data_pca(means, {}, 5, 0).to_numpy()
    Y = means.to_numpy().T
    b = Y.mean(axis=1, keepdims=True)
    # recover K from predictions on the training embeddings: pred.T - b = G K P^T
    K = np.linalg.lstsq(G, np.linalg.lstsq(P, (pred.T - b).T, rcond=None)[0].T, rcond=None)[0]
    # the two-sided ridge normal equations: (G'G + λI) K (P'P + λI) = G'(Y − b)P
    lhs = (G.T @ G + lam * np.eye(5)) @ K @ (P.T @ P + lam * np.eye(6))
    np.testing.assert_allclose(lhs, G.T @ (Y - b) @ P, atol=1e-8)
    assert info == {"n_components": 5, "ridge": lam}
