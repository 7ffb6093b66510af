"""Tasks: each split keeps its promise (invariants), skips what a dataset cannot support, and its floors
behave (a constant predictor ranks 0.5; additive beats mean on combinations whose singles were seen)."""

import numpy as np
import pandas as pd
import pytest
from pertprobe.data.dataset import DatasetSpec, split_targets
from pertprobe.data.preprocess import PreprocessConfig, load_counts, preprocess
from pertprobe.data.simulate import simulate
from pertprobe.data.splits import SplitKey, split_sets
from pertprobe.data.tasks import (COMBINATION, UNSEEN_PERTURBATION, TaskConfig, TaskNotApplicable, combination,
                                  make_splits, seen_singles)
from pertprobe.errors import InputError
from pertprobe.registry import names
from pertprobe.response.metrics import response_metrics
from pertprobe.response.predictors import predict

from ...conftest import small_config

SINGLES = [f"G{i}" for i in range(12)]
DOUBLES = ["G0+G1", "G2+G3", "G4+G5", "G0+G6", "G7+G8", "G9+G10", "G1+G11", "G3+G5", "G8+G20"]  # G20: never alone


def _per_split(splits):
    for (seed, fold), rows in splits.groupby(["seed", "fold"]):
        yield seed, fold, {s: set(rows.loc[rows["split"] == s, "perturbation"]) for s in ("train", "test", "excluded")}


@pytest.mark.parametrize("unseen", [0.0, 0.25])
def test_combination_split_invariants(unseen):
    config = TaskConfig(n_folds=3, seeds=(0, 1), combination_unseen_singles=unseen)
    splits = combination(SINGLES + DOUBLES, config)
    assert set(splits.columns) == {"seed", "fold", "perturbation", "split"}
    for seed, per_seed in splits.groupby("seed"):
        tested = per_seed.loc[per_seed["split"] == "test", "perturbation"]
        assert sorted(tested) == sorted(DOUBLES)  # every combination tested exactly once per seed
        assert not set(tested) & set(SINGLES)  # singles are never the test set
    for _, _, sets in _per_split(splits):
        assert not sets["train"] & sets["test"] and not sets["train"] & sets["excluded"]
        assert sets["train"] | sets["test"] | sets["excluded"] == set(SINGLES + DOUBLES)
        held_out_singles = sets["excluded"] & set(SINGLES)
        assert len(held_out_singles) == round(unseen * len(SINGLES))
        for double in sets["train"] - set(SINGLES):  # a training double never reveals a held-out single
            assert not set(split_targets(double)) & held_out_singles
        assert sets["train"] >= set(SINGLES) - held_out_singles  # every other single trains
    pd.testing.assert_frame_equal(splits, combination(SINGLES + DOUBLES, config))  # deterministic


def test_seen_categories_count_the_trained_singles():
    config = TaskConfig(n_folds=3, seeds=(0,), combination_unseen_singles=0.25)
    splits, status = make_splits(SINGLES + DOUBLES, [COMBINATION], config)
    seen = seen_singles(splits)
    assert status == {COMBINATION: "3 splits"}
    assert len(seen) == len(DOUBLES)
    for _, row in seen.iterrows():
        fold = int(row["split"].removeprefix("fold"))
        train, _ = split_sets(splits, SplitKey(COMBINATION, int(row["seed"]), fold))
        expected = sum(s in train for s in split_targets(row["perturbation"]))
        assert row["seen"] == f"{expected}/2"
    assert seen.set_index("perturbation").loc["G8+G20", "seen"] in ("0/2", "1/2")  # G20 was never screened alone
    assert {"2/2", "1/2"} <= set(seen["seen"])  # held-out singles make the other categories exist
    no_holdout = seen_singles(make_splits(SINGLES + DOUBLES, [COMBINATION], TaskConfig(n_folds=3))[0])
    assert set(no_holdout.loc[no_holdout["perturbation"] != "G8+G20", "seen"]) == {"2/2"}


def test_a_task_the_dataset_cannot_support_is_skipped_with_its_reason():
    with pytest.raises(TaskNotApplicable, match="2 combination"):
        combination(SINGLES + DOUBLES[:2], TaskConfig(n_folds=3))
    splits, status = make_splits(SINGLES + DOUBLES[:2], names("task"), TaskConfig(n_folds=3))
    assert set(splits["task"]) == {UNSEEN_PERTURBATION}
    assert status[COMBINATION].startswith("skipped: 2 combination") and status[UNSEEN_PERTURBATION] == "3 splits"
    with pytest.raises(ValueError, match="no task of --tasks applies"):
        make_splits(SINGLES, [COMBINATION], TaskConfig(n_folds=3))


def test_split_sets_names_the_task_and_rejects_old_tables():
    splits, _ = make_splits(SINGLES + DOUBLES, names("task"), TaskConfig(n_folds=3))
    with pytest.raises(InputError, match="no split for combination seed 4 fold 0"):
        split_sets(splits, SplitKey(COMBINATION, 4, 0), "d.splits.csv")
    with pytest.raises(InputError, match="field 'task'.*re-run PREPROCESS"):
        split_sets(splits.drop(columns="task"), SplitKey(UNSEEN_PERTURBATION, 0, 0), "d.splits.csv")
    key = SplitKey(COMBINATION, 1, 2)
    assert SplitKey.from_labels(key.labels) == key and key.stem == "combination.seed1.fold2"


@pytest.fixture(scope="module")
def doubles_screen(tmp_path_factory):
    """A simulated screen with many combinations of seen singles (half with an interaction term)."""
    path = tmp_path_factory.mktemp("tasks") / "screen.h5ad"
    simulate(small_config(seed=5, n_single=16, n_double=16, cells_per_perturbation=60)).to_anndata().write_h5ad(path)
    spec = DatasetSpec(batch_col="batch")
    config = PreprocessConfig(min_genes_per_cell=20, n_hvg=150, n_folds=4, seeds=(0, 1))
    return preprocess(load_counts(path, spec), spec, config)


def _scores(result, task, models, metric):
    pb, out = result.pseudobulk, []
    for (seed, fold), _ in result.splits[result.splits["task"] == task].groupby(["seed", "fold"]):
        train, test = split_sets(result.splits, SplitKey(task, int(seed), int(fold)))
        for model in models:
            pred, _ = predict(model, pb, train, test, seed=int(seed))
            table = response_metrics(pred, pb.means.loc[test], pb.control, None, metrics=[metric])
            out.append(table.assign(model=model, seed=seed, fold=fold))
    return pd.concat(out, ignore_index=True)


def test_combination_task_floors_behave(doubles_screen):
    assert doubles_screen.summary["tasks"][COMBINATION] == "8 splits"
    scores = _scores(doubles_screen, COMBINATION, ["additive", "mean", "no_change"], "pearson_delta")
    assert set(scores["perturbation"]) == {p for p in doubles_screen.pseudobulk.perturbations if "+" in p}
    per_model = scores.groupby("model")["value"].mean()
    assert per_model["additive"] > per_model["mean"] + 0.1  # the sum of seen singles carries the response
    ranks = _scores(doubles_screen, COMBINATION, ["mean", "additive"], "rank_delta")
    np.testing.assert_allclose(ranks.loc[ranks["model"] == "mean", "value"], 0.5)  # constant: exactly random
    assert ranks.loc[ranks["model"] == "additive", "value"].mean() < 0.3
