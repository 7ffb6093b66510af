#!/usr/bin/env python3
"""Preprocess one dataset: QC, normalization, gene selection, pseudobulk, DE genes, splits."""

import click
from pertprobe.cli import auto_or_count, command, dataset_options, int_list, registry_names


@command("preprocess.py", packages=["anndata", "scanpy", "numpy", "pandas", "scipy", "pyarrow"])
@click.option("--h5ad", "h5ad_path", required=True,
              help="Input dataset (.h5ad), already checked by validate_input.py (VALIDATE_INPUT).")
@click.option("--prefix", required=True, help="Output prefix; writes PREFIX.processed.h5ad and tables.")
@click.option("--min-genes-per-cell", default="auto", show_default=True, callback=auto_or_count,
              help="QC: detected genes a cell needs; auto: min(200, 10% of the measured genes), so targeted panels "
                   "keep their cells.")
@click.option("--min-cells-per-gene", default=3, show_default=True, type=click.IntRange(min=0))
@click.option("--n-hvg", default=2000, show_default=True, type=click.IntRange(min=1))
@click.option("--n-de-genes", default=20, show_default=True, type=click.IntRange(min=1),
              help="Most DE genes per perturbation: significant, expressed genes ranked by |t|.")
@click.option("--de-alpha", default=0.05, show_default=True, type=click.FloatRange(0, 1, min_open=True),
              help="Benjamini-Hochberg adjusted p-value below which a gene is a DE gene.")
@click.option("--de-min-fraction", default=0.1, show_default=True, type=click.FloatRange(0, 1),
              help="Test a gene only where this share of the perturbation's or the control's cells express it.")
@click.option("--de-pseudocount", default=1.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Normalized counts added to both means of a log2 fold-change.")
@click.option("--n-folds", default=5, show_default=True, type=click.IntRange(min=2))
@click.option("--seeds", default="0", show_default=True, callback=lambda c, p, v: int_list(v),
              help="Comma-separated split seeds.")
@click.option("--tasks", default="full", show_default=True, callback=registry_names("task"),
              help="Tasks whose splits to write (docs/tasks.md); one the dataset cannot support is skipped and "
                   "recorded in the summary.")
@click.option("--combination-unseen-singles", default=0.0, show_default=True, type=click.FloatRange(0, 1, max_open=True),
              help="combination task: share of singles held out of training, so that test combinations with one "
                   "or no seen single exist (GEARS' simulation split: 0.25).")
@dataset_options
def main(h5ad_path: str, prefix: str, min_genes_per_cell: int | None, min_cells_per_gene: int, n_hvg: int,
         n_de_genes: int, de_alpha: float, de_min_fraction: float, de_pseudocount: float, n_folds: int,
         seeds: tuple[int, ...], tasks: list[str], combination_unseen_singles: float,
         spec) -> None:
    """Write PREFIX.{processed.h5ad,pseudobulk.parquet,pseudobulk_by_batch.parquet,de.parquet,splits.csv,summary.json,
    label_resolution.csv,de_counts.csv}."""
    from dataclasses import asdict

    from pertprobe.data.preprocess import PreprocessConfig, load_counts, preprocess
    from pertprobe.io import write_h5ad, write_json, write_table
    config = PreprocessConfig(min_genes_per_cell=min_genes_per_cell, min_cells_per_gene=min_cells_per_gene,
                              n_hvg=n_hvg, n_de_genes=n_de_genes, de_alpha=de_alpha,
                              de_min_fraction=de_min_fraction, de_pseudocount=de_pseudocount, n_folds=n_folds,
                              seeds=seeds, tasks=tuple(tasks), combination_unseen_singles=combination_unseen_singles)
    result = preprocess(load_counts(h5ad_path, spec), spec, config)
    write_table(result.de.set_index("perturbation"), f"{prefix}.de.parquet", metadata=asdict(config.de))
    write_table(result.splits.set_index("task"), f"{prefix}.splits.csv")
    write_table(result.pseudobulk_by_batch, f"{prefix}.pseudobulk_by_batch.parquet")
    result.pseudobulk.save(f"{prefix}.pseudobulk.parquet")
    write_json(result.summary, f"{prefix}.summary.json")
    write_table(result.resolution.set_index("perturbation"), f"{prefix}.label_resolution.csv")
    write_table(result.de_counts, f"{prefix}.de_counts.csv")
    write_h5ad(result.adata, f"{prefix}.processed.h5ad")
    s = result.summary
    click.echo(f"{prefix}: {s['n_cells']} cells x {s['n_genes']} genes, {s['n_perturbations']} perturbations")


if __name__ == "__main__":
    main()
