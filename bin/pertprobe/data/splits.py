"""Reading the splits table that PREPROCESS writes (one row per task, seed, fold and perturbation)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..errors import InputError


@dataclass(frozen=True)
class SplitKey:
    """One split of one task: what every per-split output is named and labelled by."""

    task: str
    seed: int
    fold: int

    @property
    def stem(self) -> str:
        """The file-name part: TASK.seedS.foldF."""
        return f"{self.task}.seed{self.seed}.fold{self.fold}"

    @property
    def labels(self) -> dict[str, Any]:
        """The columns (and metadata keys) that identify the split in metric tables."""
        return {"task": self.task, "seed": self.seed, "split": f"fold{self.fold}"}

    @classmethod
    def from_labels(cls, meta: dict[str, Any]) -> SplitKey:
        """The key of a prediction's metadata (`labels`)."""
        return cls(str(meta["task"]), int(meta["seed"]), int(str(meta["split"]).removeprefix("fold")))

    def __str__(self) -> str:
        return f"{self.task} seed {self.seed} fold {self.fold}"


def split_sets(splits: pd.DataFrame, key: SplitKey, source: str = "splits") -> tuple[list[str], list[str]]:
    """Training and test perturbations of one split (rows marked `excluded` are in neither)."""
    splits = splits.reset_index()
    if "task" not in splits.columns:
        raise InputError(source, "task", "no task column (a splits table from an older PREPROCESS)",
                         "re-run PREPROCESS, which writes one task column (docs/tasks.md)")
    rows = splits[(splits["task"] == key.task) & (splits["seed"] == key.seed) & (splits["fold"] == key.fold)]
    if rows.empty:
        raise InputError(source, "task/seed/fold", f"no split for {key}",
                         "use a task, seed and fold that PREPROCESS wrote (--tasks, --seeds, --n_folds)")
    train = rows.loc[rows["split"] == "train", "perturbation"].tolist()
    test = rows.loc[rows["split"] == "test", "perturbation"].tolist()
    return train, test
