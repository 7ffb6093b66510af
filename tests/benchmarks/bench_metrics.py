#!/usr/bin/env python3
"""Benchmark pertprobe's metric suite against cell-eval on a Replogle-sized synthetic problem.

The problem (deterministic, seeded): 2,000 test perturbations x 8,000 genes of log-normalized
pseudobulk profiles ("observed"), noisy shrunken "predicted" profiles, a control mean and 20 DE
genes per perturbation. It times `pertprobe.response.metrics.response_metrics` (the whole suite) and, on
identical inputs, cell-eval's metrics that overlap with ours:

  cell-eval (cell_eval.metrics)              pertprobe             relation
  pearson_delta(pair)                        pearson_delta         equal
  mse(pair)                                  mse                   equal (raw profiles, not delta)
  discrimination_score(pair, "cosine",       rank_delta            1 - rank_delta * (N - 1) / N
      exclude_target_gene=False)

cell-eval works on cell-level AnnData and pseudobulks it by perturbation, so each perturbation is
given one "cell" (its pseudobulk row) and the control one cell holding the control mean, in both
the real and the predicted AnnData; every pseudobulk and both controls then equal ours exactly.
cell-eval's discrimination score fixes a *prediction* and ranks all *observations* by distance to
it, whereas rank_delta fixes an observation and ranks all predictions; the pair is therefore built
with real and predicted swapped (pearson_delta and mse are symmetric, so they are unaffected). It
also divides by N (self included) instead of N - 1, hence the affine relation above.

Values must agree to 1e-6 (exit status 1 otherwise); the speed targets (>= 10x faster than
cell-eval on the overlapping metrics, whole suite < 2 s) are only reported. cell-eval is optional:
`pip install cell-eval==0.8.2` (or the project's `bench` extra). Its discrimination score is
O(N^2 x genes) in a Python loop, so at full size the cell-eval half takes several minutes.

Run: python tests/benchmarks/bench_metrics.py [--n-perts N] [--n-genes G] [--skip-cell-eval]
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "bin") not in sys.path:  # the package lives in bin/ (pyproject package-dir)
    sys.path.insert(0, str(ROOT / "bin"))

from pertprobe.response.metrics import response_metrics  # noqa: E402

TOLERANCE = 1e-6
TARGET_SPEEDUP = 10.0
TARGET_SUITE_SECONDS = 2.0
CONTROL_LABEL = "non-targeting"
PERT_COL = "target_gene"
CELL_EVAL_HINT = ("cell-eval is not installed; skipping the comparison. Install it with "
                  "`pip install cell-eval==0.8.2` (the Makefile's `bench` target installs the `bench` extra).")


@dataclass
class Problem:
    """Pseudobulk inputs shared by both libraries (perturbations x genes, float64)."""

    obs: pd.DataFrame
    pred: pd.DataFrame
    control: np.ndarray
    de_genes: dict[str, list[str]]


def make_problem(n_perts: int = 2000, n_genes: int = 8000, n_de: int = 20, n_programs: int = 30,
                 fidelity: float = 0.2, seed: int = 0) -> Problem:
    """Deterministic synthetic Replogle-like split.

    Observed delta = a response common to all perturbations + a specific effect (a few shared gene
    programs, 50 strongly responding genes, knockdown of the target). The prediction gets the common
    response and the target knockdown right but only `fidelity` of the specific effect, the rest
    being an independent draw of the same kind, so its scores are neither perfect nor random.
    """
    rng = np.random.default_rng(seed)
    genes = np.array([f"GENE{i:05d}" for i in range(n_genes)])
    targets = rng.choice(n_genes, size=n_perts, replace=False)  # perturbations are named by target gene
    control = np.log1p(rng.gamma(0.5, 4.0, size=n_genes))
    programs = 0.03 * rng.standard_normal((n_programs, n_genes))
    rows = np.arange(n_perts)[:, None]

    def specific() -> np.ndarray:
        out = rng.standard_normal((n_perts, n_programs)) @ programs
        strong = rng.integers(0, n_genes, size=(n_perts, 50))
        out[rows, strong] += rng.normal(0.0, 0.4, size=strong.shape)
        return out

    base = control + 0.2 * rng.standard_normal(n_genes) * (rng.random(n_genes) < 0.05)  # common response
    knockdown = np.zeros((n_perts, n_genes))
    knockdown[np.arange(n_perts), targets] = -0.8 * control[targets]
    obs = base + knockdown + specific()
    obs += rng.normal(0.0, 0.05, size=obs.shape)  # pseudobulk sampling noise
    pred = fidelity * obs - fidelity * (base + knockdown)  # fidelity x the observed specific effect...
    pred += base + knockdown + np.sqrt(1.0 - fidelity**2) * specific()  # ...plus an unrelated one
    del knockdown
    np.maximum(obs, 0.0, out=obs)  # log-normalized expression is non-negative
    np.maximum(pred, 0.0, out=pred)

    # DE genes: the n_de largest |observed delta| per perturbation, strongest first.
    delta = np.abs(obs - control)
    top = np.argpartition(-delta, n_de - 1, axis=1)[:, :n_de]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(delta, top, axis=1), axis=1), axis=1)
    del delta
    perts = genes[targets]
    de_genes = {p: genes[idx].tolist() for p, idx in zip(perts, top, strict=True)}
    index = pd.Index(perts, name="perturbation")
    columns = pd.Index(genes, name="gene")
    return Problem(pd.DataFrame(obs, index=index, columns=columns),
                   pd.DataFrame(pred, index=index, columns=columns), control, de_genes)


def best_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Minimum wall-clock seconds over `repeats` calls, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def run_pertprobe(problem: Problem, repeats: int) -> tuple[float, pd.DataFrame]:
    """Time the whole pertprobe suite; returns (seconds, wide table perturbation x metric)."""
    kwargs: dict[str, Any] = {}
    if "de_genes" in inspect.signature(response_metrics).parameters:
        kwargs["de_genes"] = problem.de_genes
    else:
        print("note: response_metrics has no de_genes parameter; timing it without DE metrics")
    seconds, long = best_time(lambda: response_metrics(problem.pred, problem.obs, problem.control, **kwargs),
                              repeats)
    wide = long.pivot(index="perturbation", columns="metric", values="value")
    return seconds, wide.reindex(problem.obs.index)


def _anndata(matrix: pd.DataFrame, control: np.ndarray) -> Any:
    """One cell per perturbation (its pseudobulk) plus one control cell holding the control mean."""
    import anndata as ad

    x = np.vstack([matrix.to_numpy(dtype=np.float64), control[None, :]])
    labels = [*matrix.index.astype(str), CONTROL_LABEL]
    obs = pd.DataFrame({PERT_COL: labels}, index=[f"cell{i}" for i in range(len(labels))])
    return ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=matrix.columns.astype(str)))


def run_cell_eval(problem: Problem) -> tuple[dict[str, float], dict[str, pd.Series]] | None:
    """Time cell-eval's overlapping metrics; returns (seconds by step, values by metric) or None."""
    os.environ.setdefault("TQDM_DISABLE", "1")  # cell-eval wraps its loops in tqdm progress bars
    try:
        import cell_eval
        from cell_eval import PerturbationAnndataPair
        from cell_eval.metrics import discrimination_score, mse, pearson_delta
    except ImportError:
        print(CELL_EVAL_HINT)
        return None
    from importlib.metadata import version

    print(f"cell-eval {version('cell-eval')} from {Path(cell_eval.__file__).parent}")
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    # Swapped on purpose: cell-eval ranks observations around a prediction, rank_delta the reverse.
    real_ad, pred_ad = _anndata(problem.pred, problem.control), _anndata(problem.obs, problem.control)
    pair = PerturbationAnndataPair(real=real_ad, pred=pred_ad, pert_col=PERT_COL, control_pert=CONTROL_LABEL)
    seconds["anndata + pair setup"] = time.perf_counter() - start
    if hasattr(pair, "_initialize_bulk_arrays"):  # memoized pseudobulk; otherwise paid by the first metric
        start = time.perf_counter()
        pair._initialize_bulk_arrays()
        seconds["pseudobulk (polars group_by)"] = time.perf_counter() - start

    metrics: dict[str, Callable[[], dict[str, float]]] = {
        "pearson_delta": lambda: pearson_delta(pair),
        "mse": lambda: mse(pair),
        "discrimination_score_cosine": lambda: discrimination_score(pair, metric="cosine",
                                                                    exclude_target_gene=False),
    }
    values: dict[str, pd.Series] = {}
    for name, fn in metrics.items():
        seconds[name], result = best_time(fn, 1)
        values[name] = pd.Series(result, dtype=np.float64).reindex(problem.obs.index.astype(str))
        print(f"  cell-eval {name}: {seconds[name]:.2f} s")
    return seconds, values


def compare(ours: pd.DataFrame, theirs: dict[str, pd.Series]) -> dict[str, float]:
    """Max |difference| per overlapping metric, after mapping rank_delta onto cell-eval's scale."""
    n = len(ours)
    expected = {
        "pearson_delta": ours["pearson_delta"],
        "mse": ours["mse"],
        "discrimination_score_cosine": 1.0 - ours["rank_delta"] * (n - 1) / n,
    }
    diffs = {}
    for name, ref in expected.items():
        a, b = ref.to_numpy(), theirs[name].to_numpy()
        same_nan = np.isnan(a) == np.isnan(b)
        diffs[name] = float(np.nanmax(np.abs(a - b))) if same_nan.all() else float("inf")
    return diffs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-perts", type=int, default=2000)
    parser.add_argument("--n-genes", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="pertprobe timing: best of this many runs")
    parser.add_argument("--skip-cell-eval", action="store_true")
    args = parser.parse_args([] if argv is None else argv)

    start = time.perf_counter()
    problem = make_problem(args.n_perts, args.n_genes, seed=args.seed)
    print(f"synthetic problem: {args.n_perts} perturbations x {args.n_genes} genes, 20 DE genes each "
          f"(built in {time.perf_counter() - start:.1f} s)")

    suite_s, ours = run_pertprobe(problem, args.repeats)
    print(f"pertprobe response_metrics ({ours.shape[1]} metrics): {suite_s:.3f} s (best of {args.repeats}); "
          f"mean rank_delta {ours['rank_delta'].mean():.3f}, pearson_delta {ours['pearson_delta'].mean():.3f}")
    suite_ok = suite_s < TARGET_SUITE_SECONDS
    print(f"target: whole pertprobe suite < {TARGET_SUITE_SECONDS:.0f} s ... {'MET' if suite_ok else 'NOT MET'}")

    ce = None if args.skip_cell_eval else run_cell_eval(problem)
    if ce is None:
        return 0
    ce_seconds, theirs = ce
    diffs = compare(ours, theirs)

    # pertprobe has no per-metric entry point, so every row compares against the whole suite
    # (all its metrics): a conservative ratio.
    print("\npertprobe s = whole response_metrics suite; ratio = cell-eval s / pertprobe s")
    print(f"{'metric':<30}{'max |diff|':>12}{'pertprobe s':>13}{'cell-eval s':>13}{'ratio':>9}")
    for name, diff in diffs.items():
        print(f"{name:<30}{diff:>12.2e}{suite_s:>13.3f}{ce_seconds[name]:>13.2f}{ce_seconds[name] / suite_s:>8.0f}x")
    overlap_s = sum(ce_seconds[m] for m in diffs)
    print(f"{'overlapping metrics, total':<30}{max(diffs.values()):>12.2e}{suite_s:>13.3f}{overlap_s:>13.2f}"
          f"{overlap_s / suite_s:>8.0f}x")
    for step in ("anndata + pair setup", "pseudobulk (polars group_by)"):
        if step in ce_seconds:
            print(f"  (cell-eval, not in the total) {step}: {ce_seconds[step]:.2f} s")

    speed_ok = overlap_s / suite_s >= TARGET_SPEEDUP
    print(f"\ntarget: >= {TARGET_SPEEDUP:.0f}x faster than cell-eval on the overlapping metrics ... "
          f"{'MET' if speed_ok else 'NOT MET'} ({overlap_s / suite_s:.0f}x)")
    print(f"target: whole pertprobe suite < {TARGET_SUITE_SECONDS:.0f} s ... {'MET' if suite_ok else 'NOT MET'} "
          f"({suite_s:.2f} s)")
    bad = {m: d for m, d in diffs.items() if not d <= TOLERANCE}
    if bad:
        print(f"FAIL: values disagree beyond {TOLERANCE:g}: {bad}")
        return 1
    print(f"agreement: all overlapping metrics within {TOLERANCE:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
