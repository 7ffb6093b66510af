"""Cell embedders; each returns an AnnData that follows the embedding contract."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import anndata as ad


def embedding_anndata(values: np.ndarray, obs_names, model: str, params: dict[str, Any],
                      checkpoint_hash: str = "none") -> ad.AnnData:
    """Wrap a cells x d matrix as an embedding AnnData (obs index = the dataset's cells)."""
    import anndata as ad
    import pandas as pd

    emb = ad.AnnData(X=np.ascontiguousarray(values, dtype=np.float32), obs=pd.DataFrame(index=obs_names))
    emb.var_names = [f"{model}_{i}" for i in range(values.shape[1])]
    emb.uns["embedding"] = {"model": model, "checkpoint_hash": checkpoint_hash,
                            "n_dims": int(values.shape[1]), "params": params}
    return emb


def pca(adata: ad.AnnData, n_comps: int = 50, seed: int = 0) -> ad.AnnData:
    """PCA (scanpy, ARPACK, zero-centred) of the log-normalized, gene-selected expression."""
    import scanpy as sc

    n_comps = min(n_comps, adata.n_obs - 1, adata.n_vars - 1)
    values, _, variance_ratio, _ = sc.pp.pca(adata.X, n_comps=n_comps, svd_solver="arpack",
                                             random_state=seed, return_info=True)
    emb = embedding_anndata(values, adata.obs_names, "pca", {"n_comps": n_comps, "seed": seed})
    emb.uns["embedding"]["variance_ratio"] = np.asarray(variance_ratio, dtype=np.float64)
    emb.obs = adata.obs[["perturbation", "batch"]].copy()
    return emb


EMBEDDERS = {"pca": pca}
