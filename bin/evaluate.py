#!/usr/bin/env python3
"""Score prediction files (e.g. every prediction of one split) against the observed pseudobulk."""

import click
from pertprobe.cli import command, registry_names


@command("evaluate.py", packages=["numpy", "pandas", "pyarrow"])
@click.option("--prediction", "prediction_paths", required=True, multiple=True,
              help="Prediction .parquet from PREDICT; repeat for several.")
@click.option("--pseudobulk", "pseudobulk_path", required=True, help="PREFIX.pseudobulk.parquet from PREPROCESS.")
@click.option("--de", "de_path", default=None, help="PREFIX.de.parquet from PREPROCESS (DE-gene and weighted metrics).")
@click.option("--splits", "splits_path", default=None,
              help="PREFIX.splits.csv from PREPROCESS (centroid metrics: the perturbed training mean of each split).")
@click.option("--metrics", default="full", show_default=True, callback=registry_names("metric"),
              help="Comma-separated metrics, or a profile: minimal, paper, full (docs/registry.md).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Metric table (.parquet/.csv).")
def main(prediction_paths: tuple[str, ...], pseudobulk_path: str, de_path: str | None, splits_path: str | None,
         metrics: list[str], out_path: str) -> None:
    """Write the long metric table: dataset, task, split, seed, model, embedding, perturbation, metric, value."""
    import pandas as pd
    from pertprobe.data.pseudobulk import Pseudobulk
    from pertprobe.data.splits import SplitKey, split_sets
    from pertprobe.io import read_table, read_table_metadata, write_table
    from pertprobe.response.de_agreement import read_de_table
    from pertprobe.response.metrics import METRIC_COLUMNS, response_metrics
    from pertprobe.response.training import centroid

    pb = Pseudobulk.load(pseudobulk_path)
    de, weights, observed_de = None, None, None
    if de_path:
        de, weights, _, observed_de = read_de_table(de_path, pb.targets)
    splits = read_table(splits_path) if splits_path else None
    centroids = {}  # SplitKey -> the perturbed training mean, once per split
    tables = []
    for prediction_path in sorted(prediction_paths):
        pred = read_table(prediction_path)
        meta = read_table_metadata(prediction_path)
        missing = sorted(set(pred.index) - set(pb.perturbations))
        if missing or not pred.columns.equals(pb.genes):
            raise click.UsageError(f"{prediction_path}: perturbations or genes do not match {pseudobulk_path} "
                                   f"(unknown perturbations: {missing[:5]}); predict from the same PREPROCESS output")
        reference = None
        if splits is not None:
            key = SplitKey.from_labels(meta)
            if key not in centroids:
                centroids[key] = centroid(pb, split_sets(splits, key, splits_path)[0])
            reference = centroids[key]
        table = response_metrics(pred, pb.means.loc[pred.index], pb.control, de, metrics=metrics, reference=reference,
                                 weights=weights, observed_de=observed_de)
        for key in ("dataset", "task", "split", "seed", "model", "embedding"):
            table[key] = meta[key]
        info = meta.get("info", {})
        table["fallback"] = table["perturbation"].isin(info.get("fallback", []))
        table["n_fit"] = float(meta["n_train"] - info.get("n_train_without_embedding", 0))
        tables.append(table[METRIC_COLUMNS])
    write_table(pd.concat(tables, ignore_index=True).set_index("dataset"), out_path)
    click.echo(f"{out_path}: {len(tables)} prediction file(s) scored")

if __name__ == "__main__":
    main()
