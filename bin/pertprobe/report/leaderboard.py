"""The response leaderboard per dataset and task: per-split means summarised over folds x seeds, ranks and bounds."""

from __future__ import annotations

import pandas as pd

from ..response.bounds import ANCHORS, add_bounds
from ..response.metrics import METRIC_COLUMNS, directions
from ..response.predictors import floors, shortcuts


def leaderboard(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean over perturbations per split, then mean/sd/min/max over splits (folds x seeds), ranks,
    coverage (the share of test perturbations a model predicted itself, not by the mean fallback, and
    the fewest training perturbations it was fitted on) and bounds (best floor and shortcut, noise
    ceiling, fraction of the gap; see `add_bounds`)."""
    missing = set(METRIC_COLUMNS) - set(metrics.columns)
    if missing:
        raise ValueError(f"metric table lacks columns {sorted(missing)}")
    keys = ["dataset", "task", "model", "embedding", "metric"]
    per_split = (metrics.assign(covered=~metrics["fallback"].astype(bool))
                 .groupby(keys + ["seed", "split"], observed=True)
                 .agg(split_mean=("value", "mean"), n_defined=("value", "count"), n_total=("value", "size"),
                      n_covered=("covered", "sum"), n_fit=("n_fit", "min")).reset_index())
    per_split["n_undefined"] = per_split["n_total"] - per_split["n_defined"]
    board = (per_split.groupby(keys, observed=True)
             .agg(mean=("split_mean", "mean"), sd=("split_mean", "std"), min=("split_mean", "min"),
                  max=("split_mean", "max"), n_splits=("split_mean", "size"),
                  n_values=("n_total", "sum"), n_undefined=("n_undefined", "sum"),
                  n_covered=("n_covered", "sum"), min_n_fit=("n_fit", "min"))
             .reset_index())
    board["coverage"] = board.pop("n_covered") / board["n_values"]
    board["higher_is_better"] = board["metric"].map(directions()).fillna(True).astype(bool)
    # Rank predictors (not the anchors) by the metric's direction: rank 1 is best.
    signed = board["mean"].where(board["higher_is_better"], -board["mean"]).where(~board["model"].isin(ANCHORS))
    board["rank"] = signed.groupby([board["dataset"], board["task"], board["metric"]]).rank(method="min", ascending=False)
    board["rank"] = board["rank"].astype("Int64")
    board = add_bounds(board, set(floors()), set(shortcuts()))
    return board.sort_values(["dataset", "task", "metric", "rank", "model", "embedding"], ignore_index=True)
