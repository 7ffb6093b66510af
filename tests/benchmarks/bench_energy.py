#!/usr/bin/env python3
"""Benchmark the energy-distance permutation test against pertpy's `DistanceTest("edistance")`.

Builds an embedding of K perturbation groups (N cells each, a quarter shifted away from the
controls) plus C control cells in d dimensions, then tests every group against the controls with
B permutations using `pertprobe.cells.separability.energy_to_control` and pertpy. Prints both times,
the speed ratio, the largest relative difference of the energy distances (exit status 1 above
1e-6) and how often the two agree on p < 0.05.

Run: python tests/benchmarks/bench_energy.py [--n-groups K] [--n-cells N] [--n-controls C] [--dims d] [--perms B]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "bin") not in sys.path:
    sys.path.insert(0, str(ROOT / "bin"))

from pertprobe.cells.separability import energy_to_control  # noqa: E402


def build(n_groups: int, n_cells: int, n_controls: int, dims: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # Groups appear in sorted order ("P…" < "control"): pertpy 1.0.3's DistanceTest assigns p-values
    # computed in sorted group order to groups in order of appearance, so any other order misaligns them.
    labels = np.array([f"P{g:04d}" for g in range(n_groups) for _ in range(n_cells)] + ["control"] * n_controls)
    values = rng.normal(size=(len(labels), dims))
    shift = rng.normal(size=(n_groups, dims)) * 0.3
    shifted = np.arange(n_groups) % 4 == 0
    for g in np.flatnonzero(shifted):
        values[labels == f"P{g:04d}"] += shift[g]
    return values, labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-groups", type=int, default=100)
    parser.add_argument("--n-cells", type=int, default=100)
    parser.add_argument("--n-controls", type=int, default=1000)
    parser.add_argument("--dims", type=int, default=50)
    parser.add_argument("--perms", type=int, default=200)
    args = parser.parse_args(argv)
    import anndata as ad
    import pertpy as pt

    values, labels = build(args.n_groups, args.n_cells, args.n_controls, args.dims, seed=0)
    is_control = labels == "control"
    start = time.perf_counter()
    ours = energy_to_control(values, labels, is_control, args.perms, max_controls=args.n_controls, seed=0)
    t_ours = time.perf_counter() - start

    adata = ad.AnnData(np.zeros((len(labels), 1), dtype=np.float32),
                       obs=pd.DataFrame({"perturbation": labels}, index=[str(i) for i in range(len(labels))]))
    adata.obsm["emb"] = values
    test = pt.tl.DistanceTest("edistance", n_perms=args.perms, obsm_key="emb", alpha=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        theirs = test(adata, groupby="perturbation", contrast="control", show_progressbar=False)
        t_theirs = time.perf_counter() - start
    theirs = theirs.loc[ours["perturbation"]]
    rel = np.abs(ours["energy_distance"].to_numpy() - theirs["distance"].to_numpy()) / np.abs(theirs["distance"].to_numpy())
    agree = np.mean((ours["energy_p_value"].to_numpy() < 0.05) == (theirs["pvalue"].to_numpy() < 0.05))
    print(f"{args.n_groups} groups x {args.n_cells} cells vs {args.n_controls} controls, d={args.dims}, "
          f"B={args.perms}: pertprobe {t_ours:.2f} s, pertpy {t_theirs:.2f} s, ratio {t_theirs / t_ours:.1f}x; "
          f"max rel. diff of E {rel.max():.2e}; p<0.05 calls agree on {agree:.0%} of groups")
    return int(rel.max() > 1e-6)


if __name__ == "__main__":
    sys.exit(main())
