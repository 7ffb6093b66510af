"""The report's fine-tuning section: each fine-tuned predictor's variants side by side (score with the
best floor, the linear model and the ceiling; training time; model size), as the 'simple controls'
study's figures 2-3 show them, plus the paired tests between variants."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from ..registry import names, select
from .render import label, png, table
from .verdict import best_references, compare

LINEAR = "linear"
TRAINING_COLUMNS = {"n_parameters": "median", "n_trainable": "median", "n_tensors_loaded": "median",
                    "epochs": "median", "seconds_per_epoch": "mean", "peak_memory_mb": "max",
                    "final_train_mse": "mean", "best_val_pearson": "mean"}


def variant_table(board: pd.DataFrame, training: pd.DataFrame, dataset: str, metric: str) -> pd.DataFrame:
    """One row per predictor/variant of `dataset`: the metric's mean ± sd over splits with its bounds,
    and the training record summarised over splits."""
    rows = board[(board["dataset"] == dataset) & (board["metric"] == metric)
                 & board["model"].isin(training["predictor"].unique())]
    runs = training[training["dataset"] == dataset]
    summary = (runs.groupby(["predictor", "variant"]).agg(**{k: (k, how) for k, how in TRAINING_COLUMNS.items()},
                                                          n_runs=("seed", "size")).reset_index()
               .rename(columns={"predictor": "model", "variant": "embedding"}))
    cols = ["model", "embedding", "mean", "sd", "n_splits", "best_floor", "ceiling", "fraction_of_gap", "gap_status"]
    out = rows[cols].merge(summary, on=["model", "embedding"], how="left")
    linear = board[(board["dataset"] == dataset) & (board["metric"] == metric) & (board["model"] == LINEAR)]
    higher = bool(rows["higher_is_better"].iloc[0]) if len(rows) else True
    best_linear = (linear["mean"].max() if higher else linear["mean"].min()) if not linear.empty else np.nan
    out.insert(out.columns.get_loc("best_floor") + 1, "best_linear", best_linear)
    for column in ("n_parameters", "n_trainable", "n_tensors_loaded", "epochs", "n_runs"):
        out[column] = out[column].round().astype("Int64")
    order = {name: i for i, name in enumerate(names("finetune_variant"))}
    out = out.sort_values(["model", "embedding"], key=lambda c: c.map(order) if c.name == "embedding" else c)
    return out.rename(columns={"embedding": "variant"}).reset_index(drop=True)


def comparisons(board: pd.DataFrame, stats: pd.DataFrame, rows: pd.DataFrame, dataset: str,
                metric: str) -> pd.DataFrame:
    """Each variant against its predictor's `full` variant, the best floor and the best linear model:
    the oriented difference (positive: the variant is better), its 95% CI and p_corrected."""
    here = board[(board["dataset"] == dataset) & (board["metric"] == metric)]
    higher = bool(here["higher_is_better"].iloc[0])
    references = best_references(board)
    floor = references["floor"].get((dataset, metric))
    linear = here[here["model"] == LINEAR].assign(oriented=lambda f: f["mean"] if higher else -f["mean"])
    best_linear = label(linear.sort_values("oriented", ascending=False).iloc[0]) if not linear.dropna(
        subset=["oriented"]).empty else None
    out = []
    for _, row in rows.iterrows():
        name = f"{row['model']}/{row['variant']}"
        for role, other in (("full", f"{row['model']}/full"), ("best floor", floor), ("linear", best_linear)):
            if not isinstance(other, str) or other == name:
                continue
            result = compare(stats, dataset, metric, name, other, higher)
            out.append({"variant": name, "against": f"{role} ({other})" if role != "full" else other,
                        **{k: result[k] for k in ("difference", "ci_low", "ci_high", "p_corrected")},
                        "verdict": "better" if result["beats"] else "worse" if result["worse"] else "not shown to differ"})
    return pd.DataFrame(out)


def variant_figure(rows: pd.DataFrame, metric: str) -> str:
    """Bars of each variant's mean (± sd over splits) with the best floor, linear model and ceiling as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.6 + 0.7 * len(rows), 3.2))
    x = np.arange(len(rows))
    ax.bar(x, rows["mean"], yerr=rows["sd"].fillna(0), color="#6a8caf", capsize=3)
    for column, style, name in (("best_floor", "--", "best floor"), ("best_linear", ":", "linear"),
                                ("ceiling", "-", "ceiling")):
        value = rows[column].dropna()
        if not value.empty:
            ax.axhline(float(value.iloc[0]), linestyle=style, color="#444", linewidth=1, label=name)
    ax.set_xticks(x, rows["variant"], rotation=30, ha="right")
    ax.set_ylabel(f"{metric} (mean over splits)")
    ax.legend(fontsize=7, frameon=False, loc="best")
    encoded = png(fig)
    plt.close(fig)
    return encoded


def finetune_section(board: pd.DataFrame, training: pd.DataFrame | None, stats: pd.DataFrame) -> list[str]:
    """HTML parts of the section (nothing without fine-tuned runs)."""
    if training is None or training.empty:
        return []
    parts = ["<h2>Fine-tuned foundation models: what pretraining adds</h2>",
             "<p class='note'>Each variant is the same predictor trained on the same pairs, batches and gene subsets "
             "with the same hyper-parameters (docs/models/finetune.md): full = every foundation weight loaded; "
             "no_pretraining = all random; no_input_encoder / no_transformer withhold one group; lora = frozen "
             "weights with low-rank adapters; simple_affine = no transformer; mlp = a per-token MLP in its place. "
             "A variant that does not beat the best floor, or that the controls match, shows no benefit of "
             "pretraining on this dataset. Training columns: medians (sizes), means (time, losses) and the maximum "
             "(memory) over splits; training.csv has every run.</p>"]
    primary = select("metric", "minimal")
    for dataset in sorted(training["dataset"].unique()):
        parts.append(f"<h3>Dataset {html.escape(dataset)}</h3>")
        for metric in [m for m in primary if m in set(board.loc[board["dataset"] == dataset, "metric"])]:
            rows = variant_table(board, training, dataset, metric)
            if rows.empty:
                continue
            parts.append(f"<h4>{html.escape(metric)}</h4>" + table(rows))
            parts.append(f"<img alt='{html.escape(metric)} by variant' "
                         f"src='data:image/png;base64,{variant_figure(rows, metric)}'>")
            tests = comparisons(board, stats, rows, dataset, metric)
            if not tests.empty:
                parts.append("<p class='note'>Each variant against its full fine-tuning, the best floor and the "
                             "best linear model: difference oriented so that positive means the variant is better, "
                             "95% bootstrap CI over perturbations, Nadeau–Bengio p_corrected over folds × seeds; "
                             "'better' / 'worse' need p_corrected &lt; 0.05 and a CI excluding 0. Every pair: "
                             "statistics.csv.</p>" + table(tests))
    return parts
