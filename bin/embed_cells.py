#!/usr/bin/env python3
"""Embed the cells of a processed dataset."""

import click

from pertprobe.cli import command


@command("embed_cells.py", packages=["anndata", "scanpy", "numpy"])
@click.option("--h5ad", "h5ad_path", required=True, help="Processed dataset (.processed.h5ad).")
@click.option("--model", type=click.Choice(["pca"]), default="pca", show_default=True)
@click.option("--n-comps", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Output embedding (.h5ad).")
def main(h5ad_path: str, model: str, n_comps: int, seed: int, out_path: str) -> None:
    """Write a cells x d embedding keyed by the dataset's obs index."""
    import anndata as ad

    from pertprobe.embed_cells import EMBEDDERS
    from pertprobe.io import write_h5ad

    emb = EMBEDDERS[model](ad.read_h5ad(h5ad_path), n_comps=n_comps, seed=seed)
    emb.uns["embedding"]["source"] = h5ad_path
    write_h5ad(emb, out_path)
    click.echo(f"{out_path}: {emb.n_obs} cells x {emb.n_vars} dims ({model})")


if __name__ == "__main__":
    main()
