"""Response-prediction metrics on pseudobulk profiles (definitions and sources in docs/metrics.md)."""

from __future__ import annotations

import numpy as np
import pandas as pd

TIE_TOLERANCE = 1e-10


def _center(a: np.ndarray) -> np.ndarray:
    return a - a.mean(axis=1, keepdims=True)


def rowwise_pearson(pred: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of `pred` with the same row of `obs` (NaN if a row is constant)."""
    p, o = _center(pred), _center(obs)
    denom = np.sqrt((p * p).sum(axis=1) * (o * o).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (p * o).sum(axis=1) / np.where(denom > 0, denom, 1.0), np.nan)


def _unit_rows(a: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(a, axis=1, keepdims=True)
    return np.divide(a, norm, out=np.zeros_like(a), where=norm > 0)


def rank_metric(pred_delta: np.ndarray, obs_delta: np.ndarray) -> np.ndarray:
    """Normalized rank of each perturbation's own prediction among all predictions.

    For perturbation p, all N predictions are ordered by cosine similarity to p's observed Δ; the
    result is the number of other predictions ranked above p's own (ties count one half) over
    N − 1: 0 is perfect, 0.5 is random, and a constant predictor scores exactly 0.5. A zero vector
    has cosine 0 with everything.
    """
    n = pred_delta.shape[0]
    if n < 2:
        return np.full(n, np.nan)
    sims = _unit_rows(obs_delta) @ _unit_rows(pred_delta).T  # sims[p, q] = cos(obs_p, pred_q)
    own = np.diag(sims)[:, None]
    tol = TIE_TOLERANCE * np.maximum(1.0, np.abs(own))
    above = (sims > own + tol).sum(axis=1)
    ties = (np.abs(sims - own) <= tol).sum(axis=1) - 1  # minus p itself
    return (above + 0.5 * ties) / (n - 1)


def response_metrics(pred: pd.DataFrame, obs: pd.DataFrame, control: np.ndarray) -> pd.DataFrame:
    """Per-perturbation metrics (long format: perturbation, metric, value).

    `pred` and `obs` are perturbations x genes with identical index and columns.
    """
    if not pred.index.equals(obs.index) or not pred.columns.equals(obs.columns):
        raise ValueError("prediction and observation must have the same perturbations and genes in the same order")
    p = pred.to_numpy(dtype=np.float64)
    o = obs.to_numpy(dtype=np.float64)
    pd_delta, od_delta = p - control[None, :], o - control[None, :]
    values = {
        "pearson_delta": rowwise_pearson(pd_delta, od_delta),
        "rank_delta": rank_metric(pd_delta, od_delta),
    }
    frames = [pd.DataFrame({"perturbation": pred.index, "metric": m, "value": v}) for m, v in values.items()]
    return pd.concat(frames, ignore_index=True)
