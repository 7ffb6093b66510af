"""Align cell embeddings on control cells before aggregation (the "A" of EFAAR).

Definitions follow Celik et al. 2024 (EFAAR, recursionpharma/EFAAR_benchmarking `efaar.py`);
see docs/metrics.md for the one deliberate difference in TVN.
"""

from __future__ import annotations

import numpy as np

from ..registry import get, register

_EPS = 1e-8
DOCS = "docs/metrics.md#alignment-pertprobecellsalignment-efaar-align"
EFAAR = "Celik et al. 2024 (EFAAR)"


def alignment(name: str, description: str, profiles: tuple[str, ...] = ("full",)):
    """Register an alignment: f(values, batch, is_control) -> aligned float64 values."""
    return register("alignment", name, docs=DOCS, source=EFAAR, description=description, profiles=profiles)


@alignment("none", "the embedding as it is", ("minimal", "paper", "full"))
def no_alignment(values: np.ndarray, batch: np.ndarray, is_control: np.ndarray) -> np.ndarray:
    return values.copy()


def _batch_masks(batch: np.ndarray) -> list[np.ndarray]:
    return [batch == b for b in np.unique(batch)]


def _control_stats(values: np.ndarray, controls: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    if controls.sum() < 2:
        raise ValueError(f"alignment needs at least two control cells per batch ({where})")
    ref = values[controls]
    return ref.mean(axis=0), ref.std(axis=0)


def center(values: np.ndarray, batch: np.ndarray, is_control: np.ndarray, scale: bool = False) -> np.ndarray:
    """Per batch: subtract the mean of that batch's control cells (and divide by their sd if `scale`)."""
    out = np.empty_like(values, dtype=np.float64)
    for mask in _batch_masks(batch):
        mean, sd = _control_stats(values, mask & is_control, f"batch {batch[mask][0]!r}")
        out[mask] = values[mask] - mean
        if scale:
            out[mask] /= np.maximum(sd, _EPS)
    return out


@alignment("center", "per batch, minus the mean of the batch's control cells", ("minimal", "paper", "full"))
def center_on_controls(values: np.ndarray, batch: np.ndarray, is_control: np.ndarray) -> np.ndarray:
    return center(values, batch, is_control)


@alignment("center_scale", "per batch, centred and scaled by the batch's control cells", ("paper", "full"))
def center_scale_on_controls(values: np.ndarray, batch: np.ndarray, is_control: np.ndarray) -> np.ndarray:
    return center(values, batch, is_control, scale=True)


def _inverse_sqrt(cov: np.ndarray) -> np.ndarray:
    eigval, eigvec = np.linalg.eigh(cov)
    return (eigvec / np.sqrt(np.maximum(eigval, _EPS))) @ eigvec.T


@alignment("tvn", "typical variation normalization on control cells", ("paper", "full"))
def tvn(values: np.ndarray, batch: np.ndarray, is_control: np.ndarray, ridge: float = 0.5) -> np.ndarray:
    """Typical variation normalization: centre-scale on all controls, rotate onto the controls'
    principal axes and centre-scale again, then per batch centre on the batch's controls and
    whiten with the inverse square root of their covariance (+ `ridge` * I, as EFAAR)."""
    everything = np.ones(len(values), dtype=bool)
    x = center(values, everything, is_control, scale=True)
    ctrl = x[is_control]
    _, _, vt = np.linalg.svd(ctrl - ctrl.mean(axis=0), full_matrices=False)
    x = center(x @ vt.T, everything, is_control, scale=True)
    out = np.empty_like(x)
    for mask in _batch_masks(batch):
        ref = x[mask & is_control]
        cov = np.cov(ref, rowvar=False, ddof=1).reshape(x.shape[1], x.shape[1]) + ridge * np.eye(x.shape[1])
        out[mask] = (x[mask] - ref.mean(axis=0)) @ _inverse_sqrt(cov)
    return out


def align(values: np.ndarray, batch: np.ndarray, is_control: np.ndarray, method: str) -> np.ndarray:
    """Apply the registered alignment `method` to a cells x d embedding (float64 result)."""
    func = get("alignment", method).func
    return func(np.asarray(values, dtype=np.float64), np.asarray(batch), np.asarray(is_control, dtype=bool))
