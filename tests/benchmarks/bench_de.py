#!/usr/bin/env python3
"""Benchmark DE-gene selection against scanpy on a Replogle-sized synthetic screen.

Builds ~300k cells x 8k genes (sparse, log-normalized, deterministic) in 2,000 perturbation
groups plus controls, then selects the top 20 genes per group by |Welch t| against the controls
with `pertprobe.data.de` (`de_statistics` + `top_de_genes`, without the significance threshold and
expression filter, which scanpy does not apply) and with scanpy's `rank_genes_groups(reference=control,
method="t-test", rankby_abs=True, n_genes=20)`. Prints both times, the speed ratio (target
>= 10x) and how many groups have identical top-20 sets (exit status 1 unless every group that
differs does so only through a tie at rank 20).

Run: python tests/benchmarks/bench_de.py [--n-cells N] [--n-genes G] [--n-groups K]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "bin") not in sys.path:
    sys.path.insert(0, str(ROOT / "bin"))

from pertprobe.data.de import DEConfig, de_statistics, group_moments, top_de_genes  # noqa: E402

UNFILTERED = DEConfig(n_genes=20, alpha=1.0 + 1e-9, min_fraction=0.0)  # scanpy's top 20 by |t|

TARGET_SPEEDUP = 10.0


def build(n_cells: int, n_genes: int, n_groups: int, seed: int) -> tuple[sp.csr_matrix, np.ndarray, pd.Index]:
    """Poisson counts around gene- and group-specific rates, normalized to 1e4 and log1p'ed."""
    rng = np.random.default_rng(seed)
    base = rng.lognormal(-1.5, 1.2, size=n_genes).astype(np.float32)
    n_control = n_cells // 10
    labels = np.concatenate([np.full(n_control, "control"),
                             rng.integers(0, n_groups, size=n_cells - n_control).astype(str)]).astype(object)
    labels[n_control:] = "P" + labels[n_control:]
    effects = np.ones((n_groups, n_genes), dtype=np.float32)
    for g in range(n_groups):  # each group moves 30 genes by 2-4x up or down
        idx = rng.choice(n_genes, size=30, replace=False)
        effects[g, idx] = rng.uniform(2, 4, size=30) ** rng.choice([-1, 1], size=30)
    codes = np.array([-1 if lab == "control" else int(lab[1:]) for lab in labels])
    blocks = []
    for start in range(0, n_cells, 5000):
        c = codes[start:start + 5000]
        rate = np.tile(base, (len(c), 1))
        rate[c >= 0] *= effects[c[c >= 0]]
        counts = rng.poisson(rate).astype(np.float32)
        counts = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) * 1e4
        blocks.append(sp.csr_matrix(np.log1p(counts)))
    return sp.vstack(blocks, format="csr"), labels.astype(str), pd.Index([f"G{i}" for i in range(n_genes)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-cells", type=int, default=300_000)
    parser.add_argument("--n-genes", type=int, default=8_000)
    parser.add_argument("--n-groups", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    X, labels, genes = build(args.n_cells, args.n_genes, args.n_groups, args.seed)
    print(f"synthetic screen: {X.shape[0]} cells x {X.shape[1]} genes, {len(set(labels)) - 1} groups, "
          f"{X.nnz / np.prod(X.shape):.1%} non-zero (built in {time.perf_counter() - t0:.1f} s)")

    t0 = time.perf_counter()
    ours = top_de_genes(de_statistics(X, labels, genes, "control", UNFILTERED), UNFILTERED)
    t_ours = time.perf_counter() - t0
    print(f"pertprobe de_statistics + top_de_genes: {t_ours:.2f} s")

    import anndata as ad
    import scanpy as sc

    adata = ad.AnnData(X=X, obs=pd.DataFrame({"g": pd.Categorical(labels)}, index=np.arange(len(labels)).astype(str)),
                       var=pd.DataFrame(index=genes))
    adata.uns["log1p"] = {"base": None}
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.tl.rank_genes_groups(adata, "g", reference="control", method="t-test", rankby_abs=True, n_genes=20)
    t_scanpy = time.perf_counter() - t0
    print(f"scanpy rank_genes_groups:  {t_scanpy:.2f} s")

    names = adata.uns["rank_genes_groups"]["names"]
    groups, n, mean, var, _ = group_moments(X, labels)
    ref = int(np.flatnonzero(groups == "control")[0])
    mismatched, untied = 0, 0
    for group, table in ours.groupby("perturbation"):
        if set(table["gene"]) != set(names[group]):
            mismatched += 1
            g = int(np.flatnonzero(groups == group)[0])
            t = np.abs((mean[g] - mean[ref]) / np.sqrt(var[g] / n[g] + var[ref] / n[ref]))
            ranked = np.sort(np.nan_to_num(t))[::-1]
            untied += not np.isclose(ranked[19], ranked[20], rtol=1e-6)
    ratio = t_scanpy / t_ours
    print(f"speed ratio scanpy / pertprobe: {ratio:.1f}x (target >= {TARGET_SPEEDUP:.0f}x: "
          f"{'met' if ratio >= TARGET_SPEEDUP else 'NOT MET'})")
    print(f"identical top-20 sets: {len(groups) - 1 - mismatched}/{len(groups) - 1} groups "
          f"({mismatched - untied} differ only through a tie at rank 20, {untied} otherwise)")
    return 1 if untied else 0


if __name__ == "__main__":
    sys.exit(main())
