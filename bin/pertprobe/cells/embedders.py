"""Cell embedders; each returns an AnnData that follows the embedding contract."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..registry import register

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


DOCS = "docs/metrics.md#embedders-pertprobecellsembedders"


@register("cell_embedder", "pca", docs=DOCS, profiles=("minimal", "paper", "full"), source="scanpy (ARPACK PCA)",
          description="PCA of the log-normalized, gene-selected expression")
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


@register("cell_embedder", "random", docs=DOCS, floor=True, profiles=("minimal", "paper", "full"),
          source="floor", description="seeded standard-normal vectors, independent of the data (always run)")
def random(adata: ad.AnnData, n_comps: int = 50, seed: int = 0) -> ad.AnnData:
    """The floor: standard-normal vectors, independent of the data (seeded)."""
    values = np.random.default_rng(seed).standard_normal((adata.n_obs, n_comps))
    emb = embedding_anndata(values, adata.obs_names, "random", {"n_comps": n_comps, "seed": seed})
    emb.obs = adata.obs[["perturbation", "batch"]].copy()
    return emb


@register("cell_embedder", "scvi", docs=DOCS, gpu=True, profiles=("paper", "full"),
          source="scvi-tools (Lopez et al. 2018), scArches query mapping",
          description="scVI latent means from raw counts, batch as covariate")
def scvi(adata: ad.AnnData, n_comps: int = 10, seed: int = 0, query_batches: tuple[str, ...] = (),
         n_hvg: int = 0, max_epochs: int = 400, query_epochs: int = 200, accelerator: str = "auto") -> ad.AnnData:
    """scVI (scvi-tools) latent means from raw counts, batch as covariate.

    The model is trained on the cells of the reference batches (all batches except `query_batches`);
    the query batches' cells are then mapped with scvi-tools' scArches query training (only the
    new batch parameters learn). `n_hvg` > 0 restricts to the top highly variable genes of the
    processed data (scanpy 'seurat' flavour on log-normalized values).
    """
    import scanpy as sc
    import scvi as scvi_tools

    scvi_tools.settings.seed = seed
    genes = adata.var_names
    if 0 < n_hvg < adata.n_vars:
        hvg = sc.pp.highly_variable_genes(adata, n_top_genes=n_hvg, flavor="seurat", inplace=False)
        genes = adata.var_names[hvg["highly_variable"].to_numpy()]
    counts = adata[:, genes].copy()
    counts.X = counts.layers["counts"]
    counts.obs = adata.obs[["batch"]].astype(str).astype("category")
    is_query = counts.obs["batch"].isin(list(query_batches)).to_numpy()
    reference = counts[~is_query].copy()
    scvi_tools.model.SCVI.setup_anndata(reference, batch_key="batch")
    # Architecture recommended by scvi-tools for later query mapping (scArches).
    model = scvi_tools.model.SCVI(reference, n_latent=n_comps, encode_covariates=True, use_layer_norm="both",
                                  use_batch_norm="none", dropout_rate=0.2, n_layers=2)
    model.train(max_epochs=max_epochs, accelerator=accelerator, early_stopping=True, enable_progress_bar=False)
    values = np.zeros((counts.n_obs, n_comps), dtype=np.float32)
    values[~is_query] = model.get_latent_representation(reference)
    if is_query.any():
        query = counts[is_query].copy()
        scvi_tools.model.SCVI.prepare_query_anndata(query, model)
        mapped = scvi_tools.model.SCVI.load_query_data(query, model)
        mapped.train(max_epochs=query_epochs, accelerator=accelerator, plan_kwargs={"weight_decay": 0.0},
                     enable_progress_bar=False)
        values[is_query] = mapped.get_latent_representation(query)
    params = {"n_comps": n_comps, "seed": seed, "query_batches": list(query_batches), "n_genes": len(genes),
              "max_epochs": max_epochs, "query_epochs": query_epochs}
    emb = embedding_anndata(values, adata.obs_names, "scvi", params)
    emb.obs = adata.obs[["perturbation", "batch"]].copy()
    return emb

