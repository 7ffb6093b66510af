"""Response predictors for unseen perturbations (definitions and sources in docs/metrics.md).

A predictor sees only `TrainingData` (training perturbations' pseudobulk, optionally per batch,
and the control mean) plus the labels and targets of the test perturbations — never their
observed profiles. Embedding-based predictors map a perturbation embedding (see
`gene_embeddings`) to the response; test perturbations without an embedding fall back to `mean`
and are counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .dataset import split_targets
from .gene_embeddings import data_pca, perturbation_vectors
from .pseudobulk import Pseudobulk


@dataclass(frozen=True)
class TrainingData:
    """What a predictor may learn from: training pseudobulk, cell counts and the control mean."""

    means: pd.DataFrame  # training perturbations x genes
    n_cells: pd.Series
    control: np.ndarray
    targets: dict[str, list[str]]  # every perturbation's measured target genes (labels are not data)
    perturbation_type: str
    by_batch: pd.DataFrame | None = None  # (perturbation, batch) x genes for training perts and controls
    control_label: str = "control"

    @classmethod
    def from_pseudobulk(cls, pb: Pseudobulk, train: list[str], by_batch: pd.DataFrame | None = None) -> TrainingData:
        unknown = sorted(set(train) - set(pb.perturbations))
        if unknown:
            raise ValueError(f"training perturbations not in the pseudobulk: {unknown[:5]}")
        if by_batch is not None:
            keep = by_batch.index.get_level_values("perturbation").isin(list(train) + [pb.control_label])
            by_batch = by_batch[keep].copy()
        return cls(means=pb.means.loc[train].copy(), n_cells=pb.n_cells.loc[train].copy(),
                   control=pb.control.copy(), targets=pb.targets, perturbation_type=pb.perturbation_type,
                   by_batch=by_batch, control_label=pb.control_label)

    @property
    def genes(self) -> pd.Index:
        return self.means.columns

    @property
    def deltas(self) -> np.ndarray:
        return self.means.to_numpy(dtype=np.float64) - self.control[None, :]


@dataclass
class Prediction:
    """Predicted test profiles plus what the predictor reports about itself."""

    values: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def perturbed_mean(train: TrainingData) -> np.ndarray:
    """Mean over all perturbed training cells (each perturbation weighted by its number of cells)."""
    w = train.n_cells.to_numpy(dtype=np.float64)
    return (train.means.to_numpy(dtype=np.float64) * w[:, None]).sum(axis=0) / w.sum()


def _tile(vector: np.ndarray, n: int) -> np.ndarray:
    return np.tile(vector, (n, 1))


# ---- floors -------------------------------------------------------------------------------------

def no_change(train: TrainingData, test: list[str], **_: Any) -> Prediction:
    """The control mean for every perturbation (Δ = 0)."""
    return Prediction(_tile(train.control, len(test)))


def mean(train: TrainingData, test: list[str], **_: Any) -> Prediction:
    """The 'mean model' of the simple-controls study: the perturbed-cell training mean for everyone."""
    return Prediction(_tile(perturbed_mean(train), len(test)))


def mean_of_means(train: TrainingData, test: list[str], **_: Any) -> Prediction:
    """Unweighted mean of the training perturbations' pseudobulk profiles."""
    return Prediction(_tile(train.means.to_numpy(dtype=np.float64).mean(axis=0), len(test)))


def crispr_informed_mean(train: TrainingData, test: list[str], **_: Any) -> Prediction:
    """Training mean, with each measured target set to 0 (CRISPRi/KO) or doubled (CRISPRa).

    Drug perturbations have no target gene, so this reduces to `mean` for them.
    """
    base = perturbed_mean(train)
    out = _tile(base, len(test))
    col = {g: i for i, g in enumerate(train.genes)}
    for row, pert in enumerate(test):
        for gene in train.targets.get(pert, []):
            j = col[gene]
            if train.perturbation_type in ("CRISPRi", "KO"):
                out[row, j] = 0.0
            elif train.perturbation_type == "CRISPRa":
                out[row, j] = 2.0 * base[j]
    return Prediction(out)


def additive(train: TrainingData, test: list[str], **_: Any) -> Prediction:
    """Combinations: control + the sum of the single perturbations' effects, when every single was
    seen in training; everything else falls back to `mean`."""
    out = _tile(perturbed_mean(train), len(test))
    fallback = []
    for row, pert in enumerate(test):
        singles = split_targets(pert)
        if len(singles) > 1 and all(s in train.means.index for s in singles):
            out[row] = train.control + (train.means.loc[singles].to_numpy() - train.control).sum(axis=0)
        else:
            fallback.append(pert)
    return Prediction(out, {"n_fallback": len(fallback), "fallback": fallback})


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
        out = _tile(perturbed_mean(train), len(test))
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


def linear(train: TrainingData, test: list[str], embedding: pd.DataFrame | None = None, seed: int = 0,
           n_components: int = 10, ridge: float = 0.1, **_: Any) -> Prediction:
    """Linear model Y − b ≈ G·K·Pᵀ (Ahlmann-Eltze, Huber & Anders)."""

    def fit_predict(tr, names, pt, dt, pe, s):
        return _linear_fit_predict(tr, names, pt, dt, pe, s, n_components=n_components, ridge=ridge)

    return _embedding_predictor(fit_predict)(train, test, embedding=embedding, seed=seed)


FLOORS = ("no_change", "mean", "mean_of_means", "crispr_informed_mean", "additive")
PREDICTORS: dict[str, Callable[..., Prediction]] = {
    "no_change": no_change,
    "mean": mean,
    "mean_of_means": mean_of_means,
    "crispr_informed_mean": crispr_informed_mean,
    "additive": additive,
    "linear": linear,
    "knn": _embedding_predictor(_sklearn_probe(_knn_estimator, {"n_neighbors": [1, 3, 5, 10, 20],
                                                                "weights": ["uniform", "distance"]})),
    "ridge": _embedding_predictor(_sklearn_probe(_ridge_estimator, {"alpha": [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]})),
    "latent_additive": _embedding_predictor(_torch_model("latent_additive")),
    "decoder_only": _embedding_predictor(_torch_model("decoder_only")),
}
EMBEDDING_PREDICTORS = ("linear", "knn", "ridge", "latent_additive", "decoder_only")


def predict(name: str, pb: Pseudobulk, train: list[str], test: list[str], embedding: pd.DataFrame | None = None,
            by_batch: pd.DataFrame | None = None, seed: int = 0, **params: Any) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Predicted pseudobulk (test perturbations x genes) of predictor `name` trained on `train`."""
    if name not in PREDICTORS:
        raise ValueError(f"unknown predictor {name!r}; available: {', '.join(PREDICTORS)}")
    if (name in EMBEDDING_PREDICTORS) != (embedding is not None):
        raise ValueError(f"predictor {name!r} {'needs' if name in EMBEDDING_PREDICTORS else 'takes no'} gene embedding")
    overlap = sorted(set(train) & set(test))
    if overlap:
        raise ValueError(f"perturbations in both train and test: {overlap[:5]}")
    data = TrainingData.from_pseudobulk(pb, train, by_batch)
    result = PREDICTORS[name](data, list(test), embedding=embedding, seed=seed, **params)
    frame = pd.DataFrame(result.values, index=pd.Index(test, name="perturbation"), columns=pb.genes)
    return frame, result.info
