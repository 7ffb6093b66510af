"""The verdict: paired tests against the best floor, the best shortcut and the random twin, and the
floor-to-ceiling figure, on a board and statistics whose answers are known."""

import base64

import numpy as np
import pandas as pd
import pytest
from pertprobe.report.html import render_html
from pertprobe.report.leaderboard import leaderboard
from pertprobe.report.verdict import (best_references, gap_figure, gap_scores, pair_difference, random_twins,
                                      verdict_cells, verdict_table)
from pertprobe.response.metrics import METRIC_COLUMNS
from pertprobe.response.statistics import COLUMNS

# Mean score per (model, embedding); per split the score is mean -/+ 0.01 (fold0/fold1).
# X = linear/esm2, Y = knn/esm2, Z = ridge/esm2 (above the ceiling); mean is the best floor,
# target_only the (only) shortcut probe. rank_delta's ceiling equals the floor: its gap is undefined.
MEANS = {
    ("mean", "none"): (0.4, 1.0, 0.3), ("target_only", "none"): (0.3, 1.2, 0.35),
    ("linear", "random"): (0.1, 1.5, 0.45), ("knn", "random"): (0.2, 1.3, 0.42),
    ("linear", "esm2"): (0.5, 0.8, 0.2), ("knn", "esm2"): (0.25, 1.1, 0.4), ("ridge", "esm2"): (1.0, 0.1, 0.1),
    ("ceiling", "none"): (0.8, 0.2, 0.3),
}
METRICS = ("pearson_delta", "mse", "rank_delta")  # higher, lower, lower is better
# statistics.csv rows, a < b alphabetically, difference a − b.
PAIRS = [
    ("pearson_delta", "linear/esm2", "mean", 0.1, 0.01, 0.05, 0.15),
    ("pearson_delta", "linear/esm2", "target_only", 0.2, 0.2, -0.05, 0.45),
    ("pearson_delta", "knn/esm2", "mean", -0.15, 0.01, -0.25, -0.05),
    ("pearson_delta", "knn/esm2", "target_only", -0.05, 0.5, -0.2, 0.1),
    ("pearson_delta", "mean", "ridge/esm2", -0.6, 0.001, -0.7, -0.5),  # only as floor − Z
    ("pearson_delta", "ridge/esm2", "target_only", 0.7, 0.001, 0.6, 0.8),
    ("pearson_delta", "linear/esm2", "linear/random", 0.4, 0.001, 0.3, 0.5),
    ("pearson_delta", "knn/esm2", "knn/random", 0.05, 0.3, -0.05, 0.15),
    ("mse", "linear/esm2", "mean", -0.2, 0.01, -0.3, -0.1),
    ("mse", "linear/esm2", "target_only", -0.4, 0.03, -0.5, 0.02),  # p < 0.05 but the CI crosses 0
    ("mse", "mean", "ridge/esm2", 0.9, 0.001, 0.8, 1.0),  # lower is better and b − a: two flips
    ("mse", "linear/esm2", "linear/random", -0.7, 0.001, -0.8, -0.6),
    ("rank_delta", "linear/esm2", "mean", -0.1, 0.01, -0.15, -0.05),
]


@pytest.fixture(scope="module")
def inputs():
    rows = []
    for (model, embedding), means in MEANS.items():
        for metric, mean in zip(METRICS, means, strict=True):
            for split, shift in (("fold0", -0.01), ("fold1", 0.01)):
                rows += [("d", "unseen_perturbation", split, 0, model, embedding, p, metric, mean + shift, False, 8.0) for p in ("p0", "p1")]
    metrics = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    stats = pd.DataFrame([{"dataset": "d", "task": "unseen_perturbation", "metric": m, "predictor_a": a, "predictor_b": b, "mean_difference": d,
                           "p_perturbation": p, "t_corrected": 3.0, "p_corrected": p, "n_splits": 2, "n_folds": 2,
                           "ci_low": lo, "ci_high": hi, "n_perturbations": 2} for m, a, b, d, p, lo, hi in PAIRS],
                         columns=COLUMNS)
    return leaderboard(metrics), stats, metrics


def test_best_floor_and_shortcut_are_predictors_chosen_by_oriented_mean(inputs):
    board, _, _ = inputs
    refs = best_references(board)
    assert refs.loc[("d", "pearson_delta")].tolist() == ["mean", "target_only"]
    assert refs.loc[("d", "mse")].tolist() == ["mean", "target_only"]  # lowest mse, not the highest


def test_pair_difference_flips_a_pair_stored_as_b_minus_a(inputs):
    _, stats, _ = inputs
    row = pair_difference(stats, "d", "mse", "ridge/esm2", "mean")
    assert row["mean_difference"] == pytest.approx(-0.9)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((-1.0, -0.8))
    assert pair_difference(stats, "d", "mse", "knn/esm2", "mean") is None


def test_verdict_decides_by_p_and_ci_oriented_by_direction(inputs):
    board, stats, _ = inputs
    v = verdict_table(board, stats).set_index(["predictor", "metric"])
    assert sorted(set(v.index.get_level_values(0))) == ["knn/esm2", "linear/esm2", "ridge/esm2"]
    x = v.loc[("linear/esm2", "pearson_delta")]
    assert x["floor_beats"] and not x["shortcut_beats"]
    assert (x["floor_difference"], x["floor_ci_low"], x["floor_ci_high"]) == pytest.approx((0.1, 0.05, 0.15))
    assert x["fraction_of_gap"] == pytest.approx(0.25) and x["gap_status"] == "ok"
    y = v.loc[("knn/esm2", "pearson_delta")]
    assert not y["floor_beats"] and not y["shortcut_beats"]
    assert y["floor_worse"] and not y["shortcut_worse"]  # −0.15 [−0.25, −0.05], p 0.01; the shortcut: p 0.5
    assert y["floor_difference"] == pytest.approx(-0.15) and y["gap_status"] == "below the best floor"
    z = v.loc[("ridge/esm2", "pearson_delta")]
    assert z["floor_beats"] and z["shortcut_beats"] and z["gap_status"] == "above the ceiling"
    assert (z["floor_difference"], z["floor_ci_low"], z["floor_ci_high"]) == pytest.approx((0.6, 0.5, 0.7))
    assert z["fraction_of_gap"] == pytest.approx(1.5)
    # mse: lower is better, so a negative a − b is a win; p < 0.05 alone is not enough.
    x = v.loc[("linear/esm2", "mse")]
    assert x["floor_beats"] and (x["floor_difference"], x["floor_ci_low"]) == pytest.approx((0.2, 0.1))
    assert not x["shortcut_beats"] and x["shortcut_p_corrected"] < 0.05
    assert (x["shortcut_ci_low"], x["shortcut_ci_high"]) == pytest.approx((-0.02, 0.5))
    z = v.loc[("ridge/esm2", "mse")]
    assert z["floor_beats"] and (z["floor_difference"], z["floor_ci_low"], z["floor_ci_high"]) == pytest.approx(
        (0.9, 0.8, 1.0))
    assert np.isnan(v.loc[("knn/esm2", "mse"), "floor_difference"])  # not compared: not a win
    assert not v.loc[("knn/esm2", "mse"), "floor_beats"]
    r = v.loc[("linear/esm2", "rank_delta")]
    assert r["floor_beats"] and np.isnan(r["fraction_of_gap"]) and r["gap_status"] == "ceiling not above the best floor"


def test_verdict_cells_show_marks_numbers_and_the_gap(inputs):
    board, stats, _ = inputs
    cells = verdict_cells(verdict_table(board, stats), "d").set_index("predictor")
    head = "pearson_delta\nfloor mean · shortcut target_only"
    assert list(cells.columns)[0] == head
    assert cells.loc["linear/esm2", head] == ("✓ floor +0.100 [+0.050, +0.150] p=0.01\n"
                                              "✗ shortcut +0.200 [-0.050, +0.450] p=0.2\n25% of gap")
    assert cells.loc["ridge/esm2", head].endswith("150% of gap (above the ceiling)")
    rank = [c for c in cells.columns if c.startswith("rank_delta")][0]
    assert cells.loc["linear/esm2", rank].endswith("gap undefined: ceiling not above the best floor")
    mse = [c for c in cells.columns if c.startswith("mse")][0]
    assert cells.loc["knn/esm2", mse].startswith("? floor: not compared\n")


def test_random_twins(inputs):
    board, stats, _ = inputs
    t = random_twins(board, stats).set_index(["predictor", "metric"])
    assert t.loc[("linear/esm2", "pearson_delta"), "beats"] and t.loc[("linear/esm2", "mse"), "beats"]
    assert t.loc[("linear/esm2", "mse"), "difference"] == pytest.approx(0.7)
    assert t.loc[("knn/esm2", "pearson_delta"), "twin"] == "knn/random"
    assert not t.loc[("knn/esm2", "pearson_delta"), "beats"]
    assert pd.isna(t.loc[("ridge/esm2", "pearson_delta"), "twin"])
    assert set(t.index.get_level_values(0)) == {"linear/esm2", "knn/esm2", "ridge/esm2"}


def test_gap_scores_and_figure(inputs):
    board, _, _ = inputs
    scores = gap_scores(board, {"d": 2}).set_index(["predictor", "metric"])
    sd = np.std([0.49, 0.51], ddof=1)
    expected = 12.7062 * sd * np.sqrt(1 / 2 + 1 / 1) / 0.4  # t(0.975, 1 df), J = 2 splits, K = 2 folds, gap 0.4
    assert scores.loc[("linear/esm2", "pearson_delta"), "half_width"] == pytest.approx(expected, rel=1e-4)
    assert np.isnan(scores.loc[("linear/esm2", "rank_delta"), "half_width"])
    defined = scores.reset_index().dropna(subset=["fraction_of_gap"])
    first = gap_figure(defined)
    assert base64.b64decode(first).startswith(b"\x89PNG\r\n\x1a\n")
    assert gap_figure(defined) == first


def test_report_opens_with_the_verdict(inputs):
    board, stats, metrics = inputs
    page = render_html(board, metrics, {}, [], "", stats)
    assert page.index("<h2>Verdict</h2>") < page.index("<h3>Dataset")
    verdict = page[page.index("<h2>Verdict</h2>"):page.index("<h3>Dataset")]
    assert "✓ floor +0.100 [+0.050, +0.150] p=0.01" in verdict and "random twin" in verdict
    assert "data:image/png;base64," in verdict
    assert "Not in the figure (the floor-to-ceiling gap is undefined): rank_delta" in verdict
    assert "Paired comparisons with the best floor" in page


def test_a_shortcut_that_is_the_best_floor_is_tested_once():
    row = {"dataset": "d", "predictor": "linear/esm2", "metric": "mse", "floor": "target_only",
           "shortcut": "target_only", "fraction_of_gap": np.nan, "gap_status": "no defined value"}
    for role in ("floor", "shortcut"):
        row |= {f"{role}_difference": 0.2, f"{role}_ci_low": 0.1, f"{role}_ci_high": 0.3, f"{role}_p_corrected": 0.01,
                f"{role}_beats": True, f"{role}_worse": False}
    cells = verdict_cells(pd.DataFrame([row]), "d")
    assert cells.iloc[0, 1] == "✓ floor = shortcut +0.200 [+0.100, +0.300] p=0.01\ngap undefined: no defined value"


def test_the_headline_names_who_beats_what(inputs):
    from pertprobe.report.verdict import headline

    board, stats, _ = inputs
    lines = headline(verdict_table(board, stats), random_twins(board, stats), "d")
    assert lines[0] == "Beat the best floor: linear/esm2 (pearson_delta, mse, rank_delta); ridge/esm2 (pearson_delta, mse)."
    assert lines[1] == "Beat the best shortcut probe: ridge/esm2 (pearson_delta)."
    assert lines[2].startswith("Gene-embedding inputs that beat their random twin: linear/esm2")
