"""Response-prediction metrics on pseudobulk profiles (definitions and sources in docs/metrics.md).

Everything is vectorized over perturbations: one call scores a whole split.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TIE_TOLERANCE = 1e-10
DE_METRICS = ("pearson_de", "pearson_de_delta", "mse_de", "rmse_de", "direction_accuracy_de")
METRICS = ("pearson", "pearson_delta", "mse", "rmse", "l2_delta", "cosine_delta", "rank_delta", "rank_raw",
           "de_overlap_at_k") + DE_METRICS
HIGHER_IS_BETTER = {
    "pearson": True, "pearson_de": True, "pearson_delta": True, "pearson_de_delta": True,
    "mse": False, "rmse": False, "mse_de": False, "rmse_de": False, "l2_delta": False,
    "cosine_delta": True, "rank_delta": False, "rank_raw": False,
    "direction_accuracy_de": True, "de_overlap_at_k": True,
}


def _center(a: np.ndarray) -> np.ndarray:
    return a - a.mean(axis=1, keepdims=True)


def _rowdot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, b)


def _pearson_from_sums(sx, sy, sxy, sxx, syy, n: int) -> np.ndarray:
    """Pearson r from row sums; a row whose variance is at rounding level counts as constant (NaN)."""
    vx, vy = sxx - sx * sx / n, syy - sy * sy / n
    cov = sxy - sx * sy / n
    constant = (vx <= 1e-12 * np.maximum(sxx, 1e-300)) | (vy <= 1e-12 * np.maximum(syy, 1e-300))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(constant, np.nan, cov / np.sqrt(np.abs(vx * vy)))


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


def _de_metrics(P: np.ndarray, O: np.ndarray, dP: np.ndarray, dO: np.ndarray, idx: np.ndarray) -> dict[str, np.ndarray]:
    n, k = idx.shape
    complete = (idx >= 0).all(axis=1)
    safe = np.where(idx >= 0, idx, 0)
    rows = np.arange(n)[:, None]
    p_de, o_de, dp_de, do_de = P[rows, safe], O[rows, safe], dP[rows, safe], dO[rows, safe]
    out = {
        "pearson_de": rowwise_pearson(p_de, o_de),
        "pearson_de_delta": rowwise_pearson(dp_de, do_de),
        "mse_de": ((p_de - o_de) ** 2).mean(axis=1),
        "direction_accuracy_de": (np.sign(dp_de) == np.sign(do_de)).mean(axis=1),
    }
    out["rmse_de"] = np.sqrt(out["mse_de"])
    return {m: np.where(complete, v, np.nan) for m, v in out.items()}


def response_metrics(pred: pd.DataFrame, obs: pd.DataFrame, control: np.ndarray,
                     de_genes: dict[str, list[str]] | None = None, k: int = 20) -> pd.DataFrame:
    """Per-perturbation metrics as a long table (perturbation, metric, value).

    `pred` and `obs` are perturbations x genes with identical index and columns; `control` is the
    dataset's control mean; `de_genes` maps each perturbation to its top DE genes (DE metrics use
    the first `k`; they are NaN when absent).
    """
    if not pred.index.equals(obs.index) or not pred.columns.equals(obs.columns):
        raise ValueError("prediction and observation must have the same perturbations and genes in the same order")
    P = pred.to_numpy(dtype=np.float64)
    O = obs.to_numpy(dtype=np.float64)
    c = np.asarray(control, dtype=np.float64)[None, :]
    g = P.shape[1]
    dP, dO = P - c, O - c
    D = P - O  # = dP - dO
    sq_err = _rowdot(D, D)
    sdpdo, sdpdp, sdodo = _rowdot(dP, dO), _rowdot(dP, dP), _rowdot(dO, dO)
    sdp, sdo = dP.sum(axis=1), dO.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = np.where((sdpdp > 0) & (sdodo > 0), sdpdo / np.sqrt(sdpdp * sdodo), np.nan)
    values = {
        "pearson": _pearson_from_sums(P.sum(axis=1), O.sum(axis=1), _rowdot(P, O), _rowdot(P, P), _rowdot(O, O), g),
        "pearson_delta": _pearson_from_sums(sdp, sdo, sdpdo, sdpdp, sdodo, g),
        "mse": sq_err / g,
        "rmse": np.sqrt(sq_err / g),
        "l2_delta": np.sqrt(sq_err),
        "cosine_delta": cosine,
        "rank_delta": rank_metric(dP, dO),
        "rank_raw": rank_metric(P, O),
        "de_overlap_at_k": top_k_overlap(dP, dO, k),
    }
    if de_genes is not None:
        values.update(_de_metrics(P, O, dP, dO, _de_index(pred.index, pred.columns, de_genes, k)))
    n = len(pred)
    return pd.DataFrame({
        "perturbation": np.tile(pred.index.to_numpy(), len(values)),
        "metric": np.repeat(list(values), n),
        "value": np.concatenate(list(values.values())),
    })
