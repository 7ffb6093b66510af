"""The cell-embedding benchmark: five tasks on one embedding under each alignment."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..data.preprocess import target_map
from ..data.pseudobulk import group_means
from ..registry import entries, names, register
from .alignment import align
from .batch_mixing import batch_metrics
from .integrity import decoder_over_splits
from .perturbation_map import null_perturbations, relationship_recall, replicate_consistency, replicate_labels
from .separability import energy_to_control, holdout_batches, probe_accuracy

if TYPE_CHECKING:
    import anndata as ad

LOG = logging.getLogger(__name__)
DOCS = "docs/metrics.md#cell-embedding-benchmark-embedders-alignment-and-the-five-tasks"
SOURCE = "Bendidi et al. 2024; EFAAR (Celik et al. 2024)"
SUMMARY_COLUMNS = ["dataset", "model", "alignment", "task", "metric", "value", "sd", "n", "note"]
NOT_RUN = "not_run"  # the metric of a task's row when it could not run; `note` says why


class TaskSkipped(Exception):
    """A task that cannot run on this dataset; the message is the reason the report prints."""
HIGHER_IS_BETTER = {"mse": False}


@dataclass(frozen=True)
class CellBenchmarkConfig:
    """Parameters of EVAL_CELL_EMBEDDINGS."""

    alignments: tuple[str, ...] = field(default_factory=lambda: tuple(names("alignment")))
    tasks: tuple[str, ...] = field(default_factory=lambda: tuple(names("cell_task")))
    holdout_batches: tuple[str, ...] = ()
    n_permutations: int = 1000
    max_controls: int = 1000
    n_null: int = 1000
    null_perturbations: tuple[str, ...] = ()
    null_max_detection: float = 0.01
    tail: float = 0.05
    n_neighbors: int = 90
    max_cells_batch: int = 20000
    max_decoder_cells: int = 50000
    seed: int = 0


def target_detection(processed: ad.AnnData) -> pd.Series:
    """Fraction of control cells with a non-zero count of each single-gene perturbation's target."""
    control = processed.uns["pertprobe"]["control_label"]
    perts = sorted(p for p in processed.obs["perturbation"].unique() if p != control and "+" not in p)
    kind = processed.uns["pertprobe"]["perturbation_type"]
    targets = {p: t[0] for p, t in target_map(perts, processed.var, control, kind).items() if len(t) == 1}
    ctrl = (processed.obs["perturbation"] == control).to_numpy()
    counts = processed.layers["counts"][ctrl][:, processed.var_names.get_indexer(list(targets.values()))]
    detected = np.asarray((counts > 0).mean(axis=0)).ravel()
    return pd.Series(detected, index=list(targets), dtype=float)


def _rows(task: str, values: dict[str, float]) -> list[dict]:
    return [{"task": task, "metric": k, "value": v, "sd": np.nan, "n": 1, "note": ""} for k, v in values.items()]


@dataclass(frozen=True)
class TaskInput:
    """One aligned embedding and what every task reads about its cells."""

    x: np.ndarray
    processed: ad.AnnData
    splits: pd.DataFrame
    relationships: pd.DataFrame | None
    nulls: list[str]
    config: CellBenchmarkConfig
    perturbation: np.ndarray
    batch: np.ndarray
    is_control: np.ndarray


TaskResult = tuple[list[dict], pd.DataFrame | None]  # summary rows, per-perturbation columns (or None)


def task(name: str, description: str, profiles: tuple[str, ...] = ("full",), needs: tuple[str, ...] = ()):
    """Register a cell-benchmark task: f(TaskInput) -> (summary rows, per-perturbation table or None)."""
    return register("cell_task", name, docs=DOCS, source=SOURCE, description=description, profiles=profiles,
                    needs=needs)


@task("batch", "Batch-effect reduction (scib-metrics, scaled to [0, 1], higher = better mixed)", ("paper", "full"))
def batch_task(t: TaskInput) -> TaskResult:
    c = t.config
    return _rows("batch", batch_metrics(t.x, t.batch, t.perturbation, c.n_neighbors, c.max_cells_batch, c.seed)), None


@task("separability", "Perturbation separability (probe on unseen batches; energy distance to controls)",
      ("minimal", "paper", "full"))
def separability_task(t: TaskInput) -> TaskResult:
    c, rows = t.config, []
    test_batches = holdout_batches(t.batch, list(c.holdout_batches))
    if test_batches:
        rows += _rows("separability", probe_accuracy(t.x, t.perturbation, t.batch, t.is_control, test_batches, c.seed))
    energy = energy_to_control(t.x, t.perturbation, t.is_control, c.n_permutations, c.max_controls, c.seed)
    tested = energy[~energy["perturbation"].isin(t.nulls)]
    rows += _rows("separability", {
        "energy_frac_significant": float((tested["energy_p_value"] < 0.05).mean()),
        "energy_frac_significant_bh": float((tested["energy_q_value"] < 0.05).mean()),
        "energy_distance_median": float(tested["energy_distance"].median())})
    return rows, energy


@task("consistency", "Replicate consistency (vs null of non-expressed-gene perturbations)", ("paper", "full"))
def consistency_task(t: TaskInput) -> TaskResult:
    if not t.nulls:
        raise TaskSkipped(f"no null perturbations: none targets a gene detected in at most "
                          f"{t.config.null_max_detection:.0%} of control cells; name them with --null_perturbations "
                          "or raise --null_max_detection")
    replicate, unit = replicate_labels(t.batch, t.config.seed)
    cons = replicate_consistency(t.x, t.perturbation, replicate, t.is_control, t.nulls, t.config.n_null, t.config.seed)
    cons["replicate_unit"] = unit
    tested = cons[~cons["is_null"]]
    return _rows("consistency", {
        "consistency_frac_significant": float((tested["consistency_p_value"] < 0.05).mean()),
        "consistency_mean": float(tested["consistency"].mean()),
        "null_consistency_mean": float(cons.loc[cons["is_null"], "consistency"].mean()),
        "n_null_perturbations": float(len(t.nulls))}), cons


@task("relationships", "Known-relationship recall (5%/95% tails; random ≈ 0.10)", ("paper", "full"),
      needs=("known_relationships",))
def relationships_task(t: TaskInput) -> TaskResult:
    if t.relationships is None:
        raise TaskSkipped("no known relationships given (--known_relationships)")
    singles = ~t.is_control & (np.char.find(t.perturbation.astype(str), "+") < 0)
    profiles = group_means(t.x[singles], t.perturbation[singles])[0]
    rows = []
    for rec in relationship_recall(profiles, t.relationships, t.config.tail).to_dict("records"):
        suffix = "" if rec["source"] == "all" else f"_{rec['source']}"
        rows += _rows("relationships", {f"recall{suffix}": rec["recall"], f"recall_low{suffix}": rec["recall_low"],
                                        f"recall_high{suffix}": rec["recall_high"],
                                        f"n_pairs{suffix}": float(rec["n_pairs"])})
    return rows, None


@task("integrity", "Structural Integrity and reconstruction on unseen perturbations", ("minimal", "paper", "full"))
def integrity_task(t: TaskInput) -> TaskResult:
    dec = decoder_over_splits(t.x, t.processed.X, t.perturbation, t.batch, t.is_control, t.splits,
                              t.config.max_decoder_cells)
    agg = dec.groupby("metric", sort=True)["value"].agg(["mean", "std", "count"])
    return [{"task": "integrity", "metric": m, "value": r["mean"], "sd": r["std"], "n": int(r["count"]), "note": ""}
            for m, r in agg.iterrows()], None


def run_tasks(x: np.ndarray, processed: ad.AnnData, splits: pd.DataFrame, relationships: pd.DataFrame | None,
              nulls: list[str], config: CellBenchmarkConfig, label: str = "") -> tuple[list[dict], pd.DataFrame]:
    """All requested tasks on one aligned embedding: summary rows and a per-perturbation table.
    Each task's end is logged (`label`, task i/n, seconds) so that a long run shows where it is."""
    pert = processed.obs["perturbation"].astype(str).to_numpy()
    is_control = pert == processed.uns["pertprobe"]["control_label"]
    inputs = TaskInput(x, processed, splits, relationships, nulls, config, pert,
                       processed.obs["batch"].astype(str).to_numpy(), is_control)
    rows: list[dict] = []
    per_pert = pd.DataFrame({"perturbation": sorted(set(pert[~is_control]))})
    chosen = [e for e in entries("cell_task") if e.name in config.tasks]
    for i, entry in enumerate(chosen, start=1):
        start = time.perf_counter()
        try:
            task_rows, table = entry.func(inputs)
        except TaskSkipped as skipped:
            LOG.warning("%s task %s not run: %s", label, entry.name, skipped)
            rows.append({"task": entry.name, "metric": NOT_RUN, "value": np.nan, "sd": np.nan, "n": 0,
                         "note": str(skipped)})
            continue
        LOG.info("%s task %s (%d/%d) done in %.1f s", label, entry.name, i, len(chosen), time.perf_counter() - start)
        rows += task_rows
        if table is not None:
            per_pert = per_pert.merge(table, on="perturbation", how="left")
    return rows, per_pert


def evaluate_embedding(emb: ad.AnnData, processed: ad.AnnData, splits: pd.DataFrame, dataset: str,
                       relationships: pd.DataFrame | None, config: CellBenchmarkConfig,
                       ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run the benchmark of one embedding under every alignment of `config`.

    Returns the summary (long: dataset, model, alignment, task, metric, value, sd, n) and the
    per-perturbation table (energy distance, replicate consistency and their p-values)."""
    if not emb.obs_names.equals(processed.obs_names):
        raise ValueError("the embedding's cells (obs index) differ from the processed dataset's cells")
    model = emb.uns["embedding"]["model"]
    pert = processed.obs["perturbation"].astype(str).to_numpy()
    is_control = pert == processed.uns["pertprobe"]["control_label"]
    nulls = sorted(config.null_perturbations) if config.null_perturbations else \
        null_perturbations(target_detection(processed), config.null_max_detection)
    values = np.asarray(emb.X, dtype=np.float64)
    summaries, tables = [], []
    for method in config.alignments:
        x = align(values, processed.obs["batch"].astype(str).to_numpy(), is_control, method)
        rows, per_pert = run_tasks(x, processed, splits, relationships, nulls, config,
                                   label=f"{model} {method} ({config.alignments.index(method) + 1}/{len(config.alignments)})")
        summaries += [{"dataset": dataset, "model": model, "alignment": method, **r} for r in rows]
        per_pert.insert(0, "alignment", method)
        tables.append(per_pert)
    per_pert = pd.concat(tables, ignore_index=True)
    per_pert.insert(0, "model", model)
    per_pert.insert(0, "dataset", dataset)
    return pd.DataFrame(summaries, columns=SUMMARY_COLUMNS), per_pert
