"""Leaderboard aggregation and the atomic writers."""

import numpy as np
import pandas as pd
import pytest
from pertprobe.io import atomic_path
from pertprobe.report.html import render_html
from pertprobe.report.leaderboard import leaderboard
from pertprobe.response.metrics import METRIC_COLUMNS


def test_leaderboard_means_per_split_then_over_splits():
    rows = []
    # model a: split means 0.2 and 0.4 ; model b: split means 0.5 and 0.5 (one undefined value)
    # model a fell back to the mean for p1 in fold0 and was fitted on 7 and 9 training perturbations
    for split, values, n_fit in (("fold0", [0.1, 0.3], 7.0), ("fold1", [0.4, 0.4], 9.0)):
        rows += [("d", "unseen_perturbation", split, 0, "a", "none", f"p{i}", "rank_delta", v, split == "fold0" and i == 1, n_fit)
                 for i, v in enumerate(values)]
    for split, values in (("fold0", [0.5, np.nan]), ("fold1", [0.5, 0.5])):
        rows += [("d", "unseen_perturbation", split, 0, "b", "none", f"p{i}", "rank_delta", v, False, np.nan) for i, v in enumerate(values)]
    metrics = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    board = leaderboard(metrics).set_index("model")
    assert board.loc["a", "mean"] == pytest.approx(0.3)
    assert board.loc["a", "sd"] == pytest.approx(np.std([0.2, 0.4], ddof=1))
    assert board.loc["b", "mean"] == pytest.approx(0.5)
    assert board.loc["b", "n_undefined"] == 1 and board.loc["b", "n_values"] == 4
    assert board.loc["a", "rank"] == 1  # lower rank_delta is better
    assert not board.loc["a", "higher_is_better"]
    assert board.loc["a", "coverage"] == pytest.approx(0.75) and board.loc["b", "coverage"] == 1
    assert board.loc["a", "min_n_fit"] == 7 and np.isnan(board.loc["b", "min_n_fit"])
    page = render_html(board.reset_index(), metrics, {}, [], "")
    assert "Coverage: these predictors" in page and "a 75% (fitted on as few as 7)" in page


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.csv"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_text("done")
    assert target.read_text() == "done" and list(tmp_path.iterdir()) == [target]
