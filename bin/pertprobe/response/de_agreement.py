"""The Virtual Cell Challenge 2026 set (cell-eval2's ``vcc2026`` preset) on pseudobulk predictions,
the metrics that read the observed DE table: significant-gene Jaccard, direction fidelity,
direction reach, the normalised log-fold-change MAE and the noise-corrected MSE (definitions,
sources and differences in docs/metrics.md).

The observed side is the PREPROCESS DE table (Welch t-test against control, BH over the tested
genes). A pseudobulk prediction has no cells, so its DE calls are those the same test would make if
the perturbation's cells had the predicted mean and the observed spread: ``t = (pred − ctrl) / se``
with the observed standard error and Welch degrees of freedom, BH over the same tested genes, and
the log fold-change with the same pseudocount. Each perturbation's own targets are left out on
both sides, as cell-eval2 does.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from ..data.de import bh_adjust, de_gene_sets, de_wide, interpolation_weights, log2_fold_change
from ..io import read_table, read_table_metadata
from .metrics import NOISE_MATCHED, PERFECT, Profiles, metric

VCC2026 = "Virtual Cell Challenge 2026 (cell-eval2 0.20 `vcc2026`)"
REACH_PURITY = 0.9  # direction reach: the deepest prefix with at least this sign accuracy
MIN_NMAE_GENES = 10  # lfc_nmae needs this many significant observed genes


class DECalls(NamedTuple):
    """One side's DE calls for each perturbation (rows) and gene: log2 fold-change, p, adjusted p
    and significance (tested and adjusted p below alpha)."""

    lfc: np.ndarray
    p: np.ndarray
    p_adj: np.ndarray
    significant: np.ndarray


class ObservedDE(NamedTuple):
    """The observed DE table as perturbations x genes frames, with its settings and own targets.
    Both sides' p-values are BH-adjusted over the table's (the evaluated) genes, so the observation
    itself makes exactly the observed calls (`pval_adj`, by `with_adjusted`)."""

    pval: pd.DataFrame
    pval_adj: pd.DataFrame
    logfoldchange: pd.DataFrame
    tested: pd.DataFrame
    se: pd.DataFrame
    df: pd.DataFrame
    sampling_var: pd.DataFrame  # the sampling variance of each observed mean (v / n)
    own: pd.DataFrame  # the perturbation's own measured targets
    alpha: float
    pseudocount: float

    @classmethod
    def from_table(cls, de: pd.DataFrame, targets: dict[str, list[str]], alpha: float,
                   pseudocount: float) -> ObservedDE:
        """From a PREPROCESS `de_table` (long) and the perturbations' measured targets."""
        return cls.from_wide(de_wide(de), targets, alpha, pseudocount)

    @classmethod
    def from_wide(cls, frames: dict[str, pd.DataFrame], targets: dict[str, list[str]], alpha: float,
                  pseudocount: float) -> ObservedDE:
        """From `de_wide` frames and the perturbations' measured targets."""
        wide = {c: frames[c] for c in ("pval", "logfoldchange", "tested", "se", "df", "sampling_var")}
        index, columns = wide["pval"].index, wide["pval"].columns
        own = pd.DataFrame(False, index=index, columns=columns)
        for p in index:
            own.loc[p, [g for g in targets.get(p, []) if g in columns]] = True
        wide["tested"] = wide["tested"].astype(bool)
        return cls(**wide, pval_adj=wide["pval"], own=own, alpha=alpha, pseudocount=pseudocount).with_adjusted()

    def with_adjusted(self) -> ObservedDE:
        """The same table with `pval_adj` recomputed from `pval` over its tested genes."""
        adjusted = bh_adjust(self.pval.to_numpy(), self.tested.to_numpy(dtype=bool))
        return self._replace(pval_adj=pd.DataFrame(adjusted, index=self.pval.index, columns=self.pval.columns))

    def align(self, index: pd.Index, columns: pd.Index) -> AlignedDE:
        """Arrays for these perturbations and genes, in this order."""
        pick = {name: getattr(self, name).loc[index, columns].to_numpy()
                for name in ("pval", "pval_adj", "logfoldchange", "tested", "se", "df", "sampling_var", "own")}
        tested, p_adj = pick["tested"].astype(bool), pick["pval_adj"]
        significant = tested & (np.nan_to_num(p_adj, nan=1.0) < self.alpha)
        real = DECalls(pick["logfoldchange"], pick["pval"], p_adj, significant)
        rank = np.argsort(np.argsort(np.asarray(columns, dtype=str), kind="stable"), kind="stable")
        control_var = np.maximum(pick["se"] ** 2 - pick["sampling_var"], 0.0)  # se² = v_p/n_p + v_c/n_c
        return AlignedDE(real, tested, pick["se"], pick["df"], pick["own"].astype(bool), self.alpha,
                         self.pseudocount, rank, pick["sampling_var"], control_var)


class AlignedDE(NamedTuple):
    """The observed calls and what a prediction's calls are computed with, aligned to its rows."""

    real: DECalls
    tested: np.ndarray
    se: np.ndarray
    df: np.ndarray
    own: np.ndarray
    alpha: float
    pseudocount: float
    gene_rank: np.ndarray  # each gene's position in name order (the last tie-break of reach)
    sampling_var: np.ndarray  # of each observed mean
    control_var: np.ndarray  # of the control mean (the same in every row)

    def predicted(self, pred: np.ndarray, control: np.ndarray) -> DECalls:
        """The DE calls of a predicted mean profile, with the observed spread (module docstring)."""
        lfc = log2_fold_change(pred, control, self.pseudocount)
        diff = pred - control
        with np.errstate(invalid="ignore", divide="ignore"):
            t = np.where(self.se > 0, diff / np.where(self.se > 0, self.se, 1.0), 0.0)
        p = np.where(self.se > 0, 2 * stats.t.sf(np.abs(t), self.df), 1.0)
        p_adj = bh_adjust(p, self.tested)
        return DECalls(lfc, p, p_adj, self.tested & (np.nan_to_num(p_adj, nan=1.0) < self.alpha))


class DETable(NamedTuple):
    """A PREPROCESS DE table read once, in the forms the metrics and anchors take."""

    de_genes: dict[str, list[str]]
    weights: pd.DataFrame  # Miller weights
    interpolation: pd.DataFrame  # 1 − adjusted p, the interpolated duplicate's share
    observed: ObservedDE


def read_de_table(path: str, targets: dict[str, list[str]]) -> DETable:
    """Read `PREFIX.de.parquet` and its stored settings; one pivot serves every statistic."""
    long = read_table(path).reset_index()
    wide = de_wide(long)
    return DETable(de_gene_sets(long), wide["weight"], interpolation_weights(wide["pval_adj"]),
                   ObservedDE.from_wide(wide, targets, **de_settings(read_table_metadata(path))))


def de_settings(metadata: dict) -> dict[str, float]:
    """`alpha` and `pseudocount` from the DE table's stored settings (`DEConfig`)."""
    missing = {"alpha", "pseudocount"} - set(metadata)
    if missing:
        raise ValueError(f"the DE table lacks its settings {sorted(missing)}; rerun PREPROCESS with this version")
    return {"alpha": float(metadata["alpha"]), "pseudocount": float(metadata["pseudocount"])}


def sig_jaccard(real: DECalls, pred: DECalls, own: np.ndarray) -> np.ndarray:
    """|R ∩ P| / |R ∪ P| of the significant genes, own targets left out; 1 where both are empty."""
    r, p = real.significant & ~own, pred.significant & ~own
    union = (r | p).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, (r & p).sum(axis=1) / np.maximum(union, 1), 1.0)


def _adjudicable(real: DECalls) -> np.ndarray:
    """Genes whose observed direction is defined (a non-zero, non-NaN log fold-change)."""
    return ~np.isnan(real.lfc) & (real.lfc != 0)


def _agrees(real: DECalls, pred: DECalls) -> np.ndarray:
    """Same non-zero sign of the log fold-change on both sides."""
    return (np.sign(pred.lfc) == np.sign(real.lfc)) & (pred.lfc != 0) & ~np.isnan(pred.lfc)


def direction_fidelity(real: DECalls, pred: DECalls, own: np.ndarray) -> np.ndarray:
    """k / max(n_pred, n_real): n_pred predicted-significant genes with a defined observed
    direction, k of them with the observed sign, n_real observed-significant genes; NaN if both
    counts are 0."""
    called = pred.significant & _adjudicable(real) & ~own
    n_pred, k = called.sum(axis=1), (called & _agrees(real, pred)).sum(axis=1)
    n_real = (real.significant & ~own).sum(axis=1)
    denominator = np.maximum(n_pred, n_real)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, k / np.maximum(denominator, 1), np.nan)


def direction_reach(real: DECalls, pred: DECalls, own: np.ndarray, gene_rank: np.ndarray,
                    purity: float = REACH_PURITY) -> np.ndarray:
    """k*/n_real: the observed-significant genes, ordered by the prediction's confidence
    (significant first, then adjusted p, p, larger |logFC|, name), are walked counting only genes
    with a defined observed direction; k* is the deepest count whose share of sign agreements is
    at least `purity` (0 if none). NaN without observed-significant genes."""
    pool = real.significant & ~own
    adjudicable, agrees = _adjudicable(real), _agrees(real, pred)
    out = np.full(len(pool), np.nan)
    for row in np.flatnonzero(pool.any(axis=1)):
        genes = np.flatnonzero(pool[row])
        p_adj = np.nan_to_num(pred.p_adj[row, genes], nan=np.inf)
        p = np.nan_to_num(pred.p[row, genes], nan=np.inf)
        size = np.abs(np.nan_to_num(pred.lfc[row, genes], nan=-np.inf))
        order = np.lexsort((gene_rank[genes], -size, p, p_adj, ~pred.significant[row, genes]))
        walked = genes[order][adjudicable[row, genes[order]]]
        hits = np.cumsum(agrees[row, walked])
        depth = np.arange(1, len(walked) + 1)
        pure = np.flatnonzero(hits >= purity * depth - 1e-12)
        out[row] = (depth[pure[-1]] if len(pure) else 0) / len(genes)
    return out


def lfc_nmae(real: DECalls, pred: DECalls, own: np.ndarray, min_genes: int = MIN_NMAE_GENES) -> np.ndarray:
    """Σ|lfc_pred − lfc_real| / Σ|lfc_real| over the observed-significant genes with a finite
    observed log fold-change (own targets left out; a non-finite prediction counts as 0); NaN
    with fewer than `min_genes` such genes or a zero denominator. Predicting no change scores 1."""
    gate = real.significant & np.isfinite(real.lfc) & ~own
    predicted = np.where(np.isfinite(pred.lfc), pred.lfc, 0.0)
    error = np.where(gate, np.abs(predicted - np.nan_to_num(real.lfc)), 0.0).sum(axis=1)
    scale = np.where(gate, np.abs(np.nan_to_num(real.lfc)), 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((gate.sum(axis=1) >= min_genes) & (scale > 0), error / np.where(scale > 0, scale, 1.0), np.nan)


def _calls(x: Profiles) -> tuple[DECalls, DECalls, AlignedDE]:
    """Observed and predicted calls (the latter computed once per split) and the aligned table."""
    de = x.observed_de
    return de.real, x.derived("predicted_de", lambda: de.predicted(x.P, x.control)), de


@metric("de_sig_jaccard", True, "Jaccard index of the predicted and observed significant genes", VCC2026,
        ("paper", "full"), needs=("observed_de",), ceiling_method=PERFECT)
def de_sig_jaccard(x: Profiles) -> np.ndarray:
    real, pred, de = _calls(x)
    return sig_jaccard(real, pred, de.own)


@metric("de_direction_fidelity", True, "signed agreement of the significant genes: k / max(n_pred, n_real)",
        VCC2026, ("paper", "full"), needs=("observed_de",), ceiling_method=PERFECT)
def de_direction_fidelity(x: Profiles) -> np.ndarray:
    real, pred, de = _calls(x)
    return direction_fidelity(real, pred, de.own)


@metric("de_direction_reach", True, "share of the observed significant genes reached at ≥ 90% sign accuracy",
        VCC2026, ("paper", "full"), needs=("observed_de",), ceiling_method=PERFECT)
def de_direction_reach(x: Profiles) -> np.ndarray:
    real, pred, de = _calls(x)
    return direction_reach(real, pred, de.own, de.gene_rank)


@metric("de_lfc_nmae", False, "MAE of log2 fold-changes on the significant genes over their mean |logFC|",
        VCC2026, ("paper", "full"), needs=("observed_de",), ceiling_method=PERFECT)
def de_lfc_nmae(x: Profiles) -> np.ndarray:
    real, pred, de = _calls(x)
    return lfc_nmae(real, pred, de.own)


@metric("mse_noise_corrected", False, "MSE minus the observation's own sampling noise, over the split's noise-corrected "
        "effect size (0 for the truth, about 1 for the control)", VCC2026, ("paper", "full"), needs=("observed_de",),
        ceiling_method=NOISE_MATCHED)
def mse_noise_corrected(x: Profiles) -> np.ndarray:
    """N_p / mean_q D_q, so that a split's mean is Σ N / Σ D as in cell-eval2: with the own targets
    left out, N_p = (‖pred − obs‖² − C_p)/G and D_q = (‖obs − ctrl‖² − C_q − C_ctrl)/G, C the summed
    sampling variance of a mean profile (v/n per gene, exact for the mean of log-normalized cells).
    E[N_p] is the squared error against the truth; a prediction without cells gets no noise credit.
    NaN where no perturbation of the split responds beyond its noise (mean D ≤ 0)."""
    de = x.observed_de
    keep = ~de.own
    genes = keep.sum(axis=1).astype(np.float64)
    error = (np.where(keep, (x.P - x.O) ** 2, 0.0)).sum(axis=1)
    noise = np.where(keep, de.sampling_var, 0.0).sum(axis=1)
    effect = np.where(keep, x.dO**2, 0.0).sum(axis=1)
    control_noise = np.where(keep, de.control_var, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        numerator = (error - noise) / genes
        scale = np.nanmean((effect - noise - control_noise) / genes)
    return numerator / scale if scale > 0 else np.full(len(numerator), np.nan)
