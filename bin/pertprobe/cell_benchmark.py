"""The cell-embedding benchmark: five tasks on one embedding under each alignment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .alignment import align
from .batch_mixing import batch_metrics
from .integrity import decoder_over_splits
from .perturbation_map import null_perturbations, relationship_recall, replicate_consistency, replicate_labels
from .preprocess import target_map
from .pseudobulk import group_means
from .separability import energy_to_control, holdout_batches, probe_accuracy

if TYPE_CHECKING:
    import anndata as ad

TASKS = ("batch", "separability", "consistency", "relationships", "integrity")
SUMMARY_COLUMNS = ["dataset", "model", "alignment", "task", "metric", "value", "sd", "n"]
HIGHER_IS_BETTER = {"mse": False}


@dataclass(frozen=True)
class CellBenchmarkConfig:
    """Parameters of EVAL_CELL_EMBEDDINGS."""

    alignments: tuple[str, ...] = ("none", "center", "center_scale", "tvn")
    tasks: tuple[str, ...] = TASKS
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
    targets = {p: t[0] for p, t in target_map(perts, processed.var, control).items() if len(t) == 1}
    ctrl = (processed.obs["perturbation"] == control).to_numpy()
    counts = processed.layers["counts"][ctrl][:, processed.var_names.get_indexer(list(targets.values()))]
    detected = np.asarray((counts > 0).mean(axis=0)).ravel()
    return pd.Series(detected, index=list(targets), dtype=float)


def _rows(task: str, values: dict[str, float]) -> list[dict]:
    return [{"task": task, "metric": k, "value": v, "sd": np.nan, "n": 1} for k, v in values.items()]


def run_tasks(x: np.ndarray, processed: ad.AnnData, splits: pd.DataFrame, relationships: pd.DataFrame | None,
              nulls: list[str], config: CellBenchmarkConfig) -> tuple[list[dict], pd.DataFrame]:
    """All requested tasks on one aligned embedding: summary rows and a per-perturbation table."""
    obs = processed.obs
    pert = obs["perturbation"].astype(str).to_numpy()
    batch = obs["batch"].astype(str).to_numpy()
    control = processed.uns["pertprobe"]["control_label"]
    is_control = pert == control
    rows: list[dict] = []
    per_pert = pd.DataFrame({"perturbation": sorted(set(pert[~is_control]))})
    if "batch" in config.tasks:
        rows += _rows("batch", batch_metrics(x, batch, pert, config.n_neighbors, config.max_cells_batch, config.seed))
    if "separability" in config.tasks:
        test_batches = holdout_batches(batch, list(config.holdout_batches))
        if test_batches:
            rows += _rows("separability", probe_accuracy(x, pert, batch, is_control, test_batches, config.seed))
        energy = energy_to_control(x, pert, is_control, config.n_permutations, config.max_controls, config.seed)
        per_pert = per_pert.merge(energy, on="perturbation", how="left")
        tested = ~per_pert["perturbation"].isin(nulls)
        rows += _rows("separability", {
            "energy_frac_significant": float((per_pert.loc[tested, "energy_p_value"] < 0.05).mean()),
            "energy_frac_significant_bh": float((per_pert.loc[tested, "energy_q_value"] < 0.05).mean()),
            "energy_distance_median": float(per_pert.loc[tested, "energy_distance"].median())})
    if "consistency" in config.tasks:
        replicate, unit = replicate_labels(batch, config.seed)
        if nulls:
            cons = replicate_consistency(x, pert, replicate, is_control, nulls, config.n_null, config.seed)
            cons["replicate_unit"] = unit
            per_pert = per_pert.merge(cons, on="perturbation", how="left")
            tested = per_pert[~per_pert["is_null"]]
            rows += _rows("consistency", {
                "consistency_frac_significant": float((tested["consistency_p_value"] < 0.05).mean()),
                "consistency_mean": float(tested["consistency"].mean()),
                "null_consistency_mean": float(per_pert.loc[per_pert["is_null"], "consistency"].mean()),
                "n_null_perturbations": float(len(nulls))})
    if "relationships" in config.tasks and relationships is not None:
        singles = ~is_control & (np.char.find(pert.astype(str), "+") < 0)
        profiles = group_means(x[singles], pert[singles])[0]
        recall = relationship_recall(profiles, relationships, config.tail)
        for rec in recall.to_dict("records"):
            suffix = "" if rec["source"] == "all" else f"_{rec['source']}"
            rows += _rows("relationships", {f"recall{suffix}": rec["recall"], f"recall_low{suffix}": rec["recall_low"],
                                            f"recall_high{suffix}": rec["recall_high"],
                                            f"n_pairs{suffix}": float(rec["n_pairs"])})
    if "integrity" in config.tasks:
        dec = decoder_over_splits(x, processed.X, pert, batch, is_control, splits, config.max_decoder_cells)
        agg = dec.groupby("metric", sort=True)["value"].agg(["mean", "std", "count"])
        rows += [{"task": "integrity", "metric": m, "value": r["mean"], "sd": r["std"], "n": int(r["count"])}
                 for m, r in agg.iterrows()]
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
        rows, per_pert = run_tasks(x, processed, splits, relationships, nulls, config)
        summaries += [{"dataset": dataset, "model": model, "alignment": method, **r} for r in rows]
        per_pert.insert(0, "alignment", method)
        tables.append(per_pert)
    per_pert = pd.concat(tables, ignore_index=True)
    per_pert.insert(0, "model", model)
    per_pert.insert(0, "dataset", dataset)
    return pd.DataFrame(summaries, columns=SUMMARY_COLUMNS), per_pert
