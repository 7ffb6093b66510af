#!/usr/bin/env python3
"""Relabel a dataset's perturbations by their targets (guide -> gene) with the samplesheet's label_map."""

import click
from pertprobe.cli import command, dataset_options


@command("apply_label_map.py", packages=["anndata", "pandas"])
@click.option("--h5ad", "h5ad_path", required=True, type=click.Path(exists=True, dir_okay=False), help="Input dataset.")
@click.option("--label-map", "map_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="CSV/TSV with columns label,target.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Relabelled dataset (.h5ad).")
@dataset_options
def main(h5ad_path: str, map_path: str, out_path: str, spec) -> None:
    """Write the dataset with obs[perturbation_col] = target; the original labels are kept in
    obs['<perturbation_col>_label']."""
    import anndata as ad
    from pertprobe.data.label_map import apply_label_map, read_label_map
    from pertprobe.io import write_h5ad

    mapping = read_label_map(map_path)
    adata = ad.read_h5ad(h5ad_path)
    if spec.perturbation_col not in adata.obs.columns:
        raise click.UsageError(f"{h5ad_path}: no obs['{spec.perturbation_col}'] (check perturbation_col)")
    targets = apply_label_map(adata.obs, mapping, spec, h5ad_path)
    adata.obs[f"{spec.perturbation_col}_label"] = adata.obs[spec.perturbation_col].astype(str).astype("category")
    adata.obs[spec.perturbation_col] = targets.astype("category")
    write_h5ad(adata, out_path)
    click.echo(f"{out_path}: {adata.obs[f'{spec.perturbation_col}_label'].nunique()} labels -> "
               f"{targets.nunique()} perturbations (control included)")


if __name__ == "__main__":
    main()
