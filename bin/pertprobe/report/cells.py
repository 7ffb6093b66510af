"""Cell-embedding benchmark summaries for the report: a leaderboard with the random floor and one
table per task."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..cells.benchmark import HIGHER_IS_BETTER, NOT_RUN, SUMMARY_COLUMNS
from ..registry import entries, names


def floor_model() -> str:
    """The cell embedder every embedding is compared with (the registered floor)."""
    return names("cell_embedder", floor=True)[0]


def task_titles() -> dict[str, str]:
    return {e.name: e.description for e in entries("cell_task")}


def is_descriptive(metric: str) -> bool:
    """Counts, chance levels and fitted hyper-parameters describe a run; they are not scores."""
    return metric.startswith(("n_", "decoder_alpha")) or "chance" in metric


def cell_leaderboard(summary: pd.DataFrame) -> pd.DataFrame:
    """Summary rows with the random-embedding floor of the same dataset, alignment, task and metric,
    and the signed margin over it (positive = better than the floor)."""
    missing = set(SUMMARY_COLUMNS) - set(summary.columns)
    if missing:
        raise ValueError(f"cell metric table lacks columns {sorted(missing)}")
    keys = ["dataset", "alignment", "task", "metric"]
    floor = (summary[summary["model"] == floor_model()].set_index(keys)["value"].rename("random_floor"))
    board = summary.join(floor, on=keys)
    sign = np.where(board["metric"].map(HIGHER_IS_BETTER).fillna(True).astype(bool), 1.0, -1.0)
    board["margin_over_floor"] = sign * (board["value"] - board["random_floor"])
    board.loc[board["metric"].map(is_descriptive), "margin_over_floor"] = np.nan
    order = {t: i for i, t in enumerate(names("cell_task"))}
    board = board.assign(_t=board["task"].map(order)).sort_values(
        ["dataset", "_t", "metric", "model", "alignment"], ignore_index=True)
    return board.drop(columns="_t")


def tasks_not_run(board: pd.DataFrame, dataset: str) -> dict[str, str]:
    """Task -> why it could not run on this dataset."""
    rows = board[(board["dataset"] == dataset) & (board["metric"] == NOT_RUN)]
    return dict(zip(rows["task"], rows["note"], strict=True))


SEPARATION = 0.02  # a metric whose values, random floor included, all lie within this share of its size


def inseparable(board: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Alignment x task x metric rows where no embedding separates from any other, the random floor
    included: max − min of the values ≤ SEPARATION × the largest |value| (the cell benchmark's
    dynamic-range check; counts and chance levels are not scores and are skipped)."""
    sub = board[(board["dataset"] == dataset) & (board["metric"] != NOT_RUN) & ~board["metric"].map(is_descriptive)]
    rows = []
    for (alignment, task, metric), group in sub.groupby(["alignment", "task", "metric"], sort=True):
        values = group["value"].dropna()
        if group["model"].nunique() < 2 or len(values) < 2 or floor_model() not in set(group["model"]):
            continue
        spread, size = float(values.max() - values.min()), float(values.abs().max())
        if spread <= SEPARATION * size:
            rows.append({"alignment": alignment, "task": task, "metric": metric, "min": float(values.min()),
                         "max": float(values.max())})
    return pd.DataFrame(rows, columns=["alignment", "task", "metric", "min", "max"])


def task_tables(board: pd.DataFrame, dataset: str) -> dict[str, pd.DataFrame]:
    """Per task: rows model/alignment (the random floor first), one column per metric."""
    out = {}
    sub = board[(board["dataset"] == dataset) & (board["metric"] != NOT_RUN)]
    for task in names("cell_task"):
        rows = sub[sub["task"] == task]
        if rows.empty:
            continue
        table = rows.pivot_table(index=["model", "alignment"], columns="metric", values="value", sort=True)
        table = table.reset_index()
        table.columns.name = None
        floor_first = np.argsort(table["model"] != floor_model(), kind="stable")
        out[task] = table.iloc[floor_first].reset_index(drop=True)
    return out
