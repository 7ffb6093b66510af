"""Batch-effect reduction metrics of a cell embedding, computed by scib-metrics (normalized as
scib-metrics does: all in [0, 1], higher = better mixed), with perturbations as the labels."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def use_compile_cache(directory: str | Path) -> None:
    """Keep JAX's compiled kernels in `directory` so that later processes (the next embedding's task)
    reuse them instead of recompiling. Only compilation is cached; results are unchanged."""
    import jax

    Path(directory).mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # scib-metrics compiles many small kernels
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def exact_neighbors(values: np.ndarray, n_neighbors: int):
    """Exact Euclidean k nearest neighbours (each cell's own index first) as scib-metrics input."""
    from scib_metrics.nearest_neighbors import NeighborsResults
    from sklearn.neighbors import NearestNeighbors

    k = min(n_neighbors, len(values))
    distances, indices = NearestNeighbors(n_neighbors=k).fit(values).kneighbors(values)
    return NeighborsResults(indices=indices, distances=distances)


def _exact_diffusion_neighbors(values: np.ndarray, n_neighbors: int, random_state: int = 0, n_jobs: int = 1):
    """Drop-in for scib-metrics' pynndescent inside kBET's diffusion-map neighbours: exact kNN."""
    return exact_neighbors(values, n_neighbors)


def _seeded_eigsh(eigsh: Callable[..., Any]) -> Callable[..., Any]:
    """`eigsh` with a fixed start vector: ARPACK otherwise draws it from a generator whose state
    carries over between calls in a process, so the same matrix gives different eigenvectors (in
    the last bits, enough to reorder near-tied neighbours and move kBET by ~0.006)."""

    def seeded(matrix: Any, k: int = 6, **kwargs: Any) -> Any:
        kwargs.setdefault("v0", np.random.default_rng(0).uniform(-1.0, 1.0, matrix.shape[0]))
        return eigsh(matrix, k=k, **kwargs)

    return seeded


def kbet(neighbors, batch: np.ndarray, labels: np.ndarray) -> float:
    """scib-metrics' kBET per label, made deterministic: exact neighbours in each label's
    diffusion-map embedding, and a fixed ARPACK start vector for that embedding.

    scib-metrics approximates those neighbours with pynndescent, which is randomized and compiles
    ~50 s of numba code in every process; exact neighbours on one label's cells are cheap and what
    the approximation stands for. Its diffusion map calls `scipy.sparse.linalg.eigsh` without a
    start vector (see `_seeded_eigsh`). Both are replaced only for the duration of the call.
    """
    from unittest import mock

    import scib_metrics
    import scipy.sparse.linalg
    from scib_metrics import nearest_neighbors

    with mock.patch.object(nearest_neighbors, "pynndescent", _exact_diffusion_neighbors), \
            mock.patch.object(scipy.sparse.linalg, "eigsh", _seeded_eigsh(scipy.sparse.linalg.eigsh)):
        return float(scib_metrics.kbet_per_label(neighbors, batch, labels))


def batch_metrics(values: np.ndarray, batch: np.ndarray, labels: np.ndarray, n_neighbors: int = 90,
                  max_cells: int = 20000, seed: int = 0) -> dict[str, float]:
    """iLISI (scaled), kBET per label, silhouette batch and graph connectivity. Cells are subsampled
    (seeded) to `max_cells`. With a single batch the metrics are undefined (NaN)."""
    batch = np.asarray(batch).astype(str)
    labels = np.asarray(labels).astype(str)
    if len(np.unique(batch)) < 2:
        return {"ilisi": np.nan, "kbet": np.nan, "silhouette_batch": np.nan, "graph_connectivity": np.nan}
    if len(values) > max_cells:
        keep = np.sort(np.random.default_rng(seed).choice(len(values), size=max_cells, replace=False))
        values, batch, labels = values[keep], batch[keep], labels[keep]
    import scib_metrics

    values = np.asarray(values, dtype=np.float32)
    neighbors = exact_neighbors(values, n_neighbors)
    return {
        "ilisi": float(scib_metrics.ilisi_knn(neighbors, batch, scale=True)),
        "kbet": kbet(neighbors, batch, labels),
        "silhouette_batch": float(scib_metrics.silhouette_batch(values, labels, batch, rescale=True)),
        "graph_connectivity": float(scib_metrics.graph_connectivity(neighbors, labels)),
    }
