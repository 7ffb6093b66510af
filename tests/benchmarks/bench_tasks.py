#!/usr/bin/env python3
"""Benchmark the response tasks at Norman scale: a simulated combination screen (~100 singles, ~100 doubles).

Simulates the screen (known ground truth, half of the doubles with an interaction term), runs
PREPROCESS with every task, then on every split of each task the floors (`mean`, `additive`,
`no_change`) and the linear model on the split's data-derived PCA gene embedding, and scores them.
Prints the wall time and peak memory (RSS high-water mark) of each step, the splits per task, and the
combination task's pearson_delta by seen category (2/2, 1/2, 0/2). Timing is printed, never asserted.

Run: python tests/benchmarks/bench_tasks.py [--n-single 100] [--n-double 100] [--cells 100] [--unseen 0.25]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "bin") not in sys.path:
    sys.path.insert(0, str(ROOT / "bin"))

from pertprobe.data.dataset import DatasetSpec  # noqa: E402
from pertprobe.data.preprocess import PreprocessConfig, load_counts, preprocess  # noqa: E402
from pertprobe.data.simulate import SimulationConfig, simulate  # noqa: E402
from pertprobe.data.splits import SplitKey, split_sets  # noqa: E402
from pertprobe.data.tasks import seen_singles  # noqa: E402
from pertprobe.response.gene_embeddings import data_pca  # noqa: E402
from pertprobe.response.metrics import response_metrics  # noqa: E402
from pertprobe.response.predictors import predict  # noqa: E402

PREDICTORS = ("no_change", "mean", "additive", "linear")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-single", type=int, default=100)
    parser.add_argument("--n-double", type=int, default=100)
    parser.add_argument("--cells", type=int, default=100, help="Cells per perturbation.")
    parser.add_argument("--n-genes", type=int, default=2000)
    parser.add_argument("--unseen", type=float, default=0.25, help="--combination_unseen_singles")
    parser.add_argument("--n-folds", type=int, default=5)
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    sim = simulate(SimulationConfig(n_genes=args.n_genes, n_programs=10, program_size=30, n_single=args.n_single,
                                    n_double=args.n_double, cells_per_perturbation=args.cells,
                                    n_control=10 * args.cells, n_nonexpressed=0, seed=0))
    print(f"simulate: {sim.counts.shape[0]} cells x {sim.counts.shape[1]} genes, {len(sim.truth_obs)} perturbations "
          f"({time.perf_counter() - t0:.1f} s, peak {peak_mb():.0f} MB)", flush=True)
    spec = DatasetSpec(batch_col="batch")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "screen.h5ad"
        sim.to_anndata().write_h5ad(path)
        t0 = time.perf_counter()
        config = PreprocessConfig(n_folds=args.n_folds, seeds=(0,), combination_unseen_singles=args.unseen)
        result = preprocess(load_counts(path, spec), spec, config)
    print(f"preprocess (every task): {time.perf_counter() - t0:.1f} s, peak {peak_mb():.0f} MB; tasks: "
          f"{result.summary['tasks']}", flush=True)

    pb, tables = result.pseudobulk, []
    for task, rows in result.splits.groupby("task", sort=False):
        t0 = time.perf_counter()
        for (seed, fold), _ in rows.groupby(["seed", "fold"]):
            key = SplitKey(task, int(seed), int(fold))
            train, test = split_sets(result.splits, key)
            embedding = data_pca(pb.means.loc[train], pb.targets, 10, key.seed)
            for name in PREDICTORS:
                pred, _ = predict(name, pb, train, test, embedding=embedding if name == "linear" else None,
                                  seed=key.seed)
                scored = response_metrics(pred, pb.means.loc[test], pb.control, None, metrics=["pearson_delta"])
                tables.append(scored.assign(dataset="sim", model=name, embedding="none", **key.labels))
        print(f"{task}: {rows.groupby(['seed', 'fold']).ngroups} splits x {len(PREDICTORS)} predictors in "
              f"{time.perf_counter() - t0:.1f} s, peak {peak_mb():.0f} MB", flush=True)
    metrics = pd.concat(tables, ignore_index=True)
    seen = seen_singles(result.splits).assign(dataset="sim")
    joined = metrics[metrics["task"] == "combination"].merge(seen, on=["dataset", "task", "seed", "split", "perturbation"])
    table = joined.pivot_table(index="model", columns="seen", values="value", aggfunc="mean")
    counts = seen[seen["task"] == "combination"]["seen"].value_counts().to_dict()
    print(f"combination task, pearson_delta by seen singles (test combinations per category: {counts}):")
    print(table.round(3).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
