"""Differential expression of every perturbation against control cells (Welch t-test).

Same statistic as scanpy's ``rank_genes_groups(reference=control, method="t-test")``: per gene,
``t = (m_g − m_c) / sqrt(v_g/n_g + v_c/n_c)`` with unbiased variances, NaN scores set to 0 and
two-sided p-values from Welch's degrees of freedom. All groups are computed at once from group
sums of x, x² and detections (one compiled pass over the stored values) instead of one group at a
time; tests/benchmarks/bench_de.py compares speed and top-gene sets with scanpy.

A gene is *tested* for a perturbation when it is detected in at least `min_fraction` of the
perturbation's cells or of the control cells; p-values are Benjamini–Hochberg adjusted over the
tested genes of each perturbation; DE genes are the tested genes with adjusted p below `alpha`,
ranked by |t|, at most `n_genes` of them (a perturbation may have fewer, or none). Log
fold-changes are scanpy's, ``log2((expm1(m_g) + c) / (expm1(m_c) + c))`` on the mean log-normalized
values m, with a pseudocount c of one normalized count instead of scanpy's 1e-9.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

_CHUNK_CELLS = 50_000


@dataclass(frozen=True)
class DEConfig:
    """How DE genes are called (defaults in docs/metrics.md#de-genes)."""

    n_genes: int = 20
    alpha: float = 0.05  # Benjamini–Hochberg adjusted p below this is significant
    min_fraction: float = 0.1  # tested if detected in this share of the group's or the control's cells
    pseudocount: float = 1.0  # normalized counts added to both sides of the log fold-change


class GroupMoments(NamedTuple):
    """Per group (sorted names): cell counts, means, unbiased variances and detection fractions."""

    groups: np.ndarray
    n: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    detected: np.ndarray


def _csr_group_sums(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, codes: np.ndarray,
                    s0: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> None:
    """Add each row's detections, values and squared values into its group's rows (in place)."""
    for row in range(len(indptr) - 1):
        g = codes[row]
        for k in range(indptr[row], indptr[row + 1]):
            v = np.float64(data[k])
            if v != 0:
                s0[g, indices[k]] += 1.0
            s1[g, indices[k]] += v
            s2[g, indices[k]] += v * v


@functools.cache
def _group_sums_kernel():
    """`_csr_group_sums` compiled with numba (scanpy's own JIT dependency), once per process."""
    import numba

    return numba.njit(nogil=True)(_csr_group_sums)


def group_moments(X: np.ndarray | sp.spmatrix, labels: np.ndarray) -> GroupMoments:
    """Sorted group names, cell counts, means, unbiased variances and detection fractions (float64).

    Sparse input: one compiled pass over the stored values accumulates the group sums of x, x²
    and x ≠ 0 (float64); dense input: indicator-matrix products per chunk of cells.
    """
    labels = np.asarray(labels).astype(str)
    groups, codes = np.unique(labels, return_inverse=True)
    n_groups, n_genes = len(groups), X.shape[1]
    n = np.bincount(codes, minlength=n_groups).astype(np.float64)
    s0, s1, s2 = (np.zeros((n_groups, n_genes)) for _ in range(3))
    if sp.issparse(X):
        X = sp.csr_matrix(X)
        _group_sums_kernel()(X.data, X.indices, X.indptr, codes.astype(np.int64), s0, s1, s2)
    else:
        X = np.asarray(X)
        for start in range(0, X.shape[0], _CHUNK_CELLS):
            stop = min(start + _CHUNK_CELLS, X.shape[0])
            block = X[start:stop].astype(np.float64)
            ind = sp.csr_matrix((np.ones(stop - start), (codes[start:stop], np.arange(stop - start))),
                                shape=(n_groups, stop - start))
            s0 += ind @ (block != 0).astype(np.float64)
            s1 += ind @ block
            s2 += ind @ (block * block)
    mean = s1 / n[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (s2 - n[:, None] * mean**2) / (n[:, None] - 1)
    return GroupMoments(groups, n, mean, np.maximum(var, 0.0), s0 / n[:, None])


class WelchTest(NamedTuple):
    """Welch's t (NaN set to 0, as scanpy does), its two-sided p-value (1 where t is 0 by that
    rule), the standard error of the difference and Welch's degrees of freedom (1 where undefined)."""

    t: np.ndarray
    p: np.ndarray
    se: np.ndarray
    df: np.ndarray


def welch_t(mean_a: np.ndarray, var_a: np.ndarray, n_a: np.ndarray, mean_b: np.ndarray, var_b: np.ndarray,
            n_b: np.ndarray) -> WelchTest:
    """Welch's unequal-variance t-test of a − b from group means, variances and sizes."""
    se2_a, se2_b = var_a / n_a, var_b / n_b
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.sqrt(se2_a + se2_b)
        t = (mean_a - mean_b) / se
        df = (se2_a + se2_b) ** 2 / (se2_a**2 / (n_a - 1) + se2_b**2 / (n_b - 1))
    undefined = np.isnan(t)
    t[undefined] = 0.0
    df = np.where(np.isnan(df), 1.0, df)
    p = 2 * stats.t.sf(np.abs(t), df)
    p[undefined] = 1.0
    return WelchTest(t, p, se, df)


def log2_fold_change(mean: np.ndarray, control: np.ndarray, pseudocount: float) -> np.ndarray:
    """scanpy's log2 fold-change from mean log-normalized values, with a pseudocount in normalized
    counts: log2((expm1(mean) + c) / (expm1(control) + c))."""
    return np.log2((np.expm1(mean) + pseudocount) / (np.expm1(control) + pseudocount))


def bh_adjust(p: np.ndarray, tested: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values per row over its tested entries (NaN elsewhere)."""
    out = np.full(p.shape, np.nan)
    for row in range(p.shape[0]):
        keep = tested[row]
        if keep.any():
            out[row, keep] = stats.false_discovery_control(p[row, keep], method="bh")
    return out


@dataclass
class DEStatistics:
    """Each perturbation against control on every gene (perturbations x genes DataFrames)."""

    score: pd.DataFrame  # Welch t
    se: pd.DataFrame  # standard error of the difference of means
    sampling_var: pd.DataFrame  # v_g / n_g: the sampling variance of the perturbation's mean
    df: pd.DataFrame  # Welch's degrees of freedom
    pval: pd.DataFrame
    pval_adj: pd.DataFrame  # BH over the tested genes; NaN for untested ones
    logfoldchange: pd.DataFrame  # log2 with the pseudocount
    tested: pd.DataFrame  # detected in min_fraction of either group's cells
    n_cells: pd.Series


def de_statistics(X: np.ndarray | sp.spmatrix, labels: np.ndarray, genes: pd.Index, reference: str,
                  config: DEConfig = DEConfig()) -> DEStatistics:
    """Welch test, BH adjustment, expression filter and log fold-change of every group vs `reference`."""
    m = group_moments(X, labels)
    if reference not in m.groups:
        raise ValueError(f"reference group {reference!r} has no cells")
    r = int(np.flatnonzero(m.groups == reference)[0])
    keep = np.flatnonzero(m.groups != reference)
    test = welch_t(m.mean[keep], m.var[keep], m.n[keep, None], m.mean[r], m.var[r], m.n[r])
    tested = (m.detected[keep] >= config.min_fraction) | (m.detected[r] >= config.min_fraction)[None, :]
    lfc = log2_fold_change(m.mean[keep], m.mean[r][None, :], config.pseudocount)
    frame = functools.partial(pd.DataFrame, index=pd.Index(m.groups[keep], name="perturbation"),
                              columns=pd.Index(genes))
    return DEStatistics(frame(test.t), frame(test.se), frame(m.var[keep] / m.n[keep, None]), frame(test.df),
                        frame(test.p), frame(bh_adjust(test.p, tested)), frame(lfc), frame(tested),
                        pd.Series(m.n[keep], index=m.groups[keep], name="n_cells"))


def significant(stats_: DEStatistics, alpha: float) -> pd.DataFrame:
    """Tested genes with adjusted p below `alpha` (boolean perturbations x genes)."""
    return stats_.tested & (stats_.pval_adj.fillna(1.0) < alpha)


def top_de_genes(stats_: DEStatistics, config: DEConfig = DEConfig()) -> pd.DataFrame:
    """Long table of each perturbation's DE genes: significant genes ranked by |t|, at most `n_genes`."""
    sig = significant(stats_, config.alpha).to_numpy()
    t = stats_.score.to_numpy()
    key = np.where(sig, np.abs(t), -1.0)
    k = min(config.n_genes, key.shape[1])
    order = np.argpartition(-key, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(order, np.argsort(-np.take_along_axis(key, order, axis=1), axis=1, kind="stable"), 1)
    rows, cols = np.nonzero(np.take_along_axis(sig, order, axis=1))
    genes = order[rows, cols]

    def pick(frame: pd.DataFrame) -> np.ndarray:
        return frame.to_numpy()[rows, genes]

    return pd.DataFrame({
        "perturbation": stats_.score.index.to_numpy()[rows],
        "rank": cols,
        "gene": stats_.score.columns.to_numpy()[genes],
        "score": pick(stats_.score),
        "logfoldchange": pick(stats_.logfoldchange),
        "pval": pick(stats_.pval),
        "pval_adj": pick(stats_.pval_adj),
    })


def de_counts(stats_: DEStatistics, config: DEConfig = DEConfig()) -> pd.DataFrame:
    """Per perturbation: cells, genes tested, significant genes, and DE genes used (≤ n_genes)."""
    n_sig = significant(stats_, config.alpha).sum(axis=1)
    return pd.DataFrame({"n_cells": stats_.n_cells.astype(int), "n_tested": stats_.tested.sum(axis=1),
                         "n_significant": n_sig, "n_de_genes": np.minimum(n_sig, config.n_genes)},
                        index=pd.Index(stats_.score.index, name="perturbation"))


def rest_weights(X: np.ndarray | sp.spmatrix, labels: np.ndarray, genes: pd.Index, reference: str) -> pd.DataFrame:
    """DEG weights of Miller et al. 2025 (perturbations x genes): each perturbation's |t| against all
    other perturbed cells (scanpy's ``t-test_overestim_var`` with ``reference="rest"``, control cells
    left out), min–max normalized over genes and squared; 0 where every |t| is equal."""
    labels = np.asarray(labels).astype(str)
    perturbed = labels != reference
    m = group_moments(X[np.flatnonzero(perturbed)], labels[perturbed])
    n = m.n[:, None]
    s1, s2 = n * m.mean, (n - 1) * m.var + n * m.mean**2
    n_rest = n.sum() - n
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_rest = (s1.sum(axis=0) - s1) / n_rest
        var_rest = np.maximum((s2.sum(axis=0) - s2 - n_rest * mean_rest**2) / (n_rest - 1), 0.0)
    a = np.abs(welch_t(m.mean, m.var, n, mean_rest, var_rest, n).t)  # the rest's variance over the group's n
    lo, span = a.min(axis=1, keepdims=True), np.ptp(a, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.where(span > 0, (a - lo) / np.where(span > 0, span, 1.0), 0.0) ** 2
    return pd.DataFrame(w, index=pd.Index(m.groups, name="perturbation"), columns=pd.Index(genes))


DE_COLUMNS = ["gene", "rank", "score", "se", "sampling_var", "df", "logfoldchange", "pval", "pval_adj", "tested",
              "weight"]


def de_table(stats: DEStatistics, top: pd.DataFrame, weights: pd.DataFrame) -> pd.DataFrame:
    """Long DE table over the selected genes (`weights.columns`): every perturbation's Welch
    statistics, its rank among its DE genes (-1 for other genes) and its Miller weight."""
    genes = weights.columns
    perts = weights.index
    ranks = top.pivot(index="perturbation", columns="gene", values="rank").reindex(index=perts, columns=genes)
    long = {"perturbation": np.repeat(perts.to_numpy(), len(genes)), "gene": np.tile(genes.to_numpy(), len(perts)),
            "rank": ranks.fillna(-1).to_numpy(dtype=np.int64).ravel()}
    for name in ("score", "se", "sampling_var", "df", "logfoldchange", "pval", "pval_adj", "tested"):
        long[name] = getattr(stats, name).loc[perts, genes].to_numpy().ravel()
    long["weight"] = weights.to_numpy().ravel()
    return pd.DataFrame(long)[["perturbation", *DE_COLUMNS]]


def de_gene_sets(de: pd.DataFrame) -> dict[str, list[str]]:
    """Perturbation -> its DE genes in rank order, from a `de_table` (rows of rank ≥ 0)."""
    ordered = de[de["rank"] >= 0].sort_values(["perturbation", "rank"])
    return {p: list(g) for p, g in ordered.groupby("perturbation", sort=True)["gene"]}


def de_wide(de: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every statistic of a `de_table` (those it has) as a perturbations x genes frame, from one pivot."""
    names = [c for c in DE_COLUMNS[1:] if c in de.columns]
    wide = de.pivot(index="perturbation", columns="gene", values=names)  # object dtype: mixed columns
    return {name: wide[name].astype(de[name].dtype) for name in names}


def interpolation_weights(pval_adj: pd.DataFrame) -> pd.DataFrame:
    """`1 − adjusted p` (0 for untested genes): the interpolated duplicate's per-gene share of the
    technical duplicate (Miller et al. 2025)."""
    return 1.0 - pval_adj.fillna(1.0)


def de_weights(de: pd.DataFrame) -> pd.DataFrame:
    """Perturbations x genes table of Miller weights, from a `de_table`."""
    return de_wide(de)["weight"]
