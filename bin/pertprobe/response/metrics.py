"""Response-prediction metrics on pseudobulk profiles (definitions and sources in docs/metrics.md).

Each metric is a registered function of `Profiles`, vectorized over perturbations: one call
scores a whole split.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ..registry import entries, register

TIE_TOLERANCE = 1e-10
MIN_DE_GENES_CORRELATION = 3  # DE-gene correlations need this many DE genes
METRIC_KEYS = ["dataset", "task", "split", "seed", "model", "embedding", "perturbation", "metric"]
# fallback: this perturbation got the mean because its embedding was missing; n_fit: the training
# perturbations the model was fitted on (NaN for the bounds)
COVERAGE_COLUMNS = ["fallback", "n_fit"]
METRIC_COLUMNS = [*METRIC_KEYS, "value", *COVERAGE_COLUMNS]
DOCS = "docs/metrics.md#metrics-pertproberesponsemetrics-per-test-perturbation"
GEARS = "GEARS (Roohani et al. 2023)"
MetricFn = Callable[..., np.ndarray]
# How a metric's noise ceiling is estimated (response/bounds.py, docs/metrics.md#bounds).
NOISE_MATCHED = "noise_matched"  # the observation plus a fresh draw of its own noise, scored against it
SPEARMAN_BROWN = "spearman_brown"  # correlations: the split-half value corrected to full depth
PERFECT = "perfect"  # DE calls: no estimate of the truth's score exists; the perfect score bounds it
CEILING_METHODS = (NOISE_MATCHED, SPEARMAN_BROWN, PERFECT)


def _center(a: np.ndarray) -> np.ndarray:
    return a - a.mean(axis=1, keepdims=True)


def _rowdot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, b)


def _pearson_from_sums(sx, sy, sxy, sxx, syy, n: int) -> np.ndarray:
    """Pearson r from row sums; a row whose variance is at rounding level counts as constant (NaN)."""
    vx, vy = sxx - sx * sx / n, syy - sy * sy / n
    cov = sxy - sx * sy / n
    constant = _flat(vx, sxx) | _flat(vy, syy)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(constant, np.nan, cov / np.sqrt(np.abs(vx * vy)))


def _flat(spread: np.ndarray, squares: np.ndarray) -> np.ndarray:
    """Rows whose sum of squared deviations is at rounding level of their sum of squares."""
    return spread <= 1e-12 * np.maximum(squares, 1e-300)


def rowwise_pearson(pred: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of `pred` with the same row of `obs` (NaN if a row is constant)."""
    return rowwise_cosine(_center(pred), _center(obs))


def rowwise_cosine(pred: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows (NaN if either row is zero)."""
    denom = np.sqrt(_rowdot(pred, pred) * _rowdot(obs, obs))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, _rowdot(pred, obs) / np.where(denom > 0, denom, 1.0), np.nan)


def _unique_rows(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of distinct (bit-identical) rows, each row's distinct-row number, and multiplicities.

    Rows are grouped by a random projection, then every grouped row is checked for exact equality
    with its group's first row (a row that differs becomes its own group).
    """
    keys = a @ np.random.default_rng(0).standard_normal(a.shape[1])
    _, first, inv = np.unique(keys, return_index=True, return_inverse=True)
    inv = inv.ravel()
    grouped = np.flatnonzero(first[inv] != np.arange(len(a)))
    first = list(first)
    for i in grouped:
        if not np.array_equal(a[i], a[first[inv[i]]]):
            first.append(i)
            inv[i] = len(first) - 1
    return np.asarray(first), inv, np.bincount(inv, minlength=len(first)).astype(np.float64)


def rank_metric(pred: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """Normalized rank of each perturbation's own prediction among all predictions.

    For perturbation p, all N predictions are ordered by cosine similarity to p's observation;
    the result is the number of other predictions ranked above p's own (ties count one half) over
    N − 1: 0 is perfect, 0.5 is random, and a constant predictor scores exactly 0.5. A zero vector
    has cosine 0 with everything. Bit-identical predictions are scored once, so they tie exactly.
    """
    n = pred.shape[0]
    if n < 2:
        return np.full(n, np.nan)
    keep, inv, counts = _unique_rows(pred)
    uniq = pred[keep]
    norms = np.sqrt(np.outer(_rowdot(obs, obs), _rowdot(uniq, uniq)))
    with np.errstate(invalid="ignore", divide="ignore"):
        sims = np.where(norms > 0, (obs @ uniq.T) / np.where(norms > 0, norms, 1.0), 0.0)  # sims[p, j]
    own = sims[np.arange(n), inv]
    tol = TIE_TOLERANCE * np.maximum(1.0, np.abs(own))[:, None]
    above = (sims > own[:, None] + tol) @ counts
    ties = (np.abs(sims - own[:, None]) <= tol) @ counts - 1  # minus p itself
    return (above + 0.5 * ties) / (n - 1)


def _de_index(perturbations: pd.Index, genes: pd.Index, de_genes: dict[str, list[str]], k: int) -> np.ndarray:
    """n x k matrix of column indices of each perturbation's DE genes (-1 where missing)."""
    names = np.full((len(perturbations), k), "", dtype=object)
    for row, p in enumerate(perturbations):
        listed = de_genes.get(p, [])[:k]
        names[row, : len(listed)] = listed
    return pd.Index(genes).get_indexer(names.ravel()).reshape(len(perturbations), k)


def top_k_overlap(pred_delta: np.ndarray, obs_delta: np.ndarray, k: int) -> np.ndarray:
    """Fraction of the k genes with the largest observed |Δ| that are among the predicted top k."""
    k = min(k, pred_delta.shape[1])
    top_pred = np.argpartition(-np.abs(pred_delta), k - 1, axis=1)[:, :k]
    top_obs = np.argpartition(-np.abs(obs_delta), k - 1, axis=1)[:, :k]
    hits = np.zeros(pred_delta.shape, dtype=bool)
    np.put_along_axis(hits, top_pred, True, axis=1)
    return np.take_along_axis(hits, top_obs, axis=1).mean(axis=1)


class DEGenes(NamedTuple):
    """Each row's values on its own DE genes (perturbations x k, 0 where a row has fewer than k),
    which entries are DE genes, and how many each row has."""

    P: np.ndarray
    O: np.ndarray
    dP: np.ndarray
    dO: np.ndarray
    mask: np.ndarray
    n: np.ndarray

    def mean(self, values: np.ndarray, min_genes: int = 1) -> np.ndarray:
        """Row means of `values` over each row's DE genes; NaN for rows with fewer than `min_genes`."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n >= min_genes, (values * self.mask).sum(axis=1) / self.n, np.nan)

    def pearson(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Pearson r of matching rows over their DE genes; NaN below 3 genes (two points always give ±1)."""
        a, b = a * self.mask, b * self.mask
        r = _pearson_from_sums(a.sum(axis=1), b.sum(axis=1), _rowdot(a, b), _rowdot(a, a), _rowdot(b, b),
                               np.maximum(self.n, 1))
        return np.where(self.n >= MIN_DE_GENES_CORRELATION, r, np.nan)


class Profiles:
    """One split's predicted and observed profiles (perturbations x genes) with the row sums that
    several metrics share, each computed once."""

    def __init__(self, pred: np.ndarray, obs: np.ndarray, control: np.ndarray, de_index: np.ndarray | None, k: int,
                 reference: np.ndarray | None = None, weights: np.ndarray | None = None,
                 observed_de: Any = None):
        self.P, self.O = pred, obs
        c = np.asarray(control, dtype=np.float64)[None, :]
        self.control = c
        self.dP, self.dO = pred - c, obs - c
        self.n_genes = pred.shape[1]
        self.de_index = de_index
        self.k = k
        self.reference = None if reference is None else np.asarray(reference, dtype=np.float64)[None, :]
        self.weights = weights
        self.observed_de = observed_de  # `de_agreement.AlignedDE`
        self._derived: dict[str, Any] = {}

    @cached_property
    def squared_error(self) -> np.ndarray:
        D = self.P - self.O  # = dP - dO
        return _rowdot(D, D)

    @cached_property
    def delta_sums(self) -> tuple[np.ndarray, ...]:
        """Σ dP, Σ dO, Σ dP·dO, Σ dP², Σ dO² per row."""
        dP, dO = self.dP, self.dO
        return dP.sum(axis=1), dO.sum(axis=1), _rowdot(dP, dO), _rowdot(dP, dP), _rowdot(dO, dO)

    def derived(self, key: str, build: Callable[[], Any]) -> Any:
        """A value computed once per split by `build` and shared by the metrics that need it."""
        if key not in self._derived:
            self._derived[key] = build()
        return self._derived[key]

    @cached_property
    def de(self) -> DEGenes:
        """Predicted and observed profiles and Δ on each row's DE genes (up to k)."""
        idx = self.de_index
        mask = idx >= 0
        safe = np.where(mask, idx, 0)
        rows = np.arange(len(idx))[:, None]
        pick = [np.where(mask, a[rows, safe], 0.0) for a in (self.P, self.O, self.dP, self.dO)]
        return DEGenes(*pick, mask, mask.sum(axis=1).astype(np.float64))


def metric(name: str, higher_is_better: bool, description: str, source: str,
           profiles: tuple[str, ...] = ("full",), needs: tuple[str, ...] = (), perfect: float | None = None,
           ceiling_method: str = NOISE_MATCHED) -> Callable[[MetricFn], MetricFn]:
    """Register a response metric: a function of `Profiles` returning one value per perturbation.

    `perfect` is the score of a perfect prediction (default 1 if higher is better, else 0);
    `ceiling_method` names how its noise ceiling is estimated (`CEILING_METHODS`)."""
    if ceiling_method not in CEILING_METHODS:
        raise ValueError(f"metric {name}: ceiling_method must be one of {CEILING_METHODS}")
    return register("metric", name, higher_is_better=higher_is_better, description=description, source=source,
                    docs=DOCS, profiles=profiles, needs=needs, ceiling_method=ceiling_method,
                    perfect=(1.0 if higher_is_better else 0.0) if perfect is None else perfect)


def de_metric(name: str, higher_is_better: bool, description: str, source: str,
              profiles: tuple[str, ...] = ("full",), ceiling_method: str = NOISE_MATCHED) -> Callable[[MetricFn], MetricFn]:
    """Register a metric on each perturbation's DE genes (its first k; fewer where fewer pass)."""

    def decorate(func: MetricFn) -> MetricFn:
        def on_de_genes(x: Profiles) -> np.ndarray:
            return func(x.de)

        on_de_genes.__doc__ = func.__doc__
        metric(name, higher_is_better, description, source, profiles, needs=("de_genes",),
               ceiling_method=ceiling_method)(on_de_genes)
        return func

    return decorate


@metric("pearson", True, "Pearson r over genes of predicted and observed profiles", GEARS, ("paper", "full"),
        ceiling_method=SPEARMAN_BROWN)
def pearson(x: Profiles) -> np.ndarray:
    return _pearson_from_sums(x.P.sum(axis=1), x.O.sum(axis=1), _rowdot(x.P, x.O), _rowdot(x.P, x.P),
                              _rowdot(x.O, x.O), x.n_genes)


@metric("pearson_delta", True, "Pearson r of predicted and observed Δ", "scGPT; 'simple controls' study",
        ("minimal", "paper", "full"), ceiling_method=SPEARMAN_BROWN)
def pearson_delta(x: Profiles) -> np.ndarray:
    return _pearson_from_sums(*x.delta_sums, x.n_genes)


@metric("mse", False, "mean squared error over all genes", "GEARS, PerturBench", ("minimal", "paper", "full"))
def mse(x: Profiles) -> np.ndarray:
    return x.squared_error / x.n_genes


@metric("rmse", False, "root mean squared error over all genes", "GEARS, PerturBench")
def rmse(x: Profiles) -> np.ndarray:
    return np.sqrt(x.squared_error / x.n_genes)


@metric("l2_delta", False, "Euclidean distance of predicted and observed Δ", "PerturBench (RMSE/L2)")
def l2_delta(x: Profiles) -> np.ndarray:
    return np.sqrt(x.squared_error)


@metric("cosine_delta", True, "cosine similarity of predicted and observed Δ", "PerturBench", ("paper", "full"),
        ceiling_method=SPEARMAN_BROWN)
def cosine_delta(x: Profiles) -> np.ndarray:
    _, _, sdpdo, sdpdp, sdodo = x.delta_sums
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((sdpdp > 0) & (sdodo > 0), sdpdo / np.sqrt(sdpdp * sdodo), np.nan)


@metric("pearson_delta_centroid", True,
        "Pearson r of predicted and observed profiles minus the perturbed training mean (0 without "
        "perturbation-specific signal)", "Systema (Viñas Torné et al., Nat. Biotechnol. 2025)",
        ("minimal", "paper", "full"), needs=("reference",), ceiling_method=SPEARMAN_BROWN)
def pearson_delta_centroid(x: Profiles) -> np.ndarray:
    """Pearson Δ against the centroid of the perturbed training cells instead of control: the shift
    every perturbation shares scores nothing. A prediction equal to the centroid up to a constant
    (the `mean` floor) scores 0; NaN only where the observation itself is constant."""
    rP, rO = x.P - x.reference, x.O - x.reference
    sp, so, spp, soo, n = rP.sum(axis=1), rO.sum(axis=1), _rowdot(rP, rP), _rowdot(rO, rO), x.n_genes
    r = _pearson_from_sums(sp, so, _rowdot(rP, rO), spp, soo, n)
    no_signal = _flat(spp - sp * sp / n, spp) & ~_flat(soo - so * so / n, soo)
    return np.where(no_signal, 0.0, r)


@metric("rank_delta", False, "rank of a perturbation's own prediction by cosine of Δ (0 best, 0.5 random)",
        "PerturBench; 'simple controls' study", ("minimal", "paper", "full"))
def rank_delta(x: Profiles) -> np.ndarray:
    return rank_metric(x.dP, x.dO)


@metric("rank_raw", False, "the rank metric on raw profiles", "'simple controls' study")
def rank_raw(x: Profiles) -> np.ndarray:
    return rank_metric(x.P, x.O)


@metric("de_overlap_at_k", True, "overlap of the predicted and observed top-k genes by |Δ|",
        "PerturBench / cell-eval DE overlap", ("paper", "full"))
def de_overlap_at_k(x: Profiles) -> np.ndarray:
    return top_k_overlap(x.dP, x.dO, x.k)


@de_metric("pearson_de", True, "Pearson r of profiles on the DE genes", GEARS, ("paper", "full"),
           ceiling_method=SPEARMAN_BROWN)
def pearson_de(d: DEGenes) -> np.ndarray:
    return d.pearson(d.P, d.O)


@de_metric("pearson_de_delta", True, "Pearson r of Δ on the DE genes", "scGPT; 'simple controls' study",
           ("minimal", "paper", "full"), ceiling_method=SPEARMAN_BROWN)
def pearson_de_delta(d: DEGenes) -> np.ndarray:
    return d.pearson(d.dP, d.dO)


@de_metric("mse_de", False, "mean squared error on the DE genes", GEARS, ("paper", "full"))
def mse_de(d: DEGenes) -> np.ndarray:
    return d.mean((d.P - d.O) ** 2)


@de_metric("direction_accuracy_de", True, "fraction of DE genes whose predicted Δ has the observed sign", GEARS,
           ("paper", "full"))
def direction_accuracy_de(d: DEGenes) -> np.ndarray:
    return d.mean(np.sign(d.dP) == np.sign(d.dO))


@de_metric("rmse_de", False, "root mean squared error on the DE genes", GEARS)
def rmse_de(d: DEGenes) -> np.ndarray:
    return np.sqrt(mse_de(d))


MILLER = "Miller et al. 2025 (bioRxiv 10.1101/2025.10.20.683304)"


def _weighted(x: Profiles) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights, their row sums (NaN where 0) and the weighted squared error per row."""
    w = x.weights
    total = w.sum(axis=1)
    D = x.P - x.O
    return w, np.where(total > 0, total, np.nan), _rowdot(w, D * D)


@metric("wmse", False, "mean squared error weighted by each gene's DE strength (Miller weights)", MILLER,
        ("minimal", "paper", "full"), needs=("de_weights",))
def wmse(x: Profiles) -> np.ndarray:
    """Σ w (p − o)² / Σ w with w the perturbation's Miller weights (`pertprobe.data.de.rest_weights`)."""
    _, total, error = _weighted(x)
    return error / total


@metric("weighted_r2_delta", True, "R² of Δ over genes, weighted by DE strength (Miller weights)", MILLER,
        ("paper", "full"), needs=("de_weights",))
def weighted_r2_delta(x: Profiles) -> np.ndarray:
    """1 − Σ w (Δo − Δp)² / Σ w (Δo − Δ̄o)², Δ̄o the weighted mean: scikit-learn's `r2_score` over genes
    with `sample_weight=w`; NaN where the weighted observed Δ is constant."""
    w, total, error = _weighted(x)
    centred = x.dO - (_rowdot(w, x.dO) / total)[:, None]
    spread = _rowdot(w, centred * centred)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(_flat(spread, _rowdot(w, x.dO * x.dO)), np.nan, 1.0 - error / spread)


def directions() -> dict[str, bool]:
    """metric -> higher is better, for every registered response metric."""
    return {e.name: bool(e.higher_is_better) for e in entries("metric")}


def ceiling_methods() -> dict[str, str]:
    """metric -> how its noise ceiling is estimated."""
    return {e.name: str(e.ceiling_method) for e in entries("metric")}


def perfect_scores() -> dict[str, float]:
    """metric -> the score of a perfect prediction, for every registered response metric."""
    return {e.name: float(e.perfect) for e in entries("metric")}


def response_metrics(pred: pd.DataFrame, obs: pd.DataFrame, control: np.ndarray,
                     de_genes: dict[str, list[str]] | None = None, k: int = 20,
                     metrics: list[str] | None = None, reference: np.ndarray | None = None,
                     weights: pd.DataFrame | None = None, observed_de: Any = None) -> pd.DataFrame:
    """Per-perturbation metrics as a long table (perturbation, metric, value).

    `pred` and `obs` are perturbations x genes with identical index and columns; `control` is the
    dataset's control mean; `de_genes` maps each perturbation to its top DE genes (DE metrics use
    the first `k`; they are NaN when absent, and left out when `de_genes` is None); `reference` is
    the mean profile of the split's perturbed training cells (centroid metrics; left out when None);
    `weights` holds each perturbation's per-gene Miller weights (rows and columns looked up by name;
    weighted metrics are left out when None); `observed_de` is the observed DE table
    (`de_agreement.ObservedDE`; DE-agreement metrics are left out when None). `metrics` chooses
    registered metrics (default: all).
    """
    if not pred.index.equals(obs.index) or not pred.columns.equals(obs.columns):
        raise ValueError("prediction and observation must have the same perturbations and genes in the same order")
    chosen = set(metrics) if metrics is not None else None
    de_index = _de_index(pred.index, pred.columns, de_genes, k) if de_genes is not None else None
    w = None if weights is None else weights.reindex(index=pred.index, columns=pred.columns).to_numpy(np.float64)
    if w is not None and np.isnan(w).any():
        raise ValueError("weights must cover every predicted perturbation and gene (use the PREPROCESS DE table)")
    aligned = None if observed_de is None else observed_de.align(pred.index, pred.columns)
    x = Profiles(pred.to_numpy(dtype=np.float64), obs.to_numpy(dtype=np.float64), control, de_index, k, reference, w,
                 aligned)
    given = {"de_genes": de_genes is not None, "reference": reference is not None, "de_weights": weights is not None,
             "observed_de": observed_de is not None}
    values = {e.name: e.func(x) for e in entries("metric")
              if (chosen is None or e.name in chosen) and all(given.get(need, True) for need in e.needs)}
    n = len(pred)
    return pd.DataFrame({
        "perturbation": np.tile(pred.index.to_numpy(), len(values)),
        "metric": np.repeat(list(values), n),
        "value": np.concatenate(list(values.values())) if values else np.array([], dtype=np.float64),
    })
