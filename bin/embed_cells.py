#!/usr/bin/env python3
"""Embed the cells of a processed dataset."""

import click

from pertprobe.cli import command, str_list


@command("embed_cells.py", packages=["anndata", "scanpy", "numpy", "scvi-tools", "torch"])
@click.option("--h5ad", "h5ad_path", required=True, help="Processed dataset (.processed.h5ad).")
@click.option("--model", type=click.Choice(["pca", "scvi", "random"]), default="pca", show_default=True)
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
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Output embedding (.h5ad).")
def main(h5ad_path: str, model: str, n_comps: int, seed: int, holdout_batches: list[str], scvi_n_hvg: int,
         scvi_max_epochs: int, scvi_query_epochs: int, accelerator: str, out_path: str) -> None:
    """Write a cells x d embedding keyed by the dataset's obs index."""
    import anndata as ad

    from pertprobe.embed_cells import EMBEDDERS
    from pertprobe.io import write_h5ad
    from pertprobe.separability import holdout_batches as resolve_holdout

    adata = ad.read_h5ad(h5ad_path)
    kwargs = {}
    if model == "scvi":
        kwargs = {"query_batches": tuple(resolve_holdout(adata.obs["batch"].astype(str).to_numpy(), holdout_batches)),
                  "n_hvg": scvi_n_hvg, "max_epochs": scvi_max_epochs, "query_epochs": scvi_query_epochs,
                  "accelerator": accelerator}
    emb = EMBEDDERS[model](adata, n_comps=n_comps, seed=seed, **kwargs)
    emb.uns["embedding"]["source"] = h5ad_path
    write_h5ad(emb, out_path)
    click.echo(f"{out_path}: {emb.n_obs} cells x {emb.n_vars} dims ({model})")


if __name__ == "__main__":
    main()
