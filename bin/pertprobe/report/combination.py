"""The report's combination section: each predictor's score on held-out combinations A+B by how many of
their singles were seen in training (2/2, 1/2, 0/2; GEARS' and PerturBench's categories), against the
`additive` floor (control + the sum of the seen singles' effects), the reference of this task."""

from __future__ import annotations

import html

import pandas as pd

from ..registry import select
from .render import table

REFERENCE = "additive"
SEEN_COLUMNS = ["dataset", "task", "metric", "model", "embedding", "seen", "mean", "n_values"]


def seen_scores(metrics: pd.DataFrame, seen: pd.DataFrame) -> pd.DataFrame:
    """Mean metric value per dataset, task, metric, predictor and seen category over the test combinations of
    every split (`seen`: dataset, task, seed, split, perturbation, seen — `tasks.seen_singles` per dataset)."""
    keys = ["dataset", "task", "seed", "split", "perturbation"]
    joined = metrics.merge(seen, on=keys, how="inner")
    if joined.empty:
        return pd.DataFrame(columns=SEEN_COLUMNS)
    out = (joined.groupby(["dataset", "task", "metric", "model", "embedding", "seen"], observed=True)["value"]
           .agg(mean="mean", n_values="count").reset_index())
    return out[SEEN_COLUMNS]


def combination_section(metrics: pd.DataFrame, seen: pd.DataFrame) -> list[str]:
    """HTML parts: per dataset and primary metric, predictors x seen categories (nothing without combinations)."""
    scores = seen_scores(metrics, seen)
    if scores.empty:
        return []
    parts = ["<h2>Combinations by seen singles</h2>",
             "<p class='note'>Held-out combinations A+B grouped by how many of their singles the predictor was "
             f"trained on (2/2, 1/2, 0/2, as GEARS and PerturBench report them). {REFERENCE} — control plus the sum "
             "of the seen singles' effects, the mean where a single is unseen — is this task's reference: a model "
             "that does not beat it on 2/2 learns no interaction. Cells: mean over test combinations × splits "
             "(n in brackets); every value: combination.csv. Definitions: docs/tasks.md#combination.</p>"]
    primary = select("metric", "minimal")
    for dataset in sorted(scores["dataset"].unique()):
        here = scores[scores["dataset"] == dataset]
        parts.append(f"<h3>Dataset {html.escape(dataset)}</h3>")
        for metric in [m for m in primary if m in set(here["metric"])]:
            sub = here[here["metric"] == metric].copy()
            sub["predictor"] = sub["model"] + sub["embedding"].map(lambda e: "" if e == "none" else f"/{e}")
            sub["cell"] = [f"{m:.4f} ({n})" for m, n in zip(sub["mean"], sub["n_values"], strict=True)]
            wide = sub.pivot(index="predictor", columns="seen", values="cell").fillna("")
            order = sorted(wide.columns, key=lambda c: (-int(c.split("/")[0]), c))
            wide = wide[order].reset_index()
            wide.insert(1, "reference", (wide["predictor"] == REFERENCE).map({True: "floor (reference)",
                                                                                False: ""}))
            parts.append(f"<h4>{html.escape(metric)}</h4>" + table(wide))
    return parts
