"""The spine's acceptance checks on the bundled simulated CRISPRi screen (known ground truth)."""

import numpy as np
import pandas as pd
import pytest
from pertprobe.data.dataset import DatasetSpec
from pertprobe.data.preprocess import PreprocessConfig, load_counts, preprocess
from pertprobe.response.metrics import response_metrics
from pertprobe.response.predictors import predict

from ...conftest import TEST_DATA


@pytest.fixture(scope="module")
def scores():
    spec = DatasetSpec(batch_col="batch")
    config = PreprocessConfig(n_hvg=300, n_folds=4, seeds=(0, 1))
    result = preprocess(load_counts(TEST_DATA / "sim_crispri.h5ad", spec), spec, config)
    pb = result.pseudobulk
    frames = []
    for (seed, fold), rows in result.splits[result.splits["task"] == "unseen_perturbation"].groupby(["seed", "fold"]):
        train = rows.loc[rows["split"] == "train", "perturbation"].tolist()
        test = rows.loc[rows["split"] == "test", "perturbation"].tolist()
        observed = pb.means.loc[test]
        preds = {name: predict(name, pb, train, test)[0] for name in ("no_change", "mean", "crispr_informed_mean")}
        preds["oracle"] = observed.copy()  # the observed test pseudobulk itself
        for name, pred in preds.items():
            table = response_metrics(pred, observed, pb.control)
            frames.append(table.assign(model=name, seed=seed, fold=fold))
    return pd.concat(frames, ignore_index=True)


def _mean(scores, model, metric):
    return scores[(scores["model"] == model) & (scores["metric"] == metric)]["value"].mean()


def test_oracle_scores_perfectly(scores):
    oracle = scores[scores["model"] == "oracle"]
    np.testing.assert_allclose(oracle[oracle["metric"] == "pearson_delta"]["value"], 1.0, atol=1e-12)
    assert (oracle[oracle["metric"] == "rank_delta"]["value"] == 0.0).all()


def test_constant_predictors_score_random_rank(scores):
    for model in ("mean", "no_change"):
        values = scores[(scores["model"] == model) & (scores["metric"] == "rank_delta")]["value"]
        assert (values == 0.5).all(), model


def test_crispr_informed_mean_beats_mean_on_rank_for_crispri(scores):
    informed, mean = _mean(scores, "crispr_informed_mean", "rank_delta"), _mean(scores, "mean", "rank_delta")
    assert informed < mean - 0.2
    per_split = (scores[scores["metric"] == "rank_delta"].groupby(["model", "seed", "fold"])["value"].mean()
                 .unstack("model"))
    assert (per_split["crispr_informed_mean"] < per_split["mean"]).all()


def test_mean_beats_no_change_on_pearson_delta(scores):
    """no_change predicts Δ = 0, so its Pearson delta is undefined; the mean's is positive."""
    assert scores[(scores["model"] == "no_change") & (scores["metric"] == "pearson_delta")]["value"].isna().all()
    assert _mean(scores, "mean", "pearson_delta") > 0.3
