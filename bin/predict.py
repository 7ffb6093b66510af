#!/usr/bin/env python3
"""Predict the pseudobulk of the test perturbations of one split, by one or more predictors."""

import click
from pertprobe.cli import command, registry_names, split_options


@command("predict.py", packages=["numpy", "pandas", "pyarrow", "scikit-learn", "torch"])
@click.option("--pseudobulk", "pseudobulk_path", required=True, help="PREFIX.pseudobulk.parquet from PREPROCESS.")
@click.option("--pseudobulk-by-batch", "by_batch_path", default=None,
              help="PREFIX.pseudobulk_by_batch.parquet (used by latent_additive).")
@click.option("--splits", "splits_path", required=True, help="PREFIX.splits.csv from PREPROCESS.")
@split_options
@click.option("--predictor", "predictors", required=True, multiple=True, callback=registry_names("predictor"),
              help="Predictor name or profile (docs/registry.md); repeat, or separate by commas, for several.")
@click.option("--gene-embedding", "embedding_path", default=None, help="Gene-embedding table from EMBED_GENES.")
@click.option("--dataset", required=True, help="Dataset id recorded in the output.")
@click.option("--linear-n-components", default=10, show_default=True, type=click.IntRange(min=1),
              help="k of the linear model's gene PCA.")
@click.option("--linear-ridge", default=0.1, show_default=True, type=click.FloatRange(min=0), help="λ of the linear model.")
@click.option("--out-dir", default=".", show_default=True, type=click.Path(file_okay=False),
              help="Folder for DATASET.PREDICTOR.EMBEDDING.TASK.seedS.foldF.prediction.parquet, one per predictor.")
def main(pseudobulk_path: str, by_batch_path: str | None, splits_path: str, split,
         predictors: list[str], embedding_path: str | None, dataset: str, linear_n_components: int,
         linear_ridge: float, out_dir: str) -> None:
    """Write test perturbations x genes predictions with the split, seed, predictor and embedding that made them."""
    from pathlib import Path

    from pertprobe.data.pseudobulk import Pseudobulk
    from pertprobe.data.splits import split_sets
    from pertprobe.io import read_table, write_table
    from pertprobe.response.gene_embeddings import embedding_metadata, read_embedding
    from pertprobe.response.predictors import predict

    train, test = split_sets(read_table(splits_path), split, splits_path)
    embedding = read_embedding(embedding_path) if embedding_path else None
    emb_meta = embedding_metadata(embedding_path) if embedding_path else {}
    emb_name = emb_meta.get("source", Path(embedding_path).name.split(".")[0]) if embedding_path else "none"
    by_batch = read_table(by_batch_path) if by_batch_path else None
    pseudobulk = Pseudobulk.load(pseudobulk_path)
    for predictor in predictors:
        params = {"n_components": linear_n_components, "ridge": linear_ridge} if predictor == "linear" else {}
        pred, info = predict(predictor, pseudobulk, train, test, embedding=embedding, by_batch=by_batch, seed=split.seed,
                             **params)
        out_path = Path(out_dir) / f"{dataset}.{predictor}.{emb_name}.{split.stem}.prediction.parquet"
        write_table(pred, out_path, metadata={"dataset": dataset, **split.labels,
                                              "model": predictor, "embedding": emb_name, "n_train": len(train),
                                              "n_test": len(test), "info": info, "params": params})
        fallback = f", {info['n_fallback']} fell back to the mean" if "n_fallback" in info else ""
        click.echo(f"{out_path}: {len(test)} test perturbations predicted by {predictor}/{emb_name} "
                   f"({split}{fallback})")

if __name__ == "__main__":
    main()
