#!/usr/bin/env python3
"""Build the leaderboard and the HTML report from all metric tables."""

import click

from pertprobe.cli import command


@command("report.py", packages=["numpy", "pandas", "scipy", "matplotlib", "anndata"])
@click.option("--metrics", "metric_paths", multiple=True, required=True, help="Metric tables from EVALUATE.")
@click.option("--summary", "summary_paths", multiple=True, help="PREFIX.summary.json files from PREPROCESS.")
@click.option("--embedding", "embedding_paths", multiple=True, help="Cell embeddings from EMBED_CELLS.")
@click.option("--cell-metrics", "cell_metric_paths", multiple=True,
              help="Cell-embedding benchmark tables from EVAL_CELL_EMBEDDINGS.")
@click.option("--software-versions", "versions_path", default=None, help="Collected versions.yml of the run.")
@click.option("--outdir", default=".", show_default=True, type=click.Path(file_okay=False))
def main(metric_paths, summary_paths, embedding_paths, cell_metric_paths, versions_path, outdir) -> None:
    """Write OUTDIR/leaderboard.csv, metrics.parquet, statistics.csv, cell_leaderboard.csv and report.html."""
    import json
    from pathlib import Path

    import anndata as ad
    import pandas as pd

    from pertprobe.cell_report import cell_leaderboard
    from pertprobe.io import atomic_path, read_table, write_table
    from pertprobe.report import METRIC_COLUMNS, leaderboard, render_html
    from pertprobe.statistics import paired_comparisons

    metrics = pd.concat([read_table(p).reset_index() for p in sorted(metric_paths)], ignore_index=True)
    metrics = metrics[METRIC_COLUMNS].sort_values(METRIC_COLUMNS[:-1], ignore_index=True)
    board = leaderboard(metrics)
    stats = paired_comparisons(metrics)
    datasets = {Path(p).name.removesuffix(".summary.json"): json.loads(Path(p).read_text()) for p in summary_paths}
    embeddings = []
    for p in sorted(embedding_paths):
        emb = ad.read_h5ad(p, backed="r")
        info = emb.uns["embedding"]
        embeddings.append({"file": Path(p).name, "model": info["model"], "n_cells": emb.n_obs,
                           "n_dims": int(info["n_dims"]), "checkpoint_hash": info["checkpoint_hash"]})
        emb.file.close()
    cell_board = None
    if cell_metric_paths:
        cell_board = cell_leaderboard(pd.concat([read_table(p).reset_index() for p in sorted(cell_metric_paths)],
                                                ignore_index=True))
    versions = Path(versions_path).read_text() if versions_path else ""
    out = Path(outdir)
    write_table(board.set_index("dataset"), out / "leaderboard.csv")
    write_table(metrics.set_index("dataset"), out / "metrics.parquet")
    write_table(stats.set_index("dataset"), out / "statistics.csv")
    if cell_board is not None:
        write_table(cell_board.set_index("dataset"), out / "cell_leaderboard.csv")
    with atomic_path(out / "report.html") as tmp:
        tmp.write_text(render_html(board, metrics, datasets, embeddings, versions, stats, cell_board))
    click.echo(f"{out / 'leaderboard.csv'}: {len(board)} rows; {out / 'report.html'} written")


if __name__ == "__main__":
    main()
