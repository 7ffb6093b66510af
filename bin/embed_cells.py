#!/usr/bin/env python3
"""Embed the cells of a processed dataset."""

import click
from pertprobe.cli import command, dataset_options, model_run_options, registry_name, str_list


@command("embed_cells.py", packages=["anndata", "scanpy", "numpy", "scvi-tools", "torch", "transformers"])
@click.option("--h5ad", "h5ad_path", required=True, help="Processed dataset (.processed.h5ad).")
@click.option("--model", default="pca", show_default=True, callback=registry_name("cell_embedder"),
              help="A cell embedder (docs/registry.md): a baseline or a foundation model.")
@click.option("--n-comps", default=50, show_default=True, type=click.IntRange(min=1),
              help="Dimensions: PCA components, scVI latent size, random dimensions.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--holdout-batches", default="", callback=lambda c, p, v: str_list(v),
              help="Comma-separated batches kept out of scVI training and mapped as a query "
                   "(default: the last batch in sorted order when there are several).")
@click.option("--scvi-n-hvg", default=0, show_default=True, type=click.IntRange(min=0),
              help="scVI on the top N highly variable processed genes (0: all processed genes).")
@click.option("--scvi-max-epochs", default=400, show_default=True, type=click.IntRange(min=1))
@click.option("--scvi-query-epochs", default=200, show_default=True, type=click.IntRange(min=1))
@click.option("--accelerator", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "gpu"]),
              help="Device for scVI training.")
@click.option("--counts-h5ad", type=click.Path(exists=True, dir_okay=False),
              help="The input .h5ad PREPROCESS read (foundation models embed all its genes' raw counts).")
@model_run_options
@dataset_options
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Output embedding (.h5ad).")
def main(h5ad_path: str, model: str, n_comps: int, seed: int, holdout_batches: list[str], scvi_n_hvg: int,
         scvi_max_epochs: int, scvi_query_epochs: int, accelerator: str, counts_h5ad: str | None,
         checkpoint: str | None, gene_id_map: str | None, run_options, model_options: dict, spec, out_path: str) -> None:
    """Write a cells x d embedding keyed by the dataset's obs index."""
    import anndata as ad
    from pertprobe.io import write_h5ad

    adata = ad.read_h5ad(h5ad_path)
    from pertprobe.registry import get

    entry = get("cell_embedder", model)
    if entry.checkpoint:
        emb = foundation_embedding(adata, model, counts_h5ad, checkpoint, gene_id_map, run_options, model_options, spec)
    else:
        from pertprobe.cells.separability import holdout_batches as resolve_holdout

        kwargs = {}
        if model == "scvi":
            kwargs = {"query_batches": tuple(resolve_holdout(adata.obs["batch"].astype(str).to_numpy(), holdout_batches)),
                      "n_hvg": scvi_n_hvg, "max_epochs": scvi_max_epochs, "query_epochs": scvi_query_epochs,
                      "accelerator": accelerator}
        emb = entry.func(adata, n_comps=n_comps, seed=seed, **kwargs)
    emb.uns["embedding"]["source"] = h5ad_path
    write_h5ad(emb, out_path)
    click.echo(f"{out_path}: {emb.n_obs} cells x {emb.n_vars} dims ({model})")


def foundation_embedding(adata, model: str, counts_h5ad: str | None, checkpoint: str | None, gene_id_map: str | None,
                         run_options, model_options: dict, spec):
    """Embed the processed dataset's cells with a foundation-model adapter (raw counts of all input genes)."""
    from pertprobe.cells.embedders import embedding_anndata
    from pertprobe.models.adapters import UnknownModelOption, input_counts, run
    from pertprobe.models.gene_ids import GeneIdMap, dataset_gene_ids

    if not checkpoint or not counts_h5ad:
        raise click.UsageError(f"--model {model} needs --checkpoint (the model directory) and --counts-h5ad "
                               "(the input .h5ad of the dataset)")
    raw = input_counts(counts_h5ad, spec, adata.obs_names)
    genes = dataset_gene_ids(raw.var, spec.gene_id_type, GeneIdMap.from_table(gene_id_map) if gene_id_map else None)
    try:
        result = run(model, "cells", genes, checkpoint, run_options, counts=raw.X, groups=adata.obs["batch"],
                     **model_options)
    except UnknownModelOption as err:
        raise click.UsageError(str(err)) from err
    emb = embedding_anndata(result.values, adata.obs_names, model, result.params, result.checkpoint_hash)
    emb.uns["embedding"] = result.metadata(model)
    emb.obs = adata.obs[["perturbation", "batch"]].copy()
    click.echo(f"{model}: {result.load.n_tensors} tensors loaded, genes covered "
               f"{result.coverage.n_covered}/{result.coverage.n_genes} ({result.coverage.fraction:.1%})")
    return emb


if __name__ == "__main__":
    main()
