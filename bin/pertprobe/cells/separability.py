"""Perturbation separability of cell embeddings: a linear probe on unseen batches and the energy
distance of each perturbation to control cells with a permutation test."""

from __future__ import annotations

import numpy as np
import pandas as pd


def holdout_batches(batches: np.ndarray, requested: list[str] | None = None) -> list[str]:
    """The batches kept unseen by the probe: `requested`, else the last batch in sorted order."""
    present = sorted(map(str, np.unique(batches)))
    if requested:
        missing = sorted(set(requested) - set(present))
        if missing:
            raise ValueError(f"holdout batches {missing} are not in the data (batches: {present})")
        if set(requested) == set(present):
            raise ValueError("every batch is held out; keep at least one batch for training the probe")
        return sorted(requested)
    return present[-1:] if len(present) > 1 else []


def probe_accuracy(values: np.ndarray, perturbation: np.ndarray, batch: np.ndarray, is_control: np.ndarray,
                   test_batches: list[str], seed: int = 0, top_k: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Multinomial logistic regression from embedding to perturbation label, fitted on the perturbed
    cells of the training batches only and scored on the perturbed cells of `test_batches` by
    class-balanced top-k accuracy.

    Control cells are excluded from training and testing (keeping them lets a probe score the
    control fraction by predicting "control"). Returns top-k accuracies and their chance levels.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    batch = batch.astype(str)
    test = np.isin(batch, test_batches) & ~is_control
    train = ~np.isin(batch, test_batches) & ~is_control
    classes = np.unique(perturbation[train])
    test &= np.isin(perturbation, classes)
    out: dict[str, float] = {"n_classes": float(len(classes)), "n_train_cells": float(train.sum()),
                             "n_test_cells": float(test.sum())}
    if len(classes) < 2 or test.sum() == 0:
        return out | {f"top{k}_accuracy": np.nan for k in top_k}
    scaler = StandardScaler().fit(values[train])
    probe = LogisticRegression(max_iter=2000, random_state=seed)
    probe.fit(scaler.transform(values[train]), perturbation[train])
    proba = probe.predict_proba(scaler.transform(values[test]))
    truth = np.searchsorted(probe.classes_, perturbation[test])
    # Expected top-k hit under random tie-breaking, so a constant probe scores exactly chance.
    true_score = proba[np.arange(len(truth)), truth]
    higher = (proba > true_score[:, None]).sum(axis=1)
    tied = (proba == true_score[:, None]).sum(axis=1)
    for k in top_k:
        hit = pd.Series(np.clip((k - higher) / tied, 0.0, 1.0))
        # Class-balanced: mean over classes of each class's hit rate, so class frequencies cannot be
        # exploited and any input-independent probe scores exactly k / #classes.
        out[f"top{k}_accuracy"] = float(hit.groupby(truth).mean().mean())
        out[f"top{k}_chance"] = min(k, len(classes)) / len(classes)
    return out


def pairwise_euclidean(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of x and y (float64)."""
    from sklearn.metrics import pairwise_distances

    return pairwise_distances(x, y, metric="euclidean")


def energy_distance(x: np.ndarray, y: np.ndarray) -> float:
    """E(X, Y) = 2·mean d(x, y) − mean d(x, x') − mean d(y, y') with Euclidean d, means over all pairs
    including i = j (the form of pertpy's `Distance("edistance")`)."""
    return float(2 * pairwise_euclidean(x, y).mean() - pairwise_euclidean(x, x).mean()
                 - pairwise_euclidean(y, y).mean())


def energy_permutation_test(x: np.ndarray, y: np.ndarray, n_permutations: int, rng: np.random.Generator,
                            y_dist: np.ndarray | None = None) -> tuple[float, float]:
    """Energy distance of x to y and its permutation p-value (1 + #{E_perm >= E}) / (1 + B).
    `y_dist` (distances within y) can be passed when y is shared by many tests."""
    nx, ny = len(x), len(y)
    xy = pairwise_euclidean(x, y)
    dist = np.block([[pairwise_euclidean(x, x), xy], [xy.T, pairwise_euclidean(y, y) if y_dist is None else y_dist]])
    n = nx + ny
    labels = np.zeros((n, n_permutations + 1))
    labels[:nx, 0] = 1.0
    for b in range(1, n_permutations + 1):
        labels[rng.permutation(n)[:nx], b] = 1.0
    s_xx = np.einsum("ib,ib->b", labels, dist @ labels)
    s_x_all = labels.T @ dist.sum(axis=1)
    s_xy = s_x_all - s_xx
    s_yy = dist.sum() - 2 * s_xy - s_xx
    energy = 2 * s_xy / (nx * ny) - s_xx / nx**2 - s_yy / ny**2
    p_value = (1 + np.sum(energy[1:] >= energy[0] - 1e-12)) / (n_permutations + 1)
    return float(energy[0]), float(p_value)


def energy_to_control(values: np.ndarray, perturbation: np.ndarray, is_control: np.ndarray,
                      n_permutations: int, max_controls: int, seed: int) -> pd.DataFrame:
    """Per perturbation: energy distance to (at most `max_controls`, seeded) control cells and its
    permutation p-value; BH-adjusted q-values across perturbations."""
    from scipy.stats import false_discovery_control

    rng = np.random.default_rng(seed)
    ctrl_idx = np.flatnonzero(is_control)
    if len(ctrl_idx) > max_controls:
        ctrl_idx = np.sort(rng.choice(ctrl_idx, size=max_controls, replace=False))
    ctrl = values[ctrl_idx]
    ctrl_dist = pairwise_euclidean(ctrl, ctrl)  # shared by every perturbation's test
    rows = []
    for pert in sorted(set(perturbation[~is_control])):
        cells = values[perturbation == pert]
        energy, p = energy_permutation_test(cells, ctrl, n_permutations, rng, ctrl_dist)
        rows.append({"perturbation": pert, "energy_distance": energy, "energy_p_value": p})
    table = pd.DataFrame(rows)
    if len(table):
        table["energy_q_value"] = false_discovery_control(table["energy_p_value"].to_numpy(), method="bh")
    return table
