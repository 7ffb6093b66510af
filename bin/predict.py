#!/usr/bin/env python3
"""Predict the pseudobulk of the test perturbations of one split."""

import click

from pertprobe.cli import command


@command("predict.py", packages=["numpy", "pandas", "pyarrow"])
@click.option("--pseudobulk", "pseudobulk_path", required=True, help="PREFIX.pseudobulk.parquet from PREPROCESS.")
@click.option("--splits", "splits_path", required=True, help="PREFIX.splits.csv from PREPROCESS.")
@click.option("--seed", required=True, type=int, help="Split seed.")
@click.option("--fold", required=True, type=int, help="Test fold.")
@click.option("--predictor", required=True, help="Predictor name (no_change, mean, crispr_informed_mean).")
@click.option("--dataset", required=True, help="Dataset id recorded in the output.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Output .parquet.")
def main(pseudobulk_path: str, splits_path: str, seed: int, fold: int, predictor: str, dataset: str,
         out_path: str) -> None:
    """Write test perturbations x genes predictions with the split, seed and predictor that made them."""
    from pertprobe.io import read_table, write_table
    from pertprobe.predictors import PREDICTORS, predict
    from pertprobe.pseudobulk import Pseudobulk

    if predictor not in PREDICTORS:
        raise click.BadParameter(f"unknown predictor {predictor!r}; choose from {', '.join(PREDICTORS)}")
    splits = read_table(splits_path).reset_index()
    rows = splits[(splits["seed"] == seed) & (splits["fold"] == fold)]
    if rows.empty:
        raise click.BadParameter(f"{splits_path} has no split with seed={seed}, fold={fold}")
    train = rows.loc[rows["split"] == "train", "perturbation"].tolist()
    test = rows.loc[rows["split"] == "test", "perturbation"].tolist()
    pred = predict(predictor, Pseudobulk.load(pseudobulk_path), train, test)
    write_table(pred, out_path, metadata={"dataset": dataset, "seed": seed, "split": f"fold{fold}",
                                          "model": predictor, "embedding": "none",
                                          "n_train": len(train), "n_test": len(test)})
    click.echo(f"{out_path}: {len(test)} test perturbations predicted by {predictor} (seed {seed}, fold {fold})")


if __name__ == "__main__":
    main()
