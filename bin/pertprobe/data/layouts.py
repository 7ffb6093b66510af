"""Readers for the layouts users download, mapped onto the input contract (docs/usage.md#layouts).

A layout names the obs column of perturbation labels, the control label and the gene-symbol column
its files use, and rewrites each label into the contract's form (`A`, `A+B`, the control label).
The samplesheet's `layout` column selects it; its columns are defaults that a row's own
perturbation_col / control_label / gene_symbol_col override. Every reader of an input file
(VALIDATE_INPUT, APPLY_LABEL_MAP, PREPROCESS) takes its labels from `contract_labels`, so no copy
of the data is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ..errors import InputError
from .dataset import COMBINATION_SEP, DatasetSpec


@dataclass(frozen=True)
class Layout:
    """How one downloaded layout spells the contract."""

    perturbation_col: str
    control_label: str
    gene_symbol_col: str | None
    relabel: Callable[[pd.DataFrame, pd.Series, str], pd.Series] | None  # (obs, labels, control) -> contract labels


def _gears(obs: pd.DataFrame, labels: pd.Series, control: str) -> pd.Series:
    """GEARS' `condition`: 'ctrl', 'A+ctrl' (or 'ctrl+A') for a single, 'A+B' for a combination."""
    def one(label: str) -> str:
        parts = [p for p in label.split(COMBINATION_SEP) if p and p != control]
        return COMBINATION_SEP.join(parts) if parts else control

    uniques = pd.unique(labels)
    return labels.map(dict(zip(uniques, map(one, uniques), strict=True)))


def _scperturb(obs: pd.DataFrame, labels: pd.Series, control: str) -> pd.Series:
    """scPerturb's `perturbation`: 'control', 'A', and 'A_B' for cells with `nperts` > 1."""
    if "nperts" not in obs.columns:
        return labels
    multiple = pd.to_numeric(obs["nperts"], errors="coerce").fillna(1).to_numpy() > 1
    out = labels.copy()
    out[multiple] = labels[multiple].str.replace("_", COMBINATION_SEP, regex=False)
    return out


# Sources of each layout: docs/usage.md#layouts (GEARS, Roohani et al. 2023; scPerturb, Peidli et al. 2024).
LAYOUTS = {
    "pertprobe": Layout("perturbation", "control", None, None),
    "gears": Layout("condition", "ctrl", "gene_name", _gears),
    "scperturb": Layout("perturbation", "control", None, _scperturb),
}
DEFAULTS = DatasetSpec()


def resolve(spec: DatasetSpec) -> DatasetSpec:
    """The spec with the layout's columns wherever the row kept the contract's defaults."""
    if spec.layout not in LAYOUTS:
        raise ValueError(f"unknown layout {spec.layout!r}; choose from {', '.join(LAYOUTS)}")
    layout = LAYOUTS[spec.layout]
    return replace(
        spec,
        perturbation_col=layout.perturbation_col if spec.perturbation_col == DEFAULTS.perturbation_col
        else spec.perturbation_col,
        control_label=layout.control_label if spec.control_label == DEFAULTS.control_label else spec.control_label,
        gene_symbol_col=spec.gene_symbol_col or layout.gene_symbol_col,
    )


def contract_labels(obs: pd.DataFrame, spec: DatasetSpec, source: str) -> np.ndarray:
    """The perturbation labels of `obs` in the contract's form (strings), for a resolved `spec`."""
    if spec.perturbation_col not in obs.columns:
        layout = f" (the {spec.layout} layout reads obs['{spec.perturbation_col}'])" if spec.layout != "pertprobe" else ""
        raise InputError(source, f"obs['{spec.perturbation_col}']", f"column missing{layout}; obs has "
                         f"{', '.join(map(repr, obs.columns[:8])) or '(none)'}",
                         "set perturbation_col in the samplesheet to the column of perturbation labels, or the "
                         "samplesheet's layout to the one the file was downloaded in")
    labels = obs[spec.perturbation_col].astype(str)
    relabel = LAYOUTS[spec.layout].relabel
    return (relabel(obs, labels, spec.control_label) if relabel else labels).to_numpy(dtype=str)
