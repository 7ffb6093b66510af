"""Reading the splits table that PREPROCESS writes."""

from __future__ import annotations

import pandas as pd

from ..errors import InputError


def split_sets(splits: pd.DataFrame, seed: int, fold: int, source: str = "splits") -> tuple[list[str], list[str]]:
    """Training and test perturbations of (seed, fold)."""
    splits = splits.reset_index()
    rows = splits[(splits["seed"] == seed) & (splits["fold"] == fold)]
    if rows.empty:
        raise InputError(source, "seed/fold", f"no split with seed={seed}, fold={fold}",
                         "use a seed and fold that PREPROCESS wrote (--seeds, --n_folds)")
    train = rows.loc[rows["split"] == "train", "perturbation"].tolist()
    test = rows.loc[rows["split"] == "test", "perturbation"].tolist()
    return train, test
