"""The self-contained HTML report: the datasets, then per task the verdict, the per-perturbation views, leaderboard
with bounds, plots, paired statistics, combinations by seen singles and fine-tuned variants; the cell benchmark's
tables, embeddings and versions."""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pandas as pd

from ..data.pseudobulk import Pseudobulk
from ..registry import applies, entries, get, names, select
from ..response.bounds import ABOVE_CEILING, ROW_STATUSES
from ..response.metrics import directions
from ..response.predictors import floors, shortcuts
from .combination import combination_section
from .finetune import finetune_section
from .perturbations import perturbation_views
from .render import label, png, table
from .verdict import best_references, is_predictor, pair_difference, verdict_section

LOW_DYNAMIC_RANGE = 0.1  # below this share of the metric's range, a dataset cannot rank models


def _split_plot(metrics: pd.DataFrame, dataset: str, metric: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sub = metrics[(metrics["dataset"] == dataset) & (metrics["metric"] == metric)]
    per_split = sub.groupby(["model", "embedding", "seed", "split"], observed=True)["value"].mean().reset_index()
    per_split["label"] = per_split["model"] + np.where(per_split["embedding"] == "none", "", "/" + per_split["embedding"])
    labels = sorted(per_split["label"].unique())
    fig, ax = plt.subplots(figsize=(1.2 + 0.75 * len(labels), 3.4))
    data = [per_split.loc[per_split["label"] == lab, "value"].dropna().to_numpy() for lab in labels]
    ax.boxplot([d if len(d) else [np.nan] for d in data], showfliers=False)
    for i, d in enumerate(data, start=1):
        ax.scatter(np.full(len(d), i) + np.linspace(-0.12, 0.12, len(d)) if len(d) else [], d, s=12, alpha=0.7)
    ax.set_xticks(range(1, len(labels) + 1), labels, rotation=30, ha="right")
    ax.set_ylabel(f"{metric} (mean per split)")
    ax.set_title(f"{dataset}: {metric}")
    if metric.startswith("rank"):
        ax.axhline(0.5, color="grey", ls="--", lw=1)
    out = png(fig)  # bbox_inches="tight" fits the rotated labels
    plt.close(fig)
    return out


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}
td,th{white-space:pre-line}th{background:#f0f0f0}h2{border-bottom:1px solid #ccc}.note{color:#555;font-size:13px}
td.worse{background:#fbe3e3}td.fallback{font-style:italic;color:#777}img{max-width:100%}"""


def _comparisons(stats: pd.DataFrame, board: pd.DataFrame, dataset: str, metric: str) -> pd.DataFrame:
    """Each predictor against the best floor of this dataset and metric (a − floor)."""
    floor = best_references(board)["floor"].get((dataset, metric))
    st = stats[(stats["dataset"] == dataset) & (stats["metric"] == metric)] if len(stats) else stats
    if not isinstance(floor, str) or st.empty:
        return pd.DataFrame()
    others = sorted((set(st["predictor_a"]) | set(st["predictor_b"])) - {floor})
    rows = []
    for other in others:
        row = pair_difference(st, dataset, metric, other, floor)
        if row is not None:
            rows.append({"predictor": other, "vs": floor, "mean_difference": row["mean_difference"],
                         "p_perturbation": row["p_perturbation"], "p_corrected": row["p_corrected"],
                         "bootstrap_ci_low": row["ci_low"], "bootstrap_ci_high": row["ci_high"],
                         "n_perturbations": row["n_perturbations"], "n_splits": row["n_splits"]})
    return pd.DataFrame(rows).sort_values("mean_difference", ascending=not directions().get(metric, True))


def _bounds_notes(sub: pd.DataFrame) -> str:
    """Warnings for one dataset x metric: bounds that cannot separate models, and the predictors
    that do not beat the strongest shortcut probe."""
    notes = []
    ceiling_status = sub.loc[sub["model"] == "ceiling", "gap_status"]
    if len(ceiling_status) and ceiling_status.iloc[0] not in ROW_STATUSES:
        notes.append(f"fraction_of_gap is undefined here: {ceiling_status.iloc[0]}.")
    dynamic = sub["dynamic_range"].dropna()
    if len(dynamic) and dynamic.iloc[0] < LOW_DYNAMIC_RANGE:
        notes.append(f"Low dynamic range ({dynamic.iloc[0]:.2f} of the metric's range lies between the best floor and "
                     "the ceiling): this dataset cannot rank models on this metric.")
    models = sub[is_predictor(sub)].dropna(subset=["mean"])
    shortcut = sub["best_shortcut"].dropna()
    if len(shortcut) and len(models):
        higher = directions().get(sub["metric"].iloc[0], True)
        behind = models[models["mean"] <= shortcut.iloc[0]] if higher else models[models["mean"] >= shortcut.iloc[0]]
        if len(behind):
            notes.append(f"Not better than the strongest shortcut probe ({shortcut.iloc[0]:.4f}): "
                         f"{html.escape(', '.join(label(r) for _, r in behind.iterrows()))}.")
    above = sub[sub["gap_status"] == ABOVE_CEILING]
    if len(above):
        notes.append("Above the noise ceiling (check for leakage or a noisy ceiling): "
                     f"{html.escape(', '.join(label(r) for _, r in above.iterrows()))}.")
    return "".join(f"<p class='note'><b>{n}</b></p>" for n in notes)


def _coverage_note(sub: pd.DataFrame) -> str:
    """One dataset's predictors that did not predict every test perturbation themselves."""
    rows = sub.drop_duplicates(["model", "embedding"])
    partial = rows[rows["coverage"] < 1].sort_values(["coverage", "model", "embedding"])
    if partial.empty:
        return ""
    items = ", ".join(f"{label(r)} {r['coverage']:.0%}" + ("" if pd.isna(r["min_n_fit"]) else
                                                            f" (fitted on as few as {int(r['min_n_fit'])})")
                      for _, r in partial.iterrows())
    return ("<p class='note'><b>Coverage: these predictors predicted only part of the test perturbations "
            "themselves; the rest have no embedding and got the mean (the coverage column; "
            f"docs/metrics.md#predictors-pertproberesponsepredictors): {html.escape(items)}.</b></p>")


def _names(names: list[str], limit: int = 20) -> str:
    """The first `limit` names, and how many more."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _de_note(summary: dict[str, Any]) -> str:
    """Perturbations with fewer DE genes than asked for, or none."""
    fewer, none = summary.get("perturbations_with_fewer_de_genes", []), summary.get("perturbations_without_de_genes", [])
    if not fewer:
        return ""
    text = (f"{len(fewer)} perturbation(s) have fewer significant, expressed DE genes than asked for (DE-gene metrics "
            f"use the ones they have; preprocess/*.de_counts.csv): {_names(fewer)}.")
    if none:
        text += f" Without any, so their DE-gene metrics are undefined: {_names(none)}."
    return f"<p class='note'>{html.escape(text)}</p>"


def _cell_section(cell_board: pd.DataFrame) -> list[str]:
    from .cells import SEPARATION, inseparable, task_tables, task_titles, tasks_not_run

    parts = ["<h2>Cell-embedding benchmark</h2><p class='note'>Each embedding under each alignment (none, "
             "per-batch centring / centre-scaling on control cells, TVN). The first rows of every table are the "
             "random-embedding floor; a number only means something by its margin over that floor "
             "(cell_leaderboard.csv has margin_over_floor for every value). Chance levels: probe top-k accuracy "
             "topk_chance, recall 2 × tail, Structural Integrity 0.5. Definitions: docs/metrics.md.</p>"]
    for dataset in sorted(cell_board["dataset"].unique()):
        parts.append(f"<h3>Dataset {html.escape(dataset)}</h3>")
        for task, reason in tasks_not_run(cell_board, dataset).items():
            parts.append(f"<p class='note'><b>Not run: {html.escape(task_titles()[task])} — {html.escape(reason)}.</b></p>")
        flat = inseparable(cell_board, dataset)
        if len(flat):
            items = "; ".join(f"{r.metric} ({r.task}, {r.alignment}: {r.min:.3g}–{r.max:.3g})" for r in flat.itertuples())
            parts.append(f"<p class='note'><b>No embedding separates from the others, the random floor included (all "
                         f"values within {SEPARATION:.0%}): {html.escape(items)}. These metrics cannot rank embeddings "
                         "on this dataset.</b></p>")
        for task, rows in task_tables(cell_board, dataset).items():
            parts.append(f"<h4>{html.escape(task_titles()[task])}</h4>" + table(rows, "{:.3f}"))
    return parts


def _left_out_note(perturbation_type: str | None) -> str:
    """The predictors and perturbation embeddings not defined for the dataset's perturbation type."""
    if not perturbation_type:
        return ""
    left = {kind: [e.name for e in entries(kind) if not applies(e, perturbation_type)]
            for kind in ("predictor", "gene_embedding")}
    if not any(left.values()):
        return ""
    listed = "; ".join(f"{'predictors' if kind == 'predictor' else 'perturbation embeddings'} {', '.join(names_)}"
                       for kind, names_ in left.items() if names_)
    return (f"<p class='note'>Not defined for {html.escape(perturbation_type)} perturbations, so left out, never "
            f"replaced by another floor: {html.escape(listed)} (docs/registry.md, perturbation_types).</p>")


def _datasets_section(datasets: dict[str, dict[str, Any]]) -> list[str]:
    """Each dataset's PREPROCESS summary, its unresolved labels and DE-gene shortfalls, and which tasks ran."""
    parts = ["<h2>Datasets</h2>"] if datasets else []
    for dataset, info in sorted(datasets.items()):
        parts.append(f"<h3>Dataset {html.escape(dataset)}</h3>")
        parts.append(table(pd.DataFrame([{k: v for k, v in info.items() if not isinstance(v, (list, dict))}])))
        tasks = info.get("tasks", {})
        if tasks:
            order = {name: i for i, name in enumerate(names("task"))}
            listed = sorted(tasks.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))
            parts.append("<p class='note'>Tasks (docs/tasks.md): " +
                         html.escape("; ".join(f"{name}: {status}" for name, status in listed)) + ".</p>")
        parts.append(_left_out_note(info.get("perturbation_type")))
        unresolved = info.get("unresolved_perturbations", [])
        if unresolved:
            parts.append(f"<p class='note'>{len(unresolved)} perturbation(s) name targets that are not measured, "
                         "so they are predicted and scored without them (preprocess/*.label_resolution.csv): "
                         f"{html.escape(', '.join(unresolved))}</p>")
        parts.append(_de_note(info))
    return parts


def _leaderboard_section(board: pd.DataFrame, metrics: pd.DataFrame, stats: pd.DataFrame) -> list[str]:
    """One task's leaderboards: per dataset and metric the bounded table, the per-split plot and, for the
    primary metrics, the paired comparisons with the best floor."""
    parts = ["<p class='note'>Values are means over test "
             "perturbations per split, summarized over folds × seeds. Every row is bounded: best_floor is the "
             f"best of the floors ({', '.join(floors())} and any random-embedding model); best_shortcut the "
             f"best of the shortcut probes ({', '.join(shortcuts())}); ceiling the noise ceiling, an estimate "
             "of what the truth would score against the observed cells; split_half the half-depth technical "
             "duplicate, interpolated_duplicate the duplicate shrunk to the mean where a gene's change is not "
             "significant and replicate_duplicate batch against batch (anchors below the ceiling). Oriented by the metric's direction, fraction_of_gap = "
             "(mean − best_floor) / (ceiling − best_floor), given only where the floor-to-ceiling gap exceeds "
             "two standard errors (gap_status says why otherwise, or that a row lies outside the bounds); "
             "dynamic_range is the share of the metric's range from the best floor to a perfect score that "
             "the ceiling leaves room for. rank metrics: 0 is perfect, 0.5 is random. Definitions and "
             "sources: docs/metrics.md.</p>"]
    primary = select("metric", "minimal")
    cols = ["rank", "model", "embedding", "mean", "sd", "n_splits", "n_values", "n_undefined", "coverage",
            "best_floor", "best_shortcut", "ceiling", "dynamic_range", "fraction_of_gap", "gap_status"]
    for dataset in sorted(board["dataset"].unique()):
        parts.append(f"<h3>Dataset {html.escape(dataset)}</h3>")
        parts.append(_coverage_note(board[board["dataset"] == dataset]))
        metrics_here = list(board.loc[board["dataset"] == dataset, "metric"].unique())
        ordered = [m for m in primary if m in metrics_here] + sorted(set(metrics_here) - set(primary))
        for metric in ordered:
            sub = board[(board["dataset"] == dataset) & (board["metric"] == metric)]
            parts.append(f"<h4>{html.escape(metric)}</h4>" + _bounds_notes(sub) + table(sub[cols]))
            parts.append(f"<img alt='{html.escape(metric)}' "
                         f"src='data:image/png;base64,{_split_plot(metrics, dataset, metric)}'>")
            if metric in primary:
                comp = _comparisons(stats, board, dataset, metric)
                if not comp.empty:
                    parts.append("<p class='note'>Paired comparisons with the best floor (difference a − floor). "
                                 "p_perturbation: paired t-test over test perturbations, each averaged over the "
                                 "seeds it was tested in; p_corrected: Nadeau–Bengio corrected resampled t-test "
                                 "over folds × seeds (repeated splits re-test the same perturbations, so a plain "
                                 "t-test over splits overstates the evidence); the 95% bootstrap CI resamples "
                                 "perturbations, the same unit as p_perturbation, so the two agree. All pairs: "
                                 "statistics.csv.</p>" + table(comp))
    return parts


def _tasks(board: pd.DataFrame) -> list[str]:
    """The tasks of the board, in registry order."""
    present = set(board["task"]) if len(board) else set()
    return [t for t in names("task") if t in present] + sorted(present - set(names("task")))


def render_html(board: pd.DataFrame, metrics: pd.DataFrame, datasets: dict[str, dict[str, Any]],
                embeddings: list[dict[str, Any]], versions: str, stats: pd.DataFrame | None = None,
                cell_board: pd.DataFrame | None = None, pseudobulks: dict[str, Pseudobulk] | None = None,
                training: pd.DataFrame | None = None, seen: pd.DataFrame | None = None) -> str:
    """One self-contained HTML page: the datasets and their tasks; per task (docs/tasks.md) the verdict
    (verdict.py), the per-perturbation views (perturbations.py; skipped with a note without `pseudobulks`,
    dataset -> Pseudobulk), the leaderboards with bounds, plots and paired statistics, the combinations by seen
    singles (combination.py; with `seen`, `tasks.seen_singles` per dataset) and the fine-tuned variants side by
    side (finetune.py; with `training`, the runs' training records); then the cell-embedding tables with their
    random floor, embeddings and versions."""
    stats = stats if stats is not None else pd.DataFrame(columns=["task"])
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>pertprobe report</title>"
             f"<style>{_CSS}</style></head><body><h1>pertprobe report</h1>"]
    parts += _datasets_section(datasets)
    tasks = _tasks(board)
    for name in tasks:
        b, m = board[board["task"] == name], metrics[metrics["task"] == name]
        st = stats[stats["task"] == name] if len(stats) else stats
        parts.append(f"<h1>Task {html.escape(name)}</h1><p class='note'>"
                     f"{html.escape(get('task', name).description) if name in names('task') else ''} "
                     "(docs/tasks.md).</p>")
        parts += verdict_section(b, st, m)
        parts += perturbation_views(m, b, pseudobulks, None if name == tasks[0] else tasks[0])
        parts += _leaderboard_section(b, m, st)
        if seen is not None:
            parts += combination_section(m, seen[seen["task"] == name])
        if training is not None:
            parts += finetune_section(b, training[training["task"] == name], st)
    if cell_board is not None and not cell_board.empty:
        parts += _cell_section(cell_board)
    if embeddings:
        parts.append("<h2>Embeddings</h2>")
        parts.append(table(pd.DataFrame(embeddings)))
    parts.append(f"<h2>Software versions</h2><pre>{html.escape(versions)}</pre></body></html>")
    return "\n".join(parts)
