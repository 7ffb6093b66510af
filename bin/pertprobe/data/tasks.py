"""Tasks of the response benchmark: how one dataset's perturbations are split into training and
test sets (definitions and sources in docs/tasks.md).

Each task is a registry entry (kind 'task') whose function returns the rows of its splits —
`seed, fold, perturbation, split` with split `train`, `test` or `excluded` (neither: a perturbation
the task keeps out of training so that a test category exists) — or raises `TaskNotApplicable`
with the reason when the dataset cannot support it (no combinations, too few of them). PREPROCESS
writes every applicable task into one splits table with a `task` column; every later step runs
per (task, seed, fold).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..registry import entries, register
from .dataset import split_targets

DOCS = "docs/tasks.md"
SPLIT_COLUMNS = ["task", "seed", "fold", "perturbation", "split"]
TRAIN, TEST, EXCLUDED = "train", "test", "excluded"
UNSEEN_PERTURBATION, COMBINATION = "unseen_perturbation", "combination"
GEARS = "GEARS (Roohani et al. 2023), 'simulation' split"
PERTURBENCH = "PerturBench (arXiv 2408.10609)"


class TaskNotApplicable(Exception):
    """The dataset cannot support the task; the message says why (it is recorded, not raised to the user)."""


@dataclass(frozen=True)
class TaskConfig:
    """Parameters shared by the tasks (K folds x seeds) and each task's own."""

    n_folds: int = 5
    seeds: tuple[int, ...] = (0,)
    combination_unseen_singles: float = 0.0  # share of singles kept out of training (GEARS: 0.25)


TaskFn = Callable[[list[str], TaskConfig], pd.DataFrame]


def task(name: str, **fields: Any) -> Callable[[TaskFn], TaskFn]:
    """Register a task of the response benchmark (see `registry.Entry`)."""
    return register("task", name, docs=f"{DOCS}#{name}", **fields)


def _folds(units: list[str], n_folds: int, rng: np.random.Generator) -> dict[str, int]:
    """Each unit's fold: a seeded permutation dealt round-robin, so fold sizes differ by at most one."""
    order = rng.permutation(len(units))
    return {units[i]: pos % n_folds for pos, i in enumerate(order)}


@task(UNSEEN_PERTURBATION, profiles=("minimal", "paper", "full"),
      description="K folds x seeds over perturbation labels; a combination A+B is one label, kept whole",
      source=f"{PERTURBENCH}; 'simple controls' study")
def unseen_perturbation(perturbations: list[str], config: TaskConfig) -> pd.DataFrame:
    """Every perturbation is tested once per seed, trained on the other folds."""
    perts = sorted(perturbations)
    if not 2 <= config.n_folds <= len(perts):
        raise TaskNotApplicable(f"{len(perts)} perturbation(s), fewer than --n_folds {config.n_folds}")
    rows = []
    for seed in config.seeds:
        fold_of = _folds(perts, config.n_folds, np.random.default_rng(seed))
        rows += [(seed, fold, p, TEST if fold_of[p] == fold else TRAIN)
                 for fold in range(config.n_folds) for p in perts]
    return pd.DataFrame(rows, columns=SPLIT_COLUMNS[1:])


@task(COMBINATION, profiles=("paper", "full"),
      description="K folds x seeds over combinations A+B: every other combination whose singles are seen and "
                  "the singles train (a share of singles held out with --combination_unseen_singles); held-out "
                  "combinations test, reported by how many of their singles were seen (2/2, 1/2, 0/2)",
      source=f"{PERTURBENCH}, combination prediction; {GEARS}")
def combination(perturbations: list[str], config: TaskConfig) -> pd.DataFrame:
    """Held-out combinations predicted from the singles (and other combinations) seen in training.

    Per seed, a seeded share of the singles is held out (`excluded`) so that test combinations with
    one or no seen single exist, as in GEARS' simulation split; a training combination never contains
    a held-out single (it would reveal that single's effect)."""
    perts = sorted(perturbations)
    doubles = [p for p in perts if len(split_targets(p)) > 1]
    singles = [p for p in perts if len(split_targets(p)) == 1]
    if len(doubles) < max(config.n_folds, 2):
        raise TaskNotApplicable(f"{len(doubles)} combination perturbation(s) (A+B), fewer than --n_folds "
                                f"{config.n_folds}")
    rows = []
    for seed in config.seeds:
        rng = np.random.default_rng(seed)
        fold_of = _folds(doubles, config.n_folds, rng)
        n_unseen = int(round(config.combination_unseen_singles * len(singles)))
        unseen = set(rng.choice(singles, n_unseen, replace=False)) if n_unseen else set()
        for fold in range(config.n_folds):
            rows += [(seed, fold, p, EXCLUDED if p in unseen else TRAIN) for p in singles]
            for p in doubles:
                if fold_of[p] == fold:
                    rows.append((seed, fold, p, TEST))
                else:
                    rows.append((seed, fold, p, EXCLUDED if unseen & set(split_targets(p)) else TRAIN))
    return pd.DataFrame(rows, columns=SPLIT_COLUMNS[1:]).sort_values(["seed", "fold", "perturbation"],
                                                                      ignore_index=True)


def make_splits(perturbations: list[str], tasks: list[str], config: TaskConfig) -> tuple[pd.DataFrame, dict[str, str]]:
    """The splits table of every applicable task in `tasks` and each task's status ('N splits' or
    'skipped: reason'); ValueError when none applies."""
    frames, status = [], {}
    chosen = {e.name: e for e in entries("task")}
    for name in tasks:
        try:
            frame = chosen[name].func(perturbations, config)
        except TaskNotApplicable as why:
            status[name] = f"skipped: {why}"
            continue
        frames.append(frame.assign(task=name)[SPLIT_COLUMNS])
        status[name] = f"{frame.groupby(['seed', 'fold']).ngroups} splits"
    if not frames:
        raise ValueError("no task of --tasks applies to this dataset (" +
                         "; ".join(f"{k}: {v}" for k, v in status.items()) + ")")
    return pd.concat(frames, ignore_index=True), status


def seen_singles(splits: pd.DataFrame) -> pd.DataFrame:
    """Per test combination of every split: how many of its singles were trained on, as 'k/n'
    (the GEARS / PerturBench categories) — columns task, seed, split ('foldF'), perturbation, seen."""
    rows = []
    for (name, seed, fold), sub in splits.reset_index().groupby(["task", "seed", "fold"], sort=True):
        train = set(sub.loc[sub["split"] == TRAIN, "perturbation"])
        for p in sub.loc[sub["split"] == TEST, "perturbation"]:
            singles = split_targets(p)
            if len(singles) > 1:
                rows.append((name, int(seed), f"fold{fold}", p, f"{sum(s in train for s in singles)}/{len(singles)}"))
    return pd.DataFrame(rows, columns=["task", "seed", "split", "perturbation", "seen"])
