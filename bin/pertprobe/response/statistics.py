"""Paired comparisons between predictors.

* Paired t-test across splits (folds x seeds) on per-split means, as the "simple controls" study
  compared models across repeated runs (scipy.stats.ttest_rel).
* Bootstrap 95% confidence interval of the mean per-perturbation difference: each perturbation's
  difference is averaged over the seeds it was tested in, then perturbations are resampled.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats

N_BOOTSTRAP = 2000
COLUMNS = ["dataset", "metric", "predictor_a", "predictor_b", "mean_difference", "t_statistic", "p_value", "n_splits",
           "ci_low", "ci_high", "n_perturbations"]


def _label(frame: pd.DataFrame) -> pd.Series:
    return frame["model"] + np.where(frame["embedding"] == "none", "", "/" + frame["embedding"])


def paired_comparisons(metrics: pd.DataFrame, exclude: tuple[str, ...] = ("ceiling",), seed: int = 0,
                       n_bootstrap: int = N_BOOTSTRAP) -> pd.DataFrame:
    """All pairs of predictors per dataset and metric: mean difference (a − b), paired t-test over
    splits, and a bootstrap CI over perturbations."""
    data = metrics[~metrics["model"].isin(exclude)].copy()
    data["predictor"] = _label(data)
    rows = []
    rng = np.random.default_rng(seed)
    for (dataset, metric), group in data.groupby(["dataset", "metric"], sort=True):
        per_split = group.groupby(["predictor", "seed", "split"])["value"].mean().unstack("predictor")
        per_pert = group.groupby(["predictor", "perturbation"])["value"].mean().unstack("predictor")
        names = sorted(per_split.columns)
        split_values = per_split[names].to_numpy(dtype=np.float64)
        pert_values = per_pert.reindex(columns=names).to_numpy(dtype=np.float64)
        for i, j in combinations(range(len(names)), 2):
            both = ~np.isnan(split_values[:, i]) & ~np.isnan(split_values[:, j])
            sa, sb = split_values[both, i], split_values[both, j]
            perts = pert_values[:, i] - pert_values[:, j]
            perts = perts[~np.isnan(perts)]
            t, p = (stats.ttest_rel(sa, sb) if len(sa) > 1 and (sa - sb).std(ddof=1) > 0 else (np.nan, np.nan))
            if len(perts):
                boot = perts[rng.integers(0, len(perts), size=(n_bootstrap, len(perts)))].mean(axis=1)
                lo, hi = np.percentile(boot, [2.5, 97.5])
            else:
                lo = hi = np.nan
            rows.append({"dataset": dataset, "metric": metric, "predictor_a": names[i], "predictor_b": names[j],
                         "mean_difference": float((sa - sb).mean()) if len(sa) else np.nan,
                         "t_statistic": float(t), "p_value": float(p), "n_splits": len(sa),
                         "ci_low": float(lo), "ci_high": float(hi), "n_perturbations": len(perts)})
    return pd.DataFrame(rows, columns=COLUMNS)
