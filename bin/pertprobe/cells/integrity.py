"""Reconstruction of expression from cell embeddings on unseen perturbations, and Structural
Integrity (Bendidi et al. 2024; DESIGN.md)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..data.pseudobulk import group_means
from ..data.tasks import UNSEEN_PERTURBATION

RIDGE_ALPHAS = tuple(10.0 ** np.arange(-2, 6))


def structural_integrity(pred: list[np.ndarray], obs: list[np.ndarray]) -> float:
    """SI = 1 − mean_b(‖Ỹpred_b − Ỹobs_b‖_F / n_b) / (2 · mean_b(‖Ỹobs_b‖_F / n_b)), over batches b,
    where Ỹ_b are perturbations x genes profiles of batch b with that batch's control mean removed
    and n_b their number. 1 is perfect; a decoder that predicts no change scores 0.5."""
    err = np.mean([np.linalg.norm(p - o) / len(o) for p, o in zip(pred, obs, strict=True)])
    scale = np.mean([np.linalg.norm(o) / len(o) for o in obs])
    return float(1.0 - err / (2.0 * scale)) if scale > 0 else np.nan


def per_gene_correlations(pred: np.ndarray, obs: np.ndarray) -> tuple[float, float]:
    """Mean over genes of the Pearson and Spearman correlation across profiles (constant genes skipped)."""
    from scipy.stats import rankdata

    def pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a, b = a - a.mean(axis=0), b - b.mean(axis=0)
        denom = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
        return np.divide((a * b).sum(axis=0), denom, out=np.full(a.shape[1], np.nan), where=denom > 0)

    r = pearson(pred, obs)
    rho = pearson(rankdata(pred, axis=0), rankdata(obs, axis=0))
    return float(np.nanmean(r)) if np.isfinite(r).any() else np.nan, \
        float(np.nanmean(rho)) if np.isfinite(rho).any() else np.nan


def _dense(x) -> np.ndarray:
    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64)


def decoder_scores(values: np.ndarray, expression, perturbation: np.ndarray, batch: np.ndarray,
                   is_control: np.ndarray, train_perts: set[str], test_perts: set[str],
                   max_train_cells: int, seed: int) -> dict[str, float]:
    """Fit a ridge decoder (embedding -> log-normalized expression; alpha by generalized CV) on the
    cells of the training perturbations and controls, and score it on the unseen test perturbations:
    Structural Integrity, per-gene Pearson/Spearman and MSE of control-removed per-batch profiles."""
    from sklearn.linear_model import RidgeCV
    from sklearn.preprocessing import StandardScaler

    train = np.flatnonzero(is_control | np.isin(perturbation, list(train_perts)))
    if len(train) > max_train_cells:
        train = np.sort(np.random.default_rng(seed).choice(train, size=max_train_cells, replace=False))
    scaler = StandardScaler().fit(values[train])
    decoder = RidgeCV(alphas=RIDGE_ALPHAS).fit(scaler.transform(values[train]), _dense(expression[train]))

    pred_profiles, obs_profiles = [], []
    batch = np.asarray(batch).astype(str)
    for b in sorted(set(batch)):
        in_b = batch == b
        test = in_b & np.isin(perturbation, list(test_perts))
        ctrl = in_b & is_control
        if not test.any() or not ctrl.any():
            continue
        # The decoder is linear, so decoding mean embeddings equals averaging decoded cells.
        labels = np.where(ctrl, "", perturbation)[test | ctrl]  # "" (the control row) sorts first
        emb = group_means(values[test | ctrl], labels)[0].to_numpy()
        obs = group_means(expression[test | ctrl], labels)[0].to_numpy()
        decoded = decoder.predict(scaler.transform(emb))
        pred_profiles.append(decoded[1:] - decoded[0])
        obs_profiles.append(obs[1:] - obs[0])
    if not pred_profiles:
        return {"structural_integrity": np.nan}
    pred_all, obs_all = np.vstack(pred_profiles), np.vstack(obs_profiles)
    pearson, spearman = per_gene_correlations(pred_all, obs_all)
    return {"structural_integrity": structural_integrity(pred_profiles, obs_profiles),
            "gene_pearson": pearson, "gene_spearman": spearman,
            "mse": float(np.mean((pred_all - obs_all) ** 2)), "decoder_alpha": float(decoder.alpha_),
            "n_test_profiles": float(len(obs_all))}


def decoder_over_splits(values: np.ndarray, expression, perturbation: np.ndarray, batch: np.ndarray,
                        is_control: np.ndarray, splits: pd.DataFrame, max_train_cells: int) -> pd.DataFrame:
    """`decoder_scores` for every (seed, fold) of the dataset's unseen-perturbation splits (long table)."""
    rows = []
    splits = splits[splits["task"] == UNSEEN_PERTURBATION] if len(splits) else splits
    for (seed, fold), sub in splits.groupby(["seed", "fold"], sort=True):
        train = set(sub.loc[sub["split"] == "train", "perturbation"])
        test = set(sub.loc[sub["split"] == "test", "perturbation"])
        scores = decoder_scores(values, expression, perturbation, batch, is_control, train, test,
                                max_train_cells, int(seed))
        rows += [{"seed": int(seed), "fold": int(fold), "metric": k, "value": v} for k, v in scores.items()]
    return pd.DataFrame(rows)
