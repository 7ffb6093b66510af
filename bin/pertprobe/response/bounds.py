"""Bounds for every score: the split-half experimental-noise ceiling and the best floor.

Ceiling: for each test perturbation, its cells are split at random into two halves; the mean of
one half is scored as a "prediction" of the other half's mean with the same metrics as any
predictor, averaged over several draws. No predictor can be expected to beat the agreement of
two halves of the same experiment by more than noise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..data.pseudobulk import group_means
from .metrics import directions, response_metrics


def split_half_ceiling(X: np.ndarray | sp.spmatrix, labels: np.ndarray, genes: pd.Index, test: list[str],
                       control: np.ndarray, de_genes: dict[str, list[str]] | None, n_draws: int = 5,
                       seed: int = 0, metrics: list[str] | None = None) -> pd.DataFrame:
    """Per-perturbation ceiling metrics (long table), averaged over `n_draws` random half splits."""
    labels = np.asarray(labels).astype(str)
    rng = np.random.default_rng(seed)
    cells = {p: np.flatnonzero(labels == p) for p in test}
    too_few = [p for p, idx in cells.items() if len(idx) < 2]
    if too_few:
        raise ValueError(f"perturbations with fewer than 2 cells cannot be split in half: {too_few[:5]}")
    draws = []
    for _ in range(n_draws):
        rows, halves = [], []
        for p in test:
            idx = rng.permutation(cells[p])
            mid = len(idx) // 2
            rows += [idx[:mid], idx[mid:]]
            halves += [f"{p}\x00a"] * mid + [f"{p}\x00b"] * (len(idx) - mid)
        order = np.concatenate(rows)
        means, _ = group_means(X[order], np.asarray(halves))
        a = means.loc[[f"{p}\x00a" for p in test]].set_axis(pd.Index(test, name="perturbation")).set_axis(genes, axis=1)
        b = means.loc[[f"{p}\x00b" for p in test]].set_axis(pd.Index(test, name="perturbation")).set_axis(genes, axis=1)
        draws.append(response_metrics(a, b, control, de_genes, metrics=metrics))
    both = pd.concat(draws, ignore_index=True)
    return both.groupby(["perturbation", "metric"], sort=False)["value"].mean().reset_index()


def add_bounds(board: pd.DataFrame, floors: set[str], ceiling_model: str = "ceiling") -> pd.DataFrame:
    """Add best_floor, ceiling and fraction_of_gap = (value − best floor) / (ceiling − best floor).

    `board` has one row per dataset x model x embedding x metric with a `mean` column; floors are
    the rows whose `model` is in `floors` or whose embedding is `random`.
    """
    board = board.copy()
    is_floor = board["model"].isin(floors) | (board["embedding"] == "random")
    best_floor, ceiling = {}, {}
    higher_is_better = directions()
    for (dataset, metric), group in board.groupby(["dataset", "metric"]):
        higher = higher_is_better.get(metric, True)
        values = group.loc[is_floor.loc[group.index], "mean"].dropna()
        best_floor[(dataset, metric)] = (values.max() if higher else values.min()) if len(values) else np.nan
        ceil = group.loc[group["model"] == ceiling_model, "mean"]
        ceiling[(dataset, metric)] = ceil.iloc[0] if len(ceil) else np.nan
    keys = list(zip(board["dataset"], board["metric"], strict=True))
    board["best_floor"] = [best_floor[k] for k in keys]
    board["ceiling"] = [ceiling[k] for k in keys]
    gap = board["ceiling"] - board["best_floor"]
    board["fraction_of_gap"] = np.where(gap.abs() > 1e-12, (board["mean"] - board["best_floor"]) / gap.where(gap != 0, 1),
                                        np.nan)
    return board
