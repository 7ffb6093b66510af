"""The per-perturbation views on hand-made pseudobulks and metric tables whose answers are known:
knockdown shares and flags, cosine similarity and neighbours, clustering order, per-perturbation
scores against the best floor, and the HTML sections."""

import base64
import dataclasses
import struct

import numpy as np
import pandas as pd
import pytest
from pertprobe.data.pseudobulk import Pseudobulk
from pertprobe.report.html import render_html
from pertprobe.report.leaderboard import leaderboard
from pertprobe.report.perturbations import (BOTH, cap_rows, cluster_order, knockdown_summary, knockdown_table,
                                            nearest_neighbours, perturbation_scores, perturbation_tables,
                                            response_strength, score_cells, score_figure, shown_predictors,
                                            similarity, similarity_figure)
from pertprobe.response.metrics import METRIC_COLUMNS


def _pb(means: dict[str, list[float]], genes: list[str], targets: dict[str, list[str]],
        kind: str = "CRISPRi") -> Pseudobulk:
    frame = pd.DataFrame(means, index=genes).T
    return Pseudobulk(means=frame, n_cells=pd.Series({p: 10 + i for i, p in enumerate(frame.index)}),
                      targets=targets, control_label="ctrl", perturbation_type=kind)


@pytest.fixture(scope="module")
def knockdown_pb():
    # Targets at 9 normalised counts in control (log1p 9 = log 10). A keeps 10%, B 90% (not knocked
    # down), C three times the control (CRISPRa-like), D names no measured target.
    genes = ["g0", "g1", "g2", "g3"]
    control = np.log1p([9.0, 9.0, 9.0, 4.0])
    means = {"ctrl": control, "A": control.copy(), "B": control.copy(), "C": control.copy(), "D": control + 0.1}
    means["A"][0], means["B"][1], means["C"][2] = np.log1p(0.9), np.log1p(8.1), np.log1p(27.0)
    return _pb({k: list(v) for k, v in means.items()}, genes, {"A": ["g0"], "B": ["g1"], "C": ["g2"], "D": []})


def test_knockdown_shares_fold_changes_and_flags(knockdown_pb):
    kd = knockdown_table(knockdown_pb).set_index("perturbation")
    assert list(kd.index) == ["A", "B", "C"]  # sorted by share remaining; D has no measured target
    assert kd["target"].tolist() == ["g0", "g1", "g2"]
    assert kd["control_mean"].tolist() == pytest.approx([9.0, 9.0, 9.0])
    assert kd["perturbed_mean"].tolist() == pytest.approx([0.9, 8.1, 27.0])
    assert kd["share_remaining"].tolist() == pytest.approx([0.1, 0.9, 3.0])
    assert kd["log2_fold_change"].tolist() == pytest.approx(np.log2([1.9 / 10, 9.1 / 10, 28 / 10]))
    assert kd["on_target"].tolist() == [True, False, False]
    assert kd["status"].tolist() == ["knocked down", "not knocked down", "not knocked down"]
    assert knockdown_summary(kd.reset_index(), "CRISPRi").startswith(
        "3 perturbation(s) have a measured target; 1 have every measured target knocked down")
    crispra = dataclasses.replace(knockdown_pb, perturbation_type="CRISPRa")
    activated = knockdown_table(crispra).set_index("perturbation")
    assert activated["on_target"].tolist() == [False, False, True]
    assert activated.loc["C", "status"] == "activated" and activated.loc["A", "status"] == "not activated"


# Δ (control = 0): P2 = 2 · P1, P3 orthogonal to both, P4 close to P1.
DELTAS = {"P1": [1.0, 2.0, 0.0], "P2": [2.0, 4.0, 0.0], "P3": [0.0, 0.0, 1.0], "P4": [1.0, 2.0, 0.1]}


@pytest.fixture(scope="module")
def pb():
    return _pb({"ctrl": [0.0, 0.0, 0.0], **DELTAS}, ["x", "y", "z"], {p: [] for p in DELTAS})


def test_response_strength_is_the_norm_of_delta_strongest_first(pb):
    strength = response_strength(pb)
    assert strength["perturbation"].tolist() == ["P2", "P4", "P1", "P3"]
    assert strength["response_strength"].tolist() == pytest.approx([np.sqrt(20), np.sqrt(5.01), np.sqrt(5), 1.0])
    assert strength["n_cells"].tolist() == [12, 14, 11, 13]


def test_similarity_is_one_for_proportional_and_zero_for_orthogonal_responses(pb):
    sim = similarity(pb)
    assert sim.at["P1", "P2"] == pytest.approx(1.0)
    assert sim.at["P1", "P3"] == pytest.approx(0.0) and sim.at["P2", "P3"] == pytest.approx(0.0)
    assert np.allclose(sim.to_numpy(), sim.to_numpy().T) and np.allclose(np.diag(sim), 1)
    flat = _pb({"ctrl": [0.0, 0.0, 0.0], "P1": [1.0, 0.0, 0.0], "Z": [0.0, 0.0, 0.0]}, ["x", "y", "z"], {})
    assert np.isnan(similarity(flat).at["P1", "Z"])  # no response, no direction


def test_nearest_neighbours_by_cosine_ties_by_name(pb):
    nn = nearest_neighbours(similarity(pb)).set_index("perturbation")
    assert nn.loc["P1", ["neighbour_1", "neighbour_2", "neighbour_3"]].tolist() == ["P2", "P4", "P3"]
    assert nn.loc["P1", "cosine_1"] == pytest.approx(1.0)
    assert nn.loc["P3", ["neighbour_1", "neighbour_2", "neighbour_3"]].tolist() == ["P4", "P1", "P2"]
    assert nn.loc["P3", "cosine_1"] == pytest.approx(0.1 / np.sqrt(5.01))
    assert nearest_neighbours(similarity(pb), k=1).columns.tolist() == ["perturbation", "neighbour_1", "cosine_1"]


def test_cluster_order_is_deterministic_and_keeps_clusters_together(pb):
    sim = similarity(pb)
    order = cluster_order(sim)
    assert order == cluster_order(sim) and sorted(order) == sorted(DELTAS)
    assert order.index("P3") in (0, 3)  # the orthogonal response is not inside the P1/P2/P4 cluster
    shuffled = sim.loc[["P4", "P3", "P2", "P1"], ["P4", "P3", "P2", "P1"]]
    assert cluster_order(shuffled) == cluster_order(shuffled)


def _rows(model, embedding, metric, values, fallback=()):
    """values: perturbation -> (seed 0 value, seed 1 value); fallback: (perturbation, seed) pairs."""
    splits = {0: {"P1": "fold0", "P2": "fold0", "P3": "fold1", "P4": "fold1"},
              1: {"P1": "fold0", "P3": "fold0", "P2": "fold1", "P4": "fold1"}}
    return [("d", "unseen_perturbation", splits[seed][p], seed, model, embedding, p, metric, v[seed], (p, seed) in fallback, 3.0)
            for p, v in values.items() for seed in (0, 1)]


def _all(value):
    return {p: (value, value) for p in DELTAS}


@pytest.fixture(scope="module")
def scored():
    rows = []
    rows += _rows("mean", "none", "pearson_delta", _all(0.5))
    rows += _rows("target_only", "none", "pearson_delta", _all(0.4))
    rows += _rows("linear", "esm2", "pearson_delta",
                  {"P1": (0.2, 0.4), "P2": (0.8, 0.6), "P3": (0.6, 0.6), "P4": (0.9, 0.5)}, fallback={("P4", 1)})
    rows += _rows("ceiling", "none", "pearson_delta", _all(0.9))
    rows += _rows("mean", "none", "rank_delta", _all(0.3))
    rows += _rows("linear", "esm2", "rank_delta", {**_all(0.2), "P3": (0.4, 0.4)})
    rows += _rows("ceiling", "none", "rank_delta", _all(0.05))
    metrics = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    return metrics, leaderboard(metrics)


def test_shown_predictors_are_the_best_floor_shortcut_predictors_and_ceiling(scored):
    _, board = scored
    assert shown_predictors(board, "d", "pearson_delta") == [
        ("floor", "mean"), ("shortcut", "target_only"), ("predictor", "linear/esm2"), ("ceiling", "ceiling")]
    assert shown_predictors(board, "d", "rank_delta") == [
        ("floor", "mean"), ("predictor", "linear/esm2"), ("ceiling", "ceiling")]
    assert shown_predictors(board[board["model"] != "mean"], "d", "pearson_delta")[0] == (BOTH, "target_only")


def test_scores_average_over_seeds_order_by_strength_and_mark_worse_than_floor_and_fallback(scored, pb):
    metrics, board = scored
    scores = perturbation_scores(metrics, board, pb, "d")
    assert scores["metric"].unique().tolist() == ["pearson_delta", "rank_delta"]
    linear = scores[(scores["predictor"] == "linear/esm2") & (scores["metric"] == "pearson_delta")]
    assert linear["perturbation"].tolist() == ["P2", "P4", "P1", "P3"]  # strongest first
    assert linear["value"].tolist() == pytest.approx([0.7, 0.7, 0.3, 0.6])
    assert linear["worse_than_floor"].tolist() == [False, False, True, False]
    assert linear["fallback"].tolist() == [False, True, False, False]
    assert not scores.loc[scores["role"].isin(["floor", "ceiling"]), "worse_than_floor"].any()
    rank = scores[(scores["predictor"] == "linear/esm2") & (scores["metric"] == "rank_delta")]
    assert rank.set_index("perturbation")["worse_than_floor"].to_dict() == {"P2": False, "P4": False, "P1": False,
                                                                             "P3": True}  # lower is better
    assert scores["response_strength"].iloc[0] == pytest.approx(np.sqrt(20)) and scores["n_cells"].iloc[0] == 12
    shown, classes = score_cells(scores, "pearson_delta")
    assert shown.columns.tolist() == ["perturbation", "n_cells", "‖Δ‖", "floor: mean", "shortcut: target_only",
                                      "linear/esm2", "ceiling"]
    assert shown.set_index("perturbation").loc["P1", "linear/esm2"] == "0.300 ▼"
    assert shown.set_index("perturbation").loc["P4", "linear/esm2"] == "0.700 †"
    assert classes.iloc[2]["linear/esm2"] == "worse" and classes.iloc[1]["linear/esm2"] == "fallback"
    table, knockdown = perturbation_tables(metrics, board, {"d": pb})
    assert len(table) == len(scores) and knockdown.empty


def test_large_screens_keep_the_strongest_and_weakest_rows():
    kept, left_out = cap_rows(pd.DataFrame({"i": range(60)}))
    assert left_out == 10 and kept["i"].tolist() == list(range(40)) + list(range(50, 60))
    assert cap_rows(pd.DataFrame({"i": range(50)}))[1] == 0


def _size(data: str) -> tuple[int, int]:
    raw = base64.b64decode(data)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", raw[16:24])


def test_figures_are_byte_identical_and_fit_a_laptop(scored, pb):
    metrics, board = scored
    scores = perturbation_scores(metrics, board, pb, "d")
    assert score_figure(scores) == score_figure(scores)
    sim = similarity(pb)
    heatmap = similarity_figure(sim)
    assert heatmap == similarity_figure(sim)
    width, height = _size(heatmap)
    assert width <= 8 * 110 and height <= 7 * 110
    big = _pb({"ctrl": [0.0] * 5, **{f"Q{i:02d}": list(np.sin(np.arange(5) * (i + 1))) for i in range(60)}},
              list("abcde"), {})
    width, height = _size(similarity_figure(similarity(big).iloc[:50, :50]))
    assert width <= 8 * 110 and height <= 7 * 110


def test_report_has_the_three_views_or_a_note_without_pseudobulk(scored, pb, knockdown_pb):
    metrics, board = scored
    page = render_html(board, metrics, {}, [], "", pseudobulks={"d": pb})
    for heading in ("Per-perturbation views", "Scores per perturbation", "Own-target knockdown",
                    "Similarity of observed responses"):
        assert heading in page
    assert page.index("Per-perturbation views") < page.index("<h3>Dataset d</h3>")
    assert "<td class='worse'>0.300 ▼</td>" in page and "No perturbation has a measured target." in page
    with_targets = render_html(board, metrics, {}, [], "", pseudobulks={"d": knockdown_pb})
    assert "3 perturbation(s) have a measured target; 1 have every measured target knocked down" in with_targets
    assert "<td class='worse'>not knocked down</td>" in with_targets
    plain = render_html(board, metrics, {}, [], "")
    assert "Skipped: no pseudobulk was given" in plain and "Scores per perturbation" not in plain
