"""A label map: each perturbation label of a dataset (a guide, a clone, a well) mapped to the target
gene(s) it perturbs, so guide-level screens are benchmarked per target (cells of one target's
guides are pooled)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import InputError
from ..io import read_text_columns
from .dataset import DatasetSpec
from .layouts import contract_labels

COLUMNS = ("label", "target")


def read_label_map(path: str | Path) -> dict[str, str]:
    """label -> target (a gene, `A+B` for a combination, or the control label); bad tables raise
    `InputError` naming the file and the fix."""
    table = read_text_columns(path, COLUMNS)
    empty = table[(table["label"] == "") | (table["target"] == "")]
    if len(empty):
        raise InputError(path, "label/target", f"{len(empty)} rows with an empty label or target",
                         "give every row a label and its target gene (or the control label)")
    clash = table.drop_duplicates().groupby("label")["target"].nunique()
    if (clash > 1).any():
        raise InputError(path, "label", f"labels mapped to two targets (e.g. {clash[clash > 1].index[0]!r})",
                         "map each label to one target")
    return dict(zip(table["label"], table["target"], strict=True))


def apply_label_map(obs: pd.DataFrame, mapping: dict[str, str], spec: DatasetSpec, where: str | Path) -> pd.Series:
    """The perturbation column with every label replaced by its target; the control label may be
    left out of the map. A label absent from the map is an error (it would silently stay a guide)."""
    labels = pd.Series(contract_labels(obs, spec, str(where)), index=obs.index)
    unknown = sorted(set(labels) - set(mapping) - {spec.control_label})
    if unknown:
        raise InputError(where, f"obs['{spec.perturbation_col}']", f"{len(unknown)} labels are not in the label map "
                         f"(e.g. {', '.join(map(repr, unknown[:3]))})", "add them to the label map (label,target)")
    return labels.map(lambda lab: mapping.get(lab, lab))
