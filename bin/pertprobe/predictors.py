"""Response predictors for unseen perturbations.

A predictor sees only `TrainingData` (training perturbations' pseudobulk and the control mean)
plus the labels and targets of the test perturbations, never their observed profiles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .pseudobulk import Pseudobulk


@dataclass(frozen=True)
class TrainingData:
    """What a predictor may learn from: training pseudobulk, cell counts and the control mean."""

    means: pd.DataFrame  # training perturbations x genes
    n_cells: pd.Series
    control: np.ndarray
    targets: dict[str, list[str]]  # every perturbation's measured target genes (labels are not data)
    perturbation_type: str

    @classmethod
    def from_pseudobulk(cls, pb: Pseudobulk, train: list[str]) -> TrainingData:
        unknown = sorted(set(train) - set(pb.perturbations))
        if unknown:
            raise ValueError(f"training perturbations not in the pseudobulk: {unknown[:5]}")
        return cls(means=pb.means.loc[train].copy(), n_cells=pb.n_cells.loc[train].copy(),
                   control=pb.control.copy(), targets=pb.targets, perturbation_type=pb.perturbation_type)

    @property
    def genes(self) -> pd.Index:
        return self.means.columns


Predictor = Callable[[TrainingData, list[str]], np.ndarray]


def no_change(train: TrainingData, test: list[str]) -> np.ndarray:
    """Predict the control mean for every perturbation (Δ = 0)."""
    return np.tile(train.control, (len(test), 1))


def perturbed_mean(train: TrainingData) -> np.ndarray:
    """Mean over all perturbed training cells (each perturbation weighted by its number of cells)."""
    w = train.n_cells.to_numpy(dtype=np.float64)
    return (train.means.to_numpy(dtype=np.float64) * w[:, None]).sum(axis=0) / w.sum()


def mean(train: TrainingData, test: list[str]) -> np.ndarray:
    """The 'mean model' of the simple-controls study: the perturbed-cell training mean for everyone."""
    return np.tile(perturbed_mean(train), (len(test), 1))


def crispr_informed_mean(train: TrainingData, test: list[str]) -> np.ndarray:
    """Training mean, with each measured target set to 0 (CRISPRi/KO) or doubled (CRISPRa).

    Drug perturbations have no target gene, so this reduces to `mean` for them.
    """
    base = perturbed_mean(train)
    out = np.tile(base, (len(test), 1))
    col = {g: i for i, g in enumerate(train.genes)}
    for row, pert in enumerate(test):
        for gene in train.targets.get(pert, []):
            j = col[gene]
            if train.perturbation_type in ("CRISPRi", "KO"):
                out[row, j] = 0.0
            elif train.perturbation_type == "CRISPRa":
                out[row, j] = 2.0 * base[j]
    return out


PREDICTORS: dict[str, Predictor] = {
    "no_change": no_change,
    "mean": mean,
    "crispr_informed_mean": crispr_informed_mean,
}


def predict(name: str, pb: Pseudobulk, train: list[str], test: list[str]) -> pd.DataFrame:
    """Predicted pseudobulk (test perturbations x genes) of predictor `name` trained on `train`."""
    if name not in PREDICTORS:
        raise ValueError(f"unknown predictor {name!r}; available: {', '.join(PREDICTORS)}")
    overlap = sorted(set(train) & set(test))
    if overlap:
        raise ValueError(f"perturbations in both train and test: {overlap[:5]}")
    data = TrainingData.from_pseudobulk(pb, train)
    values = PREDICTORS[name](data, list(test))
    return pd.DataFrame(values, index=pd.Index(test, name="perturbation"), columns=pb.genes)
