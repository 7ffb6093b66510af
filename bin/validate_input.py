#!/usr/bin/env python3
"""Check one input dataset against pertprobe's input contract."""

import click
from pertprobe.cli import auto_or_count, command, dataset_options


@command("validate_input.py", packages=["anndata", "h5py", "numpy", "pandas", "rdkit"])
@click.option("--h5ad", "h5ad_path", required=True, help="Input dataset (.h5ad).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None, help="Write the summary as JSON.")
@click.option("--n-folds", default=None, type=click.IntRange(min=2),
              help="Folds over perturbations the run will use (at most one per perturbation; default: not checked).")
@click.option("--min-cells-per-gene", default=None, type=click.IntRange(min=0),
              help="PREPROCESS's gene filter: enough genes besides the targets must pass it (default: not checked).")
@click.option("--min-genes-per-cell", default=None,
              callback=lambda c, p, v: None if v is None else ("auto" if auto_or_count(c, p, v) is None else int(v)),
              help="PREPROCESS's cell filter (a count, or auto): enough control cells must pass it (default: not "
                   "checked).")
@click.option("--compound-table", "compound_path", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Drug datasets: CSV/TSV compound,smiles; every compound must have a SMILES RDKit parses.")
@click.option("--max-unresolved-fraction", default=0.2, show_default=True, type=click.FloatRange(0, 1),
              help="Largest share of perturbations whose target genes are not all measured.")
@dataset_options
def main(h5ad_path: str, out_path: str | None, n_folds: int | None, min_cells_per_gene: int | None,
         min_genes_per_cell: int | str | None, compound_path: str | None, max_unresolved_fraction: float,
         spec) -> None:
    """Validate H5AD; exit non-zero with a message naming the file, field and fix on bad input."""
    from pertprobe.data.validate import RunChecks, validate_dataset
    from pertprobe.io import write_json

    checks = RunChecks(n_folds=n_folds, min_cells_per_gene=min_cells_per_gene, min_genes_per_cell=min_genes_per_cell,
                       max_unresolved_fraction=max_unresolved_fraction)
    summary = validate_dataset(h5ad_path, spec, checks, compound_path)
    if out_path:
        write_json(summary, out_path)
    click.echo(f"{h5ad_path}: OK ({summary['n_cells']} cells, {summary['n_genes']} genes, "
               f"{summary['n_perturbations']} perturbations, {summary['n_control_cells']} control cells)")


if __name__ == "__main__":
    main()
