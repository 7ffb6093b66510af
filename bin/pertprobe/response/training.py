"""What a predictor may learn from (`TrainingData`) and what it returns (`Prediction`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..data.pseudobulk import Pseudobulk


@dataclass(frozen=True)
class TrainingData:
    """What a predictor may learn from: training pseudobulk, cell counts and the control mean."""

    means: pd.DataFrame  # training perturbations x genes
    n_cells: pd.Series
    control: np.ndarray
    targets: dict[str, list[str]]  # every perturbation's measured target genes (labels are not data)
    perturbation_type: str
    by_batch: pd.DataFrame | None = None  # (perturbation, batch) x genes for training perts and controls
    control_label: str = "control"
    library_size: pd.Series | None = None  # training perturbations' mean total counts per cell

    @classmethod
    def from_pseudobulk(cls, pb: Pseudobulk, train: list[str], by_batch: pd.DataFrame | None = None) -> TrainingData:
        unknown = sorted(set(train) - set(pb.perturbations))
        if unknown:
            raise ValueError(f"training perturbations not in the pseudobulk: {unknown[:5]}")
        if by_batch is not None:
            keep = by_batch.index.get_level_values("perturbation").isin(list(train) + [pb.control_label])
            by_batch = by_batch[keep].copy()
        return cls(means=pb.means.loc[train].copy(), n_cells=pb.n_cells.loc[train].copy(),
                   control=pb.control.copy(), targets=pb.targets, perturbation_type=pb.perturbation_type,
                   by_batch=by_batch, control_label=pb.control_label,
                   library_size=None if pb.library_size is None else pb.library_size.loc[train].copy())

    @property
    def genes(self) -> pd.Index:
        return self.means.columns

    @property
    def deltas(self) -> np.ndarray:
        return self.means.to_numpy(dtype=np.float64) - self.control[None, :]


@dataclass
class Prediction:
    """Predicted test profiles plus what the predictor reports about itself."""

    values: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def perturbed_mean(train: TrainingData) -> np.ndarray:
    """Mean over all perturbed training cells (each perturbation weighted by its number of cells)."""
    w = train.n_cells.to_numpy(dtype=np.float64)
    return (train.means.to_numpy(dtype=np.float64) * w[:, None]).sum(axis=0) / w.sum()


def centroid(pb: Pseudobulk, train: list[str]) -> np.ndarray:
    """The split's reference for centroid metrics: the mean over its perturbed training cells."""
    return perturbed_mean(TrainingData.from_pseudobulk(pb, train))


def tile(vector: np.ndarray, n: int) -> np.ndarray:
    return np.tile(vector, (n, 1))
