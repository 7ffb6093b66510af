#!/usr/bin/env python3
"""Noise ceiling, split-half and interpolated technical duplicates for the test perturbations of one split."""

import click
from pertprobe.cli import command, registry_names, split_options


@command("ceiling.py", packages=["anndata", "numpy", "pandas", "pyarrow"])
@click.option("--h5ad", "h5ad_path", required=True, help="PREFIX.processed.h5ad from PREPROCESS.")
@click.option("--pseudobulk", "pseudobulk_path", required=True, help="PREFIX.pseudobulk.parquet from PREPROCESS.")
@click.option("--de", "de_path", required=True, help="PREFIX.de.parquet from PREPROCESS.")
@click.option("--splits", "splits_path", required=True, help="PREFIX.splits.csv from PREPROCESS.")
@split_options
@click.option("--n-draws", default=5, show_default=True, type=click.IntRange(min=1), help="Random half splits averaged.")
@click.option("--dataset", required=True, help="Dataset id recorded in the output.")
@click.option("--metrics", default="full", show_default=True, callback=registry_names("metric"),
              help="Comma-separated metrics, or a profile: minimal, paper, full (docs/registry.md).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Metric table (.parquet).")
def main(h5ad_path: str, pseudobulk_path: str, de_path: str, splits_path: str, split, n_draws: int,
         dataset: str, metrics: list[str], out_path: str) -> None:
    """Score the noise ceiling (model 'ceiling'), the half-vs-half duplicate (model 'split_half') and
    the interpolated duplicate (model 'interpolated_duplicate') of each test perturbation
    (pertprobe.response.bounds)."""
    import anndata as ad
    from pertprobe.data.pseudobulk import Pseudobulk
    from pertprobe.data.splits import split_sets
    from pertprobe.io import read_table, write_table
    from pertprobe.response.de_agreement import read_de_table
    from pertprobe.response.bounds import noise_ceiling
    from pertprobe.response.metrics import METRIC_COLUMNS
    from pertprobe.response.training import centroid

    train, test = split_sets(read_table(splits_path), split, splits_path)
    adata = ad.read_h5ad(h5ad_path)
    pb = Pseudobulk.load(pseudobulk_path)
    if not adata.var_names.equals(pb.genes):
        raise click.UsageError(f"{h5ad_path} and {pseudobulk_path} come from different PREPROCESS runs")
    de = read_de_table(de_path, pb.targets)
    table = noise_ceiling(adata.X, adata.obs["perturbation"].to_numpy(), adata.var_names, test, pb.control,
                          de.de_genes, n_draws=n_draws, seed=split.seed, metrics=metrics,
                          reference=centroid(pb, train), weights=de.weights,
                          alpha=de.interpolation, observed_de=de.observed,
                          control_label=pb.control_label, batches=adata.obs["batch"].to_numpy())
    table = table.assign(dataset=dataset, **split.labels, embedding="none", fallback=False,
                         n_fit=float("nan"))
    write_table(table[METRIC_COLUMNS].set_index("dataset"), out_path)
    click.echo(f"{out_path}: noise ceiling and split-half duplicate of {len(test)} perturbations over {n_draws} draws")


if __name__ == "__main__":
    main()
