"""Bounds for every score: the noise ceiling, the half-depth technical duplicate, floors and shortcuts.

Ceiling (model ``ceiling``): an estimate of what the truth itself would score against the observed
pseudobulk O of a test perturbation's n cells, computed with the same metric code and the same test
perturbations as every predictor, averaged over random half splits of the cells (halves of n_a and
n_b cells, means A and B). Each metric names its estimate (`ceiling_method` in the registry):

* ``noise_matched``: ``e = (A − B)·√(n_a·n_b)/n`` has the covariance of O's own sampling noise and is
  uncorrelated with O; ``O + e`` — the observation plus a fresh draw of its noise — is scored
  against O. For squared-error metrics its expectation equals the truth's (E‖e‖² = E‖O − truth‖²);
  for overlap and rank metrics it is optimistic, so it bounds from above.
* ``spearman_brown``: correlations. Under additive noise, the half-vs-half correlation r estimates
  the reliability of a half-depth profile; the Spearman–Brown formula 2r/(1+r) corrects it to full
  depth, and the truth's correlation with a full-depth observation is its square root.

The plain half-vs-half score measures two experiments of half the depth and falls below the truth
whenever cells are noisy, so it is reported as an anchor, never as the ceiling.

Technical duplicate (model ``split_half``): A scored against B, the positive control of Miller
et al. 2025, measured at half the depth.

Replicate duplicate (model ``replicate_duplicate``): a perturbation measured in two or more
batches, its cells in every other batch against the rest — the technical duplicate across
independent captures, where the batches are replicates.

Interpolated duplicate (model ``interpolated_duplicate``, Miller et al. 2025): per gene,
``α·A + (1 − α)·M`` scored against B, with ``α = 1 − adjusted p`` of the perturbation's DE test
(0 for untested genes) and M the mean of the split's perturbed training cells (the ``mean``
floor): the duplicate where the gene's change is certain, the floor where it is not.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..data.de import GroupMoments, group_moments, log2_fold_change, welch_t
from ..data.pseudobulk import group_means
from .de_agreement import ObservedDE
from .metrics import PERFECT, SPEARMAN_BROWN, ceiling_methods, directions, perfect_scores, response_metrics

ANCHORS = ("ceiling", "split_half", "interpolated_duplicate", "replicate_duplicate")  # bounds, never ranked
GAP_NOISE_SE = 2.0  # a floor-to-ceiling gap under this many standard errors is within noise
OK = "ok"
BELOW_FLOOR, ABOVE_CEILING, NO_VALUE = "below the best floor", "above the ceiling", "no defined value"
ROW_STATUSES = (OK, BELOW_FLOOR, ABOVE_CEILING, NO_VALUE)  # a row's place; any other status is its metric's


def _means(means: pd.DataFrame, keys: list[str], test: list[str], genes: pd.Index) -> pd.DataFrame:
    """Rows `keys` of group means, relabelled by their test perturbation."""
    return means.loc[keys].set_axis(pd.Index(test, name="perturbation")).set_axis(genes, axis=1)


def spearman_brown_ceiling(r: np.ndarray) -> np.ndarray:
    """Correlation of the truth with a full-depth observation, from the half-vs-half correlation r:
    √(2r / (1 + r)), 0 where r ≤ 0 (no reliable signal); NaN stays NaN."""
    r = np.asarray(r, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(r), np.nan, np.sqrt(np.clip(2 * r / (1 + np.maximum(r, 0)), 0, 1)))


def noise_ceiling(X: np.ndarray | sp.spmatrix, labels: np.ndarray, genes: pd.Index, test: list[str],
                  control: np.ndarray, de_genes: dict[str, list[str]] | None, n_draws: int = 5, seed: int = 0,
                  metrics: list[str] | None = None, reference: np.ndarray | None = None,
                  weights: pd.DataFrame | None = None, alpha: pd.DataFrame | None = None,
                  observed_de: ObservedDE | None = None, control_label: str = "control",
                  batches: np.ndarray | None = None) -> pd.DataFrame:
    """Per-perturbation scores of the anchors (long table with a `model` column): the ceiling, the
    split-half duplicate and, given the per-gene interpolation weights `alpha` (perturbations x
    genes, 1 − adjusted p) and `reference`, the interpolated duplicate, each averaged over `n_draws`
    random half splits; given each cell's batch (`batches`), the replicate duplicate. `reference`,
    `weights` and `observed_de` as in `response_metrics`. With `observed_de`, a duplicate's DE calls
    are each half's own test against the `control_label` cells, and the ceiling of the DE-call
    metrics is their perfect score (`PERFECT`)."""
    labels = np.asarray(labels).astype(str)
    rng = np.random.default_rng(seed)
    cells = {p: np.flatnonzero(labels == p) for p in test}
    too_few = [p for p, idx in cells.items() if len(idx) < 2]
    if too_few:
        raise ValueError(f"perturbations with fewer than 2 cells cannot be split in half: {too_few[:5]}")
    every = np.concatenate([cells[p] for p in test])
    observed = _means(group_means(X[every], labels[every])[0], list(test), list(test), genes)
    n = np.array([len(cells[p]) for p in test], dtype=np.float64)
    scale = np.sqrt((n // 2) * (n - n // 2)) / n
    methods = ceiling_methods()
    control_moments = None
    if observed_de is not None:
        ctrl = np.flatnonzero(labels == control_label)
        control_moments = group_moments(X[ctrl], labels[ctrl])

    def score(pred: pd.DataFrame, obs: pd.DataFrame, de: ObservedDE | None) -> pd.DataFrame:
        return response_metrics(pred, obs, control, de_genes, metrics=metrics, reference=reference, weights=weights,
                                observed_de=de)

    def split(halves: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[pd.DataFrame, pd.DataFrame, Any]:
        """Means of halves A and B of each listed perturbation, and B's DE calls with A's spread."""
        names = list(halves)
        order = np.concatenate([np.concatenate(halves[p]) for p in names])
        keys = np.concatenate([[f"{p}\x00a"] * len(halves[p][0]) + [f"{p}\x00b"] * len(halves[p][1]) for p in names])
        moments = group_moments(X[order], keys)
        means = pd.DataFrame(moments.mean, index=moments.groups)
        a = _means(means, [f"{p}\x00a" for p in names], names, genes)
        b = _means(means, [f"{p}\x00b" for p in names], names, genes)
        de = None if observed_de is None else _halves_de(moments, control_moments, observed_de, names, genes)
        return a, b, de

    draws, itself = [], None
    for _ in range(n_draws):
        halves = {}
        for p in test:
            idx = rng.permutation(cells[p])
            halves[p] = (idx[: len(idx) // 2], idx[len(idx) // 2:])
        a, b, halves_de = split(halves)
        ceiling = score(observed + (a - b).to_numpy() * scale[:, None], observed, observed_de)
        duplicate = score(a, b, halves_de)
        method = ceiling["metric"].map(methods).to_numpy()
        by_halves = method == SPEARMAN_BROWN
        ceiling.loc[by_halves, "value"] = spearman_brown_ceiling(duplicate.loc[by_halves, "value"].to_numpy())
        if (method == PERFECT).any():
            if itself is None:  # the observation scored against itself: the same in every draw
                perfect = sorted(set(ceiling["metric"][method == PERFECT]))
                itself = response_metrics(observed, observed, control, metrics=perfect, observed_de=observed_de)
                itself = itself.set_index(["perturbation", "metric"])["value"]
            keys = pd.MultiIndex.from_frame(ceiling.loc[method == PERFECT, ["perturbation", "metric"]])
            ceiling.loc[method == PERFECT, "value"] = itself.reindex(keys).to_numpy()
        draws += [ceiling.assign(model="ceiling"), duplicate.assign(model="split_half")]
        if alpha is not None and reference is not None:
            w = alpha.loc[list(test), genes].to_numpy(dtype=np.float64)
            interpolated = a * w + (1 - w) * np.asarray(reference, dtype=np.float64)[None, :]
            draws.append(score(interpolated, b, observed_de).assign(model="interpolated_duplicate"))
    if batches is not None:
        batches = np.asarray(batches).astype(str)
        ctrl = np.flatnonzero(labels == control_label)
        controls = group_means(X[ctrl], batches[ctrl])
        draws.append(_replicate_duplicate(cells, batches, split, score, test, controls, control))
    both = pd.concat(draws, ignore_index=True)
    return both.groupby(["model", "perturbation", "metric"], sort=False)["value"].mean().reset_index()


def _replicate_duplicate(cells: dict[str, np.ndarray], batches: np.ndarray, split: Any, score: Any,
                         test: list[str], controls: tuple[pd.DataFrame, pd.Series], control: np.ndarray
                         ) -> pd.DataFrame:
    """The replicate duplicate (model ``replicate_duplicate``): each perturbation measured in two
    or more batches, its cells in every other batch (sorted by name) against the rest, each side
    centred on the control cells of its own batches (a replicate brings its own controls), so the
    batch shift is not scored as error; the DE-call metrics are left out (their tests use the
    pooled control). NaN for perturbations seen in one batch only or without control cells in a
    side's batches; needs two such perturbations (the rank metrics compare)."""
    means, counts = controls
    halves, shifts = {}, {}
    for p in test:
        seen = np.unique(batches[cells[p]])
        sides = (seen[::2], seen[1::2])
        if len(seen) < 2 or any(counts.reindex(s).fillna(0).sum() == 0 for s in sides):
            continue
        first = np.isin(batches[cells[p]], sides[0])
        halves[p] = (cells[p][first], cells[p][~first])
        shifts[p] = [np.average(means.loc[[b for b in s if counts.get(b, 0)]].to_numpy(), axis=0,
                                weights=counts.loc[[b for b in s if counts.get(b, 0)]].to_numpy()) - control
                     for s in sides]
    if len(halves) >= 2:
        a, b, _ = split(halves)
        a = a - np.vstack([shifts[p][0] for p in a.index])
        b = b - np.vstack([shifts[p][1] for p in b.index])
        scored = score(a, b, None)
    else:
        scored = pd.DataFrame(columns=["perturbation", "metric", "value"])
    grid = pd.MultiIndex.from_product([test, sorted(set(scored["metric"])) or []], names=["perturbation", "metric"])
    return scored.set_index(["perturbation", "metric"])["value"].reindex(grid).reset_index().assign(
        model="replicate_duplicate")


def _halves_de(moments: GroupMoments, control: GroupMoments, observed: ObservedDE, test: list[str],
               genes: pd.Index) -> ObservedDE:
    """DE calls of half B (each half tested against the control cells on its own), with half A's
    spread for the calls of A as the duplicate's 'prediction'."""
    row = {g: i for i, g in enumerate(moments.groups)}
    a, b = ([row[f"{p}\x00{h}"] for p in test] for h in "ab")
    c = 0
    test_a = welch_t(moments.mean[a], moments.var[a], moments.n[a, None], control.mean[c], control.var[c], control.n[c])
    test_b = welch_t(moments.mean[b], moments.var[b], moments.n[b, None], control.mean[c], control.var[c], control.n[c])
    index = pd.Index(test, name="perturbation")
    tested = observed.tested.loc[index, genes]
    frame = functools.partial(pd.DataFrame, index=index, columns=genes)
    lfc_b = log2_fold_change(moments.mean[b], control.mean[c], observed.pseudocount)
    return observed._replace(pval=frame(test_b.p), logfoldchange=frame(lfc_b), tested=tested, se=frame(test_a.se),
                             df=frame(test_a.df), sampling_var=frame(moments.var[b] / moments.n[b, None]),
                             own=observed.own.loc[index, genes]).with_adjusted()


def _best(group: pd.DataFrame, rows: pd.Series, sign: float) -> pd.Series | None:
    """The row with the best oriented mean among `rows` of `group`, or None."""
    chosen = group[rows.loc[group.index]].dropna(subset=["mean"])
    return None if chosen.empty else chosen.loc[(sign * chosen["mean"]).idxmax()]


def _se(row: pd.Series | None) -> float:
    if row is None or not np.isfinite(row["sd"]) or row["n_splits"] < 2:
        return 0.0
    return float(row["sd"]) / np.sqrt(row["n_splits"])


def add_bounds(board: pd.DataFrame, floors: set[str], shortcuts: set[str] = frozenset(),
               ceiling_model: str = "ceiling") -> pd.DataFrame:
    """Add the bounds of each dataset x metric to the leaderboard rows.

    `board` has one row per dataset x model x embedding x metric with `mean`, `sd` and `n_splits`
    (over folds x seeds). Floors are the rows whose model is in `floors` or whose embedding is
    `random`; shortcuts are the rows whose model is in `shortcuts`. Added columns, oriented by the
    metric's direction (a positive gap is room to improve):

    * best_floor, best_shortcut, ceiling: the bounds' means;
    * gap = ceiling − best floor (sign-flipped for lower-is-better metrics) and gap_se, its
      standard error over splits;
    * dynamic_range = gap / (perfect − best floor): the share of the metric's remaining range
      that the experiment's noise leaves room for (Miller et al.'s dynamic range fraction);
    * fraction_of_gap = (mean − best floor) / gap, only where the gap exceeds its noise;
    * gap_status: ``ok``, or why fraction_of_gap is undefined (for the dataset x task x metric, or a row
      without a defined value), or that the row lies outside [floor, ceiling].
    """
    board = board.copy()
    is_floor = board["model"].isin(floors) | (board["embedding"] == "random")
    is_shortcut = board["model"].isin(shortcuts)
    higher_is_better, perfect = directions(), perfect_scores()
    columns = {c: pd.Series(np.nan, index=board.index) for c in
               ("best_floor", "best_shortcut", "ceiling", "gap", "gap_se", "dynamic_range", "fraction_of_gap")}
    status = pd.Series("", index=board.index, dtype=object)
    for (_, _, metric), group in board.groupby(["dataset", "task", "metric"]):
        sign = 1.0 if higher_is_better.get(metric, True) else -1.0
        floor = _best(group, is_floor, sign)
        shortcut = _best(group, is_shortcut, sign)
        ceiling = _best(group, board["model"] == ceiling_model, sign)
        idx = group.index
        columns["best_floor"][idx] = np.nan if floor is None else floor["mean"]
        columns["best_shortcut"][idx] = np.nan if shortcut is None else shortcut["mean"]
        columns["ceiling"][idx] = np.nan if ceiling is None else ceiling["mean"]
        if floor is None or ceiling is None:
            status[idx] = "no ceiling" if ceiling is None else "no floor"
            continue
        gap = sign * (ceiling["mean"] - floor["mean"])
        gap_se = float(np.hypot(_se(ceiling), _se(floor)))
        room = sign * (perfect.get(metric, np.nan) - floor["mean"])
        columns["gap"][idx], columns["gap_se"][idx] = gap, gap_se
        columns["dynamic_range"][idx] = gap / room if room > 0 else np.nan
        if gap <= 0:
            status[idx] = "ceiling not above the best floor"
        elif gap <= GAP_NOISE_SE * gap_se:
            status[idx] = f"floor-to-ceiling gap within noise (< {GAP_NOISE_SE:g} SE)"
        else:
            fraction = sign * (group["mean"] - floor["mean"]) / gap
            columns["fraction_of_gap"][idx] = fraction
            status[idx] = np.select([fraction > 1, fraction < 0, fraction.isna()], [ABOVE_CEILING, BELOW_FLOOR, NO_VALUE],
                                    OK)
    for name, values in columns.items():
        board[name] = values
    board["gap_status"] = status
    return board
