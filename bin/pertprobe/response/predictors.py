"""Response predictors for unseen perturbations (definitions and sources in docs/metrics.md).

A predictor sees only `TrainingData` (training perturbations' pseudobulk, optionally per batch,
and the control mean) plus the labels and targets of the test perturbations — never their
observed profiles (a predictor that `needs` 'test_metadata' also sees their cell counts and
library sizes: the metadata shortcut probe). Embedding-based predictors map a perturbation embedding (see
`gene_embeddings`) to the response; test perturbations without an embedding fall back to `mean`
and are counted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from ..data.dataset import GENETIC_TYPES, split_targets
from ..data.pseudobulk import Pseudobulk
from ..registry import entries, get, register, require_applies
from .gene_embeddings import data_pca, perturbation_vectors
from .training import Prediction, TrainingData, perturbed_mean, tile

DOCS = "docs/metrics.md#predictors-pertproberesponsepredictors"
SIMPLE_CONTROLS = "'simple controls' study (bioRxiv; pfizer-opensource/perturb_seq)"
MULTIMODAL = "multimodal perturbation-embedding benchmark (bioRxiv 10.1101/2025.06.26.661186)"
RIDGE_ALPHAS = [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]


def predictor(name: str, **fields: Any) -> Callable[[Callable[..., Prediction]], Callable[..., Prediction]]:
    """Register a response predictor (see `registry.Entry`)."""
    return register("predictor", name, docs=DOCS, **fields)


# ---- floors -------------------------------------------------------------------------------------

@predictor("no_change", floor=True, profiles=("minimal", "paper", "full"),
           description="the control mean for every perturbation (Δ = 0)", source="constant floor")
def no_change(train: TrainingData, test: list[str], **_: Any) -> Prediction:
    """The control mean for every perturbation (Δ = 0)."""
    return Prediction(tile(train.control, len(test)))


@predictor("mean", floor=True, profiles=("minimal", "paper", "full"),
           description="mean over all perturbed training cells", source=SIMPLE_CONTROLS + ", 'mean model'")
def mean(train: TrainingData, test: list[str], **_: Any) -> Prediction:
    """The 'mean model' of the simple-controls study: the perturbed-cell training mean for everyone."""
    return Prediction(tile(perturbed_mean(train), len(test)))


@predictor("mean_of_means", floor=True,
           description="unweighted mean of the training perturbations' pseudobulk", source="PerturBench mean baseline")
def mean_of_means(train: TrainingData, test: list[str], **_: Any) -> Prediction:
    """Unweighted mean of the training perturbations' pseudobulk profiles."""
    return Prediction(tile(train.means.to_numpy(dtype=np.float64).mean(axis=0), len(test)))


@predictor("crispr_informed_mean", floor=True, profiles=("minimal", "paper", "full"), perturbation_types=GENETIC_TYPES,
           description="mean, with measured targets set to 0 (CRISPRi/KO) or doubled (CRISPRa)", source=SIMPLE_CONTROLS)
def crispr_informed_mean(train: TrainingData, test: list[str], **_: Any) -> Prediction:
    """Training mean, with each measured target set to 0 (CRISPRi/KO) or doubled (CRISPRa).

    Undefined for drugs (no target gene): left out of drug datasets, never run as `mean`.
    """
    base = perturbed_mean(train)
    out = tile(base, len(test))
    col = {g: i for i, g in enumerate(train.genes)}
    for row, pert in enumerate(test):
        for gene in train.targets.get(pert, []):
            j = col[gene]
            if train.perturbation_type in ("CRISPRi", "KO"):
                out[row, j] = 0.0
            elif train.perturbation_type == "CRISPRa":
                out[row, j] = 2.0 * base[j]
    return Prediction(out)


@predictor("additive", floor=True, profiles=("paper", "full"),
           description="combinations: control + the sum of the trained singles' effects, else mean",
           source="GEARS / Norman et al. 2019 additive baseline")
def additive(train: TrainingData, test: list[str], **_: Any) -> Prediction:
    """Combinations: control + the sum of the single perturbations' effects, when every single was
    seen in training; everything else falls back to `mean`."""
    out = tile(perturbed_mean(train), len(test))
    fallback = []
    for row, pert in enumerate(test):
        singles = split_targets(pert)
        if len(singles) > 1 and all(s in train.means.index for s in singles):
            out[row] = train.control + (train.means.loc[singles].to_numpy() - train.control).sum(axis=0)
        else:
            fallback.append(pert)
    return Prediction(out, {"n_fallback": len(fallback), "fallback": fallback})


# ---- shortcut probes: floors that exploit one easy signal (docs/metrics.md#shortcut-probes) -------

SHORTCUTS = "Virtual Cell Challenge 2025 shortcut analyses; this project"


def _target_fold_change(train: TrainingData, col: dict[str, int]) -> tuple[float, int]:
    """Median ratio (normalized counts) of a target gene's level in its perturbation to its control
    level, over every measured target of the training perturbations; 1 without any."""
    ratios = [np.expm1(train.means.at[pert, gene]) / np.expm1(train.control[col[gene]])
              for pert in train.means.index for gene in train.targets.get(pert, [])
              if train.control[col[gene]] > 0]
    return (float(np.median(ratios)) if ratios else 1.0), len(ratios)


@predictor("target_only", floor=True, shortcut=True, profiles=("minimal", "paper", "full"), source=SHORTCUTS,
           perturbation_types=GENETIC_TYPES,
           description="the control profile with only the perturbed genes changed, by the target fold-change "
                       "fitted on training perturbations")
def target_only(train: TrainingData, test: list[str], **_: Any) -> Prediction:
    """Control profile; each measured target of a test perturbation is scaled, in normalized counts,
    by the median fold-change the training perturbations show on their own targets."""
    col = {g: i for i, g in enumerate(train.genes)}
    fold, n_targets = _target_fold_change(train, col)
    out = tile(train.control, len(test))
    for row, pert in enumerate(test):
        for gene in train.targets.get(pert, []):
            j = col[gene]
            out[row, j] = np.log1p(fold * np.expm1(train.control[j]))
    return Prediction(out, {"target_fold_change": fold, "n_training_targets": n_targets})


def _metadata_features(n_cells: pd.Series, library_size: pd.Series | None) -> np.ndarray:
    columns = [np.log(n_cells.to_numpy(dtype=np.float64))]
    if library_size is not None:
        columns.append(np.log(library_size.to_numpy(dtype=np.float64)))
    return np.column_stack(columns)


@predictor("metadata_only", floor=True, shortcut=True, needs=("test_metadata",), profiles=("paper", "full"),
           source=SHORTCUTS,
           description="ridge regression from a perturbation's cell count and mean library size to its Δ, α by inner CV")
def metadata_only(train: TrainingData, test: list[str], test_metadata: pd.DataFrame | None = None, seed: int = 0,
                  **_: Any) -> Prediction:
    """Δ predicted from metadata alone: log cell count and log mean library size per perturbation
    (the test perturbations' own metadata, never their expression)."""
    if test_metadata is None:
        raise ValueError("metadata_only needs the test perturbations' cell counts (test_metadata)")
    x_train = _metadata_features(train.n_cells, train.library_size)
    x_test = _metadata_features(test_metadata["n_cells"], test_metadata.get("library_size"))
    fit = _sklearn_probe(_ridge_estimator, {"alpha": RIDGE_ALPHAS})
    delta, info = fit(train, list(train.means.index), x_train, train.deltas, x_test, seed)
    return Prediction(train.control + delta, {**info, "features": ["log_n_cells"] + ["log_library_size"] * (x_train.shape[1] - 1)})


# ---- models on perturbation embeddings -----------------------------------------------------------

# (training data, training perturbations with an embedding, their embeddings, their Δ, test embeddings, seed)
FitPredict = Callable[[TrainingData, list[str], np.ndarray, np.ndarray, np.ndarray, int],
                      tuple[np.ndarray, dict[str, Any]]]


def _embedding_predictor(fit_predict: FitPredict) -> Callable[..., Prediction]:
    """Wrap a (train embeddings, train Δ, test embeddings) -> test Δ model with the mean fallback."""

    def run(train: TrainingData, test: list[str], embedding: pd.DataFrame | None = None, seed: int = 0,
            **_: Any) -> Prediction:
        if embedding is None:
            raise ValueError("this predictor needs a gene embedding")
        train_perts = list(train.means.index)
        p_train, has_train = perturbation_vectors(train_perts, embedding, train.targets)
        p_test, has_test = perturbation_vectors(list(test), embedding, train.targets)
        out = tile(perturbed_mean(train), len(test))
        info: dict[str, Any] = {"n_train_without_embedding": int((~has_train).sum())}
        if has_train.sum() >= 3 and has_test.any():
            names = [p for p, ok in zip(train_perts, has_train, strict=True) if ok]
            delta, model_info = fit_predict(train, names, p_train[has_train], train.deltas[has_train],
                                            p_test[has_test], seed)
            out[has_test] = train.control + delta
            info.update(model_info)
        else:
            has_test[:] = False
        info["fallback"] = [p for p, ok in zip(test, has_test, strict=True) if not ok]
        info["n_fallback"] = len(info["fallback"])
        return Prediction(out, info)

    run.__doc__ = fit_predict.__doc__
    return run


def _linear_fit_predict(train: TrainingData, names: list[str], p_train: np.ndarray, d_train: np.ndarray,
                        p_test: np.ndarray, seed: int, n_components: int = 10,
                        ridge: float = 0.1) -> tuple[np.ndarray, dict[str, Any]]:
    """Linear model of Ahlmann-Eltze, Huber & Anders: Y − b ≈ G·K·Pᵀ with closed-form ridge K.

    G = top-k PCs of the training pseudobulk (genes x k, `data_pca`); P = perturbation embeddings;
    b = per-gene mean over training perturbations.
    """
    G = data_pca(train.means, train.targets, n_components, seed).to_numpy()
    Y = d_train.T  # genes x n
    b = Y.mean(axis=1, keepdims=True)
    left = np.linalg.solve(G.T @ G + ridge * np.eye(G.shape[1]), G.T @ (Y - b))
    K = np.linalg.solve(p_train.T @ p_train + ridge * np.eye(p_train.shape[1]), (left @ p_train).T).T
    return (G @ K @ p_test.T + b).T, {"n_components": G.shape[1], "ridge": ridge}


def _sklearn_probe(make_estimator: Callable[[], Any], grid: dict[str, list[Any]]) -> FitPredict:
    """Standardize embeddings, then fit `make_estimator()` with hyper-parameters chosen by inner
    K-fold CV (neg. MSE) on the training perturbations only."""

    def fit_predict(train: TrainingData, names: list[str], p_train: np.ndarray, d_train: np.ndarray,
                    p_test: np.ndarray, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
        from sklearn.model_selection import GridSearchCV, KFold
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        n_splits = min(5, len(p_train))
        max_train = len(p_train) - int(np.ceil(len(p_train) / n_splits))  # smallest inner training fold
        params = {f"est__{k}": [v for v in vals if k != "n_neighbors" or v <= max_train] for k, vals in grid.items()}
        pipe = Pipeline([("scale", StandardScaler()), ("est", make_estimator())])
        search = GridSearchCV(pipe, params, cv=KFold(n_splits, shuffle=True, random_state=seed),
                              scoring="neg_mean_squared_error", n_jobs=1)
        search.fit(p_train, d_train)
        chosen = {k.removeprefix("est__"): v for k, v in search.best_params_.items()}
        return search.predict(p_test), {"hyperparameters": chosen}

    return fit_predict


def _knn_estimator() -> Any:
    from sklearn.neighbors import KNeighborsRegressor

    return KNeighborsRegressor()


def _ridge_estimator() -> Any:
    from sklearn.linear_model import Ridge

    return Ridge()


def _torch_model(kind: str) -> FitPredict:
    def fit_predict(train: TrainingData, names: list[str], p_train: np.ndarray, d_train: np.ndarray,
                    p_test: np.ndarray, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
        from .torch_models import fit_predict_torch

        return fit_predict_torch(kind, train, names, p_train, p_test, seed)

    fit_predict.__doc__ = f"PerturBench-style {kind.replace('_', ' ')} model (torch, MSE, early stopping)."
    return fit_predict


@predictor("linear", needs_embedding=True, profiles=("minimal", "paper", "full"),
           description="Y − b ≈ G·K·Pᵀ with closed-form ridge K (G: PCs of the training pseudobulk)",
           source="Ahlmann-Eltze, Huber & Anders 2025")
def linear(train: TrainingData, test: list[str], embedding: pd.DataFrame | None = None, seed: int = 0,
           n_components: int = 10, ridge: float = 0.1, **_: Any) -> Prediction:
    """Linear model Y − b ≈ G·K·Pᵀ (Ahlmann-Eltze, Huber & Anders)."""

    def fit_predict(tr, names, pt, dt, pe, s):
        return _linear_fit_predict(tr, names, pt, dt, pe, s, n_components=n_components, ridge=ridge)

    return _embedding_predictor(fit_predict)(train, test, embedding=embedding, seed=seed)


predictor("knn", needs_embedding=True, profiles=("paper", "full"), source=MULTIMODAL,
          description="k-nearest-neighbour regression embedding → Δ, k and weights by inner CV")(
    _embedding_predictor(_sklearn_probe(_knn_estimator, {"n_neighbors": [1, 3, 5, 10, 20],
                                                         "weights": ["uniform", "distance"]})))
predictor("ridge", needs_embedding=True, profiles=("paper", "full"), source=MULTIMODAL,
          description="ridge regression embedding → Δ, α by inner CV")(
    _embedding_predictor(_sklearn_probe(_ridge_estimator, {"alpha": RIDGE_ALPHAS})))


def _nearest_fit_predict(train: TrainingData, names: list[str], p_train: np.ndarray, d_train: np.ndarray,
                         p_test: np.ndarray, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Δ of the training perturbation whose embedding is the most cosine-similar (first on ties)."""
    def unit(a: np.ndarray) -> np.ndarray:
        norm = np.linalg.norm(a, axis=1, keepdims=True)
        return np.divide(a, norm, out=np.zeros_like(a, dtype=np.float64), where=norm > 0)

    nearest = np.argmax(unit(p_test) @ unit(p_train).T, axis=1)
    return d_train[nearest], {"nearest": [names[i] for i in nearest]}


predictor("nearest_training", needs_embedding=True, floor=True, shortcut=True, profiles=("paper", "full"),
          source=SHORTCUTS + "; the nearest-neighbour retrieval baseline",
          description="the profile of the training perturbation nearest in the gene embedding (cosine)")(
    _embedding_predictor(_nearest_fit_predict))
predictor("latent_additive", needs_embedding=True, gpu=True, profiles=("paper", "full"), source="PerturBench",
          description="decoder(encoder(control) + perturbation encoder(embedding)), torch")(
    _embedding_predictor(_torch_model("latent_additive")))
predictor("decoder_only", needs_embedding=True, gpu=True, profiles=("paper", "full"), source="PerturBench",
          description="decoder(perturbation encoder(embedding)), ignoring control expression, torch")(
    _embedding_predictor(_torch_model("decoder_only")))


def floors() -> list[str]:
    """The predictors that bound every model from below (the report's best floor)."""
    return [e.name for e in entries("predictor", floor=True)]


def shortcuts() -> list[str]:
    """The floors that exploit a shortcut (the report's best shortcut)."""
    return [e.name for e in entries("predictor", shortcut=True)]


def predict(name: str, pb: Pseudobulk, train: list[str], test: list[str], embedding: pd.DataFrame | None = None,
            by_batch: pd.DataFrame | None = None, seed: int = 0, **params: Any) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Predicted pseudobulk (test perturbations x genes) of predictor `name` trained on `train`."""
    entry = get("predictor", name)
    require_applies(entry, pb.perturbation_type)
    if "cells" in entry.needs:
        raise ValueError(f"predictor {name!r} is fine-tuned on cells: run it with predict_finetune.py (PREDICT_FINETUNE)")
    if entry.needs_embedding != (embedding is not None):
        raise ValueError(f"predictor {name!r} {'needs' if entry.needs_embedding else 'takes no'} gene embedding")
    overlap = sorted(set(train) & set(test))
    if overlap:
        raise ValueError(f"perturbations in both train and test: {overlap[:5]}")
    data = TrainingData.from_pseudobulk(pb, train, by_batch)
    if "test_metadata" in entry.needs:
        columns = {"n_cells": pb.n_cells, "library_size": pb.library_size}
        params["test_metadata"] = pd.DataFrame({k: v.loc[list(test)] for k, v in columns.items() if v is not None})
    result = entry.func(data, list(test), embedding=embedding, seed=seed, **params)
    frame = pd.DataFrame(result.values, index=pd.Index(test, name="perturbation"), columns=pb.genes)
    return frame, result.info
