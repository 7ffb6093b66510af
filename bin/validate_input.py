#!/usr/bin/env python3
"""Check one input dataset against pertprobe's input contract."""

import click
from pertprobe.cli import command, dataset_options


@command("validate_input.py", packages=["anndata", "h5py", "numpy", "pandas"])
@click.option("--h5ad", "h5ad_path", required=True, help="Input dataset (.h5ad).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None, help="Write the summary as JSON.")
@dataset_options
def main(h5ad_path: str, out_path: str | None, spec) -> None:
    """Validate H5AD; exit non-zero with a message naming the file, field and fix on bad input."""
    from pertprobe.data.validate import validate_dataset
    from pertprobe.io import write_json

    summary = validate_dataset(h5ad_path, spec)
    if out_path:
        write_json(summary, out_path)
    click.echo(f"{h5ad_path}: OK ({summary['n_cells']} cells, {summary['n_genes']} genes, "
               f"{summary['n_perturbations']} perturbations, {summary['n_control_cells']} control cells)")


if __name__ == "__main__":
    main()
