"""Paired comparisons between predictors, with tests whose unit respects the dependence.

Repeated seeds re-test the same perturbations, and K-fold training sets overlap, so per-split
means are not independent: a plain paired t-test over folds × seeds overstates the evidence.
Every pair of predictors per dataset and metric gets (docs/metrics.md#statistics):

* a paired t-test over **perturbations** (`p_perturbation`): each perturbation's difference is
  averaged over the seeds it was tested in, then tested against 0 (scipy.stats.ttest_1samp);
* the **corrected resampled t-test** over splits (`p_corrected`) of Nadeau & Bengio (2003), for
  repeated K-fold cross-validation: the variance of the per-split differences is inflated by
  (1/J + n_test/n_train) instead of 1/J, J = folds × seeds, n_test/n_train = 1/(K − 1);
* a 95% bootstrap confidence interval (`ci_low`, `ci_high`) of the mean per-perturbation
  difference, resampling perturbations (the same unit as `p_perturbation`).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats

from .bounds import ANCHORS

N_BOOTSTRAP = 2000
COLUMNS = ["dataset", "task", "metric", "predictor_a", "predictor_b", "mean_difference", "p_perturbation", "t_corrected",
           "p_corrected", "n_splits", "n_folds", "ci_low", "ci_high", "n_perturbations"]


def _label(frame: pd.DataFrame) -> pd.Series:
    return frame["model"] + np.where(frame["embedding"] == "none", "", "/" + frame["embedding"])


def corrected_resampled_ttest(differences: np.ndarray, n_folds: int) -> tuple[float, float]:
    """Nadeau & Bengio's corrected resampled t-test of per-split differences from repeated K-fold
    cross-validation (K = `n_folds`): t = mean / sqrt((1/J + 1/(K − 1)) · var), J − 1 degrees of
    freedom. NaN with fewer than two splits, one fold, or no spread."""
    d = np.asarray(differences, dtype=np.float64)
    if len(d) < 2 or n_folds < 2 or d.std(ddof=1) == 0:
        return np.nan, np.nan
    t = d.mean() / np.sqrt((1 / len(d) + 1 / (n_folds - 1)) * d.var(ddof=1))
    return float(t), float(2 * stats.t.sf(abs(t), len(d) - 1))


def paired_comparisons(metrics: pd.DataFrame, exclude: tuple[str, ...] = ANCHORS, seed: int = 0,
                       n_bootstrap: int = N_BOOTSTRAP) -> pd.DataFrame:
    """All pairs of predictors per dataset, task and metric: mean difference (a − b) of per-split means,
    the two tests and the bootstrap CI described in the module docstring."""
    data = metrics[~metrics["model"].isin(exclude)].copy()
    data["predictor"] = _label(data)
    rows = []
    rng = np.random.default_rng(seed)
    for (dataset, task, metric), group in data.groupby(["dataset", "task", "metric"], sort=True):
        n_folds = group["split"].nunique()
        per_split = group.groupby(["predictor", "seed", "split"])["value"].mean().unstack("predictor")
        per_pert = group.groupby(["predictor", "perturbation"])["value"].mean().unstack("predictor")
        names = sorted(per_split.columns)
        split_values = per_split[names].to_numpy(dtype=np.float64)
        pert_values = per_pert.reindex(columns=names).to_numpy(dtype=np.float64)
        for i, j in combinations(range(len(names)), 2):
            both = ~np.isnan(split_values[:, i]) & ~np.isnan(split_values[:, j])
            splits = split_values[both, i] - split_values[both, j]
            perts = pert_values[:, i] - pert_values[:, j]
            perts = perts[~np.isnan(perts)]
            t_corr, p_corr = corrected_resampled_ttest(splits, n_folds)
            p_pert = (float(stats.ttest_1samp(perts, 0.0).pvalue) if len(perts) > 1 and perts.std(ddof=1) > 0
                      else np.nan)
            if len(perts):
                boot = perts[rng.integers(0, len(perts), size=(n_bootstrap, len(perts)))].mean(axis=1)
                lo, hi = np.percentile(boot, [2.5, 97.5])
            else:
                lo = hi = np.nan
            rows.append({"dataset": dataset, "task": task, "metric": metric, "predictor_a": names[i], "predictor_b": names[j],
                         "mean_difference": float(splits.mean()) if len(splits) else np.nan,
                         "p_perturbation": p_pert, "t_corrected": t_corr, "p_corrected": p_corr,
                         "n_splits": len(splits), "n_folds": n_folds, "ci_low": float(lo), "ci_high": float(hi),
                         "n_perturbations": len(perts)})
    return pd.DataFrame(rows, columns=COLUMNS)
