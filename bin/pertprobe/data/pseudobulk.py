"""Pseudobulk profiles: per-perturbation means of log-normalized expression."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..io import read_table, read_table_metadata, write_table


def group_means(X: np.ndarray | sp.spmatrix, labels: np.ndarray) -> tuple[pd.DataFrame, pd.Series]:
    """Mean row of `X` per label (labels sorted) and the number of rows per label."""
    labels = np.asarray(labels).astype(str)
    groups, codes = np.unique(labels, return_inverse=True)
    n = np.bincount(codes, minlength=len(groups))
    indicator = sp.csr_matrix((np.ones(len(codes)), (codes, np.arange(len(codes)))), shape=(len(groups), len(codes)))
    sums = indicator @ X
    sums = sums.toarray() if sp.issparse(sums) else np.asarray(sums)
    means = sums / n[:, None]
    return pd.DataFrame(means, index=pd.Index(groups, name="perturbation")), pd.Series(n, index=groups, name="n_cells")


@dataclass
class Pseudobulk:
    """Per-perturbation mean profiles (control row included) with what each perturbation targets."""

    means: pd.DataFrame
    n_cells: pd.Series
    targets: dict[str, list[str]]
    control_label: str
    perturbation_type: str
    library_size: pd.Series | None = None  # mean total counts per cell, before gene selection

    @property
    def control(self) -> np.ndarray:
        """Mean profile of all control cells."""
        return self.means.loc[self.control_label].to_numpy(dtype=np.float64)

    @property
    def perturbations(self) -> list[str]:
        """All non-control perturbation labels."""
        return [p for p in self.means.index if p != self.control_label]

    @property
    def genes(self) -> pd.Index:
        return self.means.columns

    def save(self, path: str | Path) -> None:
        write_table(self.means, path, metadata={
            "n_cells": {k: int(v) for k, v in self.n_cells.items()},
            "targets": self.targets,
            "control_label": self.control_label,
            "perturbation_type": self.perturbation_type,
            **({} if self.library_size is None else
               {"library_size": {k: float(v) for k, v in self.library_size.items()}}),
        })

    @classmethod
    def load(cls, path: str | Path) -> Pseudobulk:
        meta = read_table_metadata(path)
        means = read_table(path)
        library = meta.get("library_size")
        return cls(means=means, n_cells=pd.Series(meta["n_cells"], name="n_cells").reindex(means.index),
                   targets=meta["targets"], control_label=meta["control_label"],
                   perturbation_type=meta["perturbation_type"],
                   library_size=None if library is None else pd.Series(library, name="library_size").reindex(means.index))
