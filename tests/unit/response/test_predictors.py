"""Baseline predictors against their definitions, and no test data reaching them."""

import numpy as np
import pandas as pd
import pytest
from pertprobe.data.pseudobulk import Pseudobulk, group_means
from pertprobe.response.predictors import TrainingData, predict


@pytest.fixture
def toy():
    """Cells with known values: means and cell-weighted means are easy to compute by hand."""
    rng = np.random.default_rng(1)
    genes = ["A", "B", "C", "D"]
    labels = np.array(["control"] * 6 + ["A"] * 2 + ["B"] * 4 + ["C+D"] * 3 + ["D"] * 5)
    X = rng.uniform(0.5, 3.0, size=(len(labels), 4))
    means, n = group_means(X, labels)
    means.columns = genes
    targets = {"A": ["A"], "B": ["B"], "C+D": ["C", "D"], "D": ["D"]}
    return X, labels, Pseudobulk(means, n, targets, "control", "CRISPRi")


def test_no_change_predicts_control(toy):
    _, _, pb = toy
    out = predict("no_change", pb, ["A", "B"], ["C+D", "D"])[0]
    np.testing.assert_allclose(out.to_numpy(), np.tile(pb.control, (2, 1)))


def test_mean_is_the_mean_of_perturbed_training_cells(toy):
    X, labels, pb = toy
    out = predict("mean", pb, ["A", "B", "D"], ["C+D"])[0]
    expected = X[np.isin(labels, ["A", "B", "D"])].mean(axis=0)  # cell-weighted, not mean of means
    np.testing.assert_allclose(out.loc["C+D"].to_numpy(), expected)
    assert not np.allclose(expected, pb.means.loc[["A", "B", "D"]].mean().to_numpy())


def test_crispr_informed_mean_crispri_and_combinations(toy):
    X, labels, pb = toy
    out = predict("crispr_informed_mean", pb, ["A", "B"], ["C+D", "D"])[0]
    base = X[np.isin(labels, ["A", "B"])].mean(axis=0)
    np.testing.assert_allclose(out.loc["C+D"].to_numpy(), [base[0], base[1], 0.0, 0.0])
    np.testing.assert_allclose(out.loc["D"].to_numpy(), [base[0], base[1], base[2], 0.0])


def test_crispr_informed_mean_crispra_doubles_target(toy):
    X, labels, pb = toy
    pb.perturbation_type = "CRISPRa"
    out = predict("crispr_informed_mean", pb, ["A", "B"], ["D"])[0]
    base = X[np.isin(labels, ["A", "B"])].mean(axis=0)
    np.testing.assert_allclose(out.loc["D"].to_numpy(), [base[0], base[1], base[2], 2 * base[3]])


def test_crispr_informed_mean_is_undefined_for_drugs_not_the_mean(toy):
    """A floor that needs a target gene is refused on a drug dataset, never run as `mean` under its name."""
    _, _, pb = toy
    pb.perturbation_type = "drug"
    with pytest.raises(ValueError, match="crispr_informed_mean.*CRISPRi, CRISPRa, KO perturbations only, not drug"):
        predict("crispr_informed_mean", pb, ["A", "B"], ["D"])
    assert predict("mean", pb, ["A", "B"], ["D"])[0].shape == (1, len(pb.genes))


@pytest.mark.parametrize("name", ["no_change", "mean", "crispr_informed_mean"])
def test_test_profiles_never_reach_a_predictor(toy, name):
    """Changing the observed profiles of test perturbations leaves every prediction unchanged."""
    _, _, pb = toy
    before = predict(name, pb, ["A", "B"], ["C+D", "D"])[0]
    tampered = Pseudobulk(pb.means.copy(), pb.n_cells.copy(), pb.targets, pb.control_label, pb.perturbation_type)
    tampered.means.loc[["C+D", "D"]] = 1e6
    tampered.n_cells.loc[["C+D", "D"]] = 10_000
    pd.testing.assert_frame_equal(predict(name, tampered, ["A", "B"], ["C+D", "D"])[0], before)
    data = TrainingData.from_pseudobulk(pb, ["A", "B"])
    assert set(data.means.index) == {"A", "B"}


def test_overlapping_or_unknown_splits_are_rejected(toy):
    _, _, pb = toy
    with pytest.raises(ValueError, match="both train and test"):
        predict("mean", pb, ["A", "B"], ["B"])[0]
    with pytest.raises(ValueError, match="not in the pseudobulk"):
        predict("mean", pb, ["A", "Z"], ["B"])[0]
    with pytest.raises(ValueError, match="unknown predictor"):
        predict("oracle", pb, ["A"], ["B"])[0]
