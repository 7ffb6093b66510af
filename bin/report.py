#!/usr/bin/env python3
"""Build the leaderboard and the HTML report from all metric tables."""

import click
from pertprobe.cli import command


@command("report.py", packages=["numpy", "pandas", "scipy", "matplotlib", "anndata"])
@click.option("--metrics", "metric_paths", multiple=True, required=True, help="Metric tables from EVALUATE.")
@click.option("--summary", "summary_paths", multiple=True, help="PREFIX.summary.json files from PREPROCESS.")
@click.option("--pseudobulk", "pseudobulk_paths", multiple=True,
              help="PREFIX.pseudobulk.parquet files from PREPROCESS, for the per-perturbation views.")
@click.option("--splits", "splits_paths", multiple=True,
              help="PREFIX.splits.csv files from PREPROCESS, for the combinations by seen singles.")
@click.option("--embedding", "embedding_paths", multiple=True, help="Cell embeddings from EMBED_CELLS.")
@click.option("--gene-table", "gene_table_paths", multiple=True,
              help="Foundation-model gene-embedding tables from EXTRACT_GENE_EMBEDDINGS.")
@click.option("--cell-metrics", "cell_metric_paths", multiple=True,
              help="Cell-embedding benchmark tables from EVAL_CELL_EMBEDDINGS.")
@click.option("--training", "training_paths", multiple=True,
              help="Training records (*.training.csv) of the fine-tuned predictors from PREDICT_FINETUNE.")
@click.option("--software-versions", "versions_path", default=None, help="Collected versions.yml of the run.")
@click.option("--outdir", default=".", show_default=True, type=click.Path(file_okay=False))
def main(metric_paths, summary_paths, pseudobulk_paths, splits_paths, embedding_paths, gene_table_paths, cell_metric_paths,
         training_paths, versions_path, outdir) -> None:
    """Write OUTDIR/leaderboard.csv, metrics.parquet, statistics.csv, cell_leaderboard.csv, report.html and, with
    --pseudobulk, perturbations.csv and knockdown.csv; with --splits, combination.csv; with --training, training.csv."""
    import json
    from pathlib import Path

    import anndata as ad
    import pandas as pd
    from pertprobe.data.pseudobulk import Pseudobulk
    from pertprobe.data.tasks import seen_singles
    from pertprobe.report.combination import seen_scores
    from pertprobe.io import atomic_path, read_table, write_table
    from pertprobe.report.cells import cell_leaderboard
    from pertprobe.report.html import render_html
    from pertprobe.report.leaderboard import METRIC_COLUMNS, leaderboard
    from pertprobe.report.perturbations import perturbation_tables
    from pertprobe.response.metrics import METRIC_KEYS
    from pertprobe.response.statistics import paired_comparisons

    metrics = pd.concat([read_table(p).reset_index() for p in sorted(metric_paths)], ignore_index=True)
    metrics = metrics[METRIC_COLUMNS].sort_values(METRIC_KEYS, ignore_index=True)
    board = leaderboard(metrics)
    stats = paired_comparisons(metrics)
    datasets = {Path(p).name.removesuffix(".summary.json"): json.loads(Path(p).read_text()) for p in summary_paths}
    pseudobulks = {Path(p).name.removesuffix(".pseudobulk.parquet"): Pseudobulk.load(p)
                   for p in sorted(pseudobulk_paths)}
    seen = None
    if splits_paths:
        seen = pd.concat([seen_singles(read_table(p)).assign(dataset=Path(p).name.removesuffix(".splits.csv"))
                          for p in sorted(splits_paths)], ignore_index=True)
    from pertprobe.response.gene_embeddings import embedding_metadata

    embeddings = []
    for p in sorted(embedding_paths):
        emb = ad.read_h5ad(p, backed="r")
        embeddings.append(embedding_row(Path(p).name, "cells", emb.n_obs, emb.uns["embedding"]))
        emb.file.close()
    for p in sorted(gene_table_paths):
        info = embedding_metadata(p)
        embeddings.append(embedding_row(Path(p).name, "perturbation targets", info["targets_covered"]["n_covered"], info))
    cell_board = None
    if cell_metric_paths:
        cell_board = cell_leaderboard(pd.concat([read_table(p).reset_index() for p in sorted(cell_metric_paths)],
                                                ignore_index=True))
    training = None
    if training_paths:
        training = pd.concat([read_table(p).reset_index() for p in sorted(training_paths)], ignore_index=True)
        training = training.sort_values(["dataset", "task", "predictor", "variant", "seed", "fold"],
                                        ignore_index=True)
    versions = Path(versions_path).read_text() if versions_path else ""
    out = Path(outdir)
    write_table(board.set_index("dataset"), out / "leaderboard.csv")
    write_table(metrics.set_index("dataset"), out / "metrics.parquet")
    write_table(stats.set_index("dataset"), out / "statistics.csv")
    if cell_board is not None:
        write_table(cell_board.set_index("dataset"), out / "cell_leaderboard.csv")
    if training is not None:
        write_table(training.set_index("dataset"), out / "training.csv")
    if seen is not None:
        write_table(seen_scores(metrics, seen).set_index("dataset"), out / "combination.csv")
    if pseudobulks:
        scores, knockdown = perturbation_tables(metrics, board, pseudobulks)
        write_table(scores.set_index("dataset"), out / "perturbations.csv")
        write_table(knockdown.set_index("dataset"), out / "knockdown.csv")
    with atomic_path(out / "report.html") as tmp:
        tmp.write_text(render_html(board, metrics, datasets, embeddings, versions, stats, cell_board, pseudobulks,
                                   training, seen))
    click.echo(f"{out / 'leaderboard.csv'}: {len(board)} rows; {out / 'report.html'} written")


def embedding_row(file: str, rows: str, n_rows: int, info: dict) -> dict:
    """One line of the report's embedding table: what was embedded, from which checkpoint, coverage."""
    coverage = info.get("gene_coverage", {})
    return {"file": file, "model": info["model"], "rows": rows, "n_rows": n_rows, "n_dims": int(info["n_dims"]),
            "checkpoint_hash": str(info["checkpoint_hash"])[:19], "tensors_loaded": info.get("n_tensors_loaded", ""),
            "gene_coverage": f"{coverage['n_covered']}/{coverage['n_genes']}" if coverage else ""}


if __name__ == "__main__":
    main()
