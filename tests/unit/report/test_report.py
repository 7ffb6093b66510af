"""Leaderboard aggregation and the atomic writers."""

import numpy as np
import pandas as pd
import pytest
from pertprobe.io import atomic_path
from pertprobe.report.leaderboard import leaderboard


def test_leaderboard_means_per_split_then_over_splits():
    rows = []
    # model a: split means 0.2 and 0.4 ; model b: split means 0.5 and 0.5 (one undefined value)
    for split, values in (("fold0", [0.1, 0.3]), ("fold1", [0.4, 0.4])):
        rows += [("d", split, 0, "a", "none", f"p{i}", "rank_delta", v) for i, v in enumerate(values)]
    for split, values in (("fold0", [0.5, np.nan]), ("fold1", [0.5, 0.5])):
        rows += [("d", split, 0, "b", "none", f"p{i}", "rank_delta", v) for i, v in enumerate(values)]
    metrics = pd.DataFrame(rows, columns=["dataset", "split", "seed", "model", "embedding", "perturbation", "metric",
                                          "value"])
    board = leaderboard(metrics).set_index("model")
    assert board.loc["a", "mean"] == pytest.approx(0.3)
    assert board.loc["a", "sd"] == pytest.approx(np.std([0.2, 0.4], ddof=1))
    assert board.loc["b", "mean"] == pytest.approx(0.5)
    assert board.loc["b", "n_undefined"] == 1 and board.loc["b", "n_values"] == 4
    assert board.loc["a", "rank"] == 1  # lower rank_delta is better
    assert not board.loc["a", "higher_is_better"]


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
