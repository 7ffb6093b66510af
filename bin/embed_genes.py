#!/usr/bin/env python3
"""Write a gene (perturbation) embedding table for one split."""

import click
from pertprobe.cli import command, split_options


@command("embed_genes.py", packages=["numpy", "pandas", "pyarrow", "scikit-learn", "rdkit"])
@click.option("--source", required=True,
              help="A built-in source (data_pca, random; docs/registry.md) or the path of a gene-embedding table.")
@click.option("--pseudobulk", "pseudobulk_path", required=True, help="PREFIX.pseudobulk.parquet from PREPROCESS.")
@click.option("--splits", "splits_path", required=True, help="PREFIX.splits.csv from PREPROCESS.")
@split_options
@click.option("--n-dims", default=10, show_default=True, type=click.IntRange(min=1), help="Dimensions (data_pca, random).")
@click.option("--name", default=None, help="Name recorded for an external table (default: file stem).")
@click.option("--compound-table", "compound_path", default=None, type=click.Path(exists=True, dir_okay=False),
              help="CSV/TSV compound,smiles: the molecule sources (morgan, rdkit_descriptors) read it.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Output .parquet.")
def main(source: str, pseudobulk_path: str, splits_path: str, split, n_dims: int, name: str | None,
         compound_path: str | None, out_path: str) -> None:
    """Data-derived PCA (training perturbations of the split only), seeded random, or an external table."""
    from pathlib import Path

    from pertprobe.data.pseudobulk import Pseudobulk
    from pertprobe.data.splits import split_sets
    from pertprobe.io import read_table
    from pertprobe.data.compounds import check_compounds, read_compound_table
    from pertprobe.registry import require_applies
    from pertprobe.registry import get as registered
    from pertprobe.registry import names
    from pertprobe.response.gene_embeddings import read_embedding, write_embedding

    pb = Pseudobulk.load(pseudobulk_path)
    train, _ = split_sets(read_table(splits_path), split, splits_path)
    entry = registered("gene_embedding", source) if source in names("gene_embedding", checkpoint=False) else None
    if entry is not None:
        try:
            require_applies(entry, pb.perturbation_type)
        except ValueError as err:
            raise click.UsageError(str(err)) from err
        compounds = None
        if "compound_table" in entry.needs:
            if not compound_path:
                raise click.UsageError(f"{source} needs --compound-table (the samplesheet's compound_table)")
            compounds = read_compound_table(compound_path)
            check_compounds(pb.perturbations, compounds, compound_path)
        table, label = entry.func(pb.means.loc[train], pb.targets, n_dims, split.seed, compounds=compounds), source
    else:
        table, label = read_embedding(source), name or Path(source).name.split(".")[0]
    covered = sum(any(t in table.index for t in pb.targets.get(p, []) + p.split("+")) for p in pb.perturbations)
    write_embedding(table, out_path, {"source": label, **split.labels,
                                      "fitted_on": "training perturbations" if entry and "training_pseudobulk" in entry.needs else "none",
                                      "n_dims": table.shape[1], "perturbations_covered": covered})
    click.echo(f"{out_path}: {label}, {table.shape[0]} genes x {table.shape[1]} dims, "
               f"{covered}/{len(pb.perturbations)} perturbations covered")


if __name__ == "__main__":
    main()
