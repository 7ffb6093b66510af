#!/usr/bin/env python3
"""Fine-tune a foundation model (one weight-loading / architecture variant) on one split's training
perturbations and predict its test perturbations' pseudobulk from control cells."""

import click
from pertprobe.cli import command, dataset_options, registry_name, split_options


@command("predict_finetune.py", packages=["numpy", "pandas", "pyarrow", "anndata", "torch", "peft"])
@click.option("--h5ad", "h5ad_path", required=True, help="PREFIX.processed.h5ad from PREPROCESS (log-normalised X).")
@click.option("--pseudobulk", "pseudobulk_path", required=True,
              help="PREFIX.pseudobulk.parquet from PREPROCESS (targets, control label).")
@click.option("--splits", "splits_path", required=True, help="PREFIX.splits.csv from PREPROCESS.")
@split_options
@click.option("--predictor", required=True, callback=registry_name("predictor", needs=("cells",)),
              help="A fine-tuned predictor (docs/registry.md), e.g. scgpt_finetune.")
@click.option("--variant", required=True, callback=registry_name("finetune_variant"),
              help="Weight-loading / architecture control (docs/registry.md#finetune_variant).")
@click.option("--checkpoint", required=True, type=click.Path(exists=True, file_okay=False),
              help="The foundation model's checkpoint directory (its released layout).")
@click.option("--gene-id-map", type=click.Path(exists=True, dir_okay=False),
              help="CSV/TSV with columns symbol,ensembl for genes the dataset names by one id only.")
@click.option("--dataset", required=True, help="Dataset id recorded in the output.")
@click.option("--epochs", default=15, show_default=True, type=click.IntRange(min=1))
@click.option("--max-steps", default=0, show_default=True, type=click.IntRange(min=0),
              help="Cap on optimiser steps over the run (0: none).")
@click.option("--learning-rate", default=1e-4, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--lr-decay", default=0.9, show_default=True, type=click.FloatRange(0, 1, min_open=True),
              help="Learning-rate factor per epoch (StepLR gamma).")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--eval-batch-size", default=16, show_default=True, type=click.IntRange(min=1),
              help="Control cells per forward pass when predicting (all genes in one sequence).")
@click.option("--max-cells-per-perturbation", default=0, show_default=True, type=click.IntRange(min=0),
              help="Training cells per perturbation, a seeded sample (0: all).")
@click.option("--max-seq-len", default=1536, show_default=True, type=click.IntRange(min=2),
              help="Genes per training batch (a random subset per batch when the dataset has more).")
@click.option("--keep-targets/--no-keep-targets", default=False, show_default=True,
              help="Force a batch's target genes into its gene subset (upstream does not).")
@click.option("--pool-size", default=256, show_default=True, type=click.IntRange(min=1),
              help="Control cells each perturbation is predicted from, then averaged.")
@click.option("--patience", default=10, show_default=True, type=click.IntRange(min=1),
              help="Epochs without a better validation Pearson before stopping.")
@click.option("--validation-fraction", default=0.15, show_default=True, type=click.FloatRange(0, 1, max_open=True))
@click.option("--lora-rank", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--lora-alpha", default=32.0, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--lora-dropout", default=0.1, show_default=True, type=click.FloatRange(0, 1, max_open=True))
@click.option("--value-input", default="binned", show_default=True, type=click.Choice(["binned", "log"]),
              help="Value-encoder input: per-cell bins of the control cell (as pretraining) or its log values.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N.")
@click.option("--precision", default="fp32", show_default=True, type=click.Choice(["fp32", "bf16", "fp16"]),
              help="Autocast on CUDA, fp16 with a gradient scaler as upstream (CPU always runs fp32).")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1), help="torch CPU threads.")
@click.option("--min-gene-coverage", default=0.5, show_default=True, type=click.FloatRange(0, 1),
              help="Fail when the model's vocabulary covers a smaller fraction of the dataset's genes.")
@click.option("--out-dir", default=".", show_default=True, type=click.Path(file_okay=False),
              help="Folder for DATASET.PREDICTOR.VARIANT.TASK.seedS.foldF.{prediction.parquet,training.csv}.")
@dataset_options
def main(h5ad_path: str, pseudobulk_path: str, splits_path: str, split, predictor: str, variant: str,
         checkpoint: str, gene_id_map: str | None, dataset: str, out_dir: str, device: str, min_gene_coverage: float,
         spec, **hyper) -> None:
    """Write the variant's test predictions (prediction.parquet) and its training record (training.csv)."""
    from pathlib import Path

    import pandas as pd
    from pertprobe.data.pseudobulk import Pseudobulk
    from pertprobe.data.splits import split_sets
    from pertprobe.io import read_table, write_table
    from pertprobe.models.finetune import FinetuneConfig, finetune, read_cells
    from pertprobe.models.finetune import variant as variant_spec
    from pertprobe.models.gene_ids import GeneIdMap, dataset_gene_ids
    from pertprobe.registry import get

    config = FinetuneConfig(device=device, **hyper)
    train, test = split_sets(read_table(splits_path), split, splits_path)
    pseudobulk = Pseudobulk.load(pseudobulk_path)
    cells = read_cells(h5ad_path, pseudobulk)
    import anndata as ad

    var = ad.read_h5ad(h5ad_path, backed="r").var
    genes = dataset_gene_ids(var, spec.gene_id_type, GeneIdMap.from_table(gene_id_map) if gene_id_map else None)
    adapter = get("predictor", predictor).func(checkpoint, genes, min_gene_coverage)
    result = finetune(adapter, variant_spec(variant), cells, train, test, config, split.seed, split.fold,
                      on_epoch=lambda row: click.echo(
                          f"epoch {row['epoch']}: train MSE {row['train_mse']:.5g}, validation Pearson "
                          f"{row['val_pearson']:.4f}, {row['cells_per_second']:.1f} cells/s"))
    stem = Path(out_dir) / f"{dataset}.{predictor}.{variant}.{split.stem}"
    frame = pd.DataFrame(result.profiles, index=pd.Index(test, name="perturbation"), columns=pseudobulk.genes)
    info = {**result.info, "fallback": result.info["unflagged"]}
    write_table(frame, f"{stem}.prediction.parquet",
                metadata={"dataset": dataset, **split.labels, "model": predictor,
                          "embedding": variant, "n_train": len(train), "n_test": len(test), "info": info,
                          "params": info["config"]})
    record = pd.DataFrame([{"dataset": dataset, "task": split.task, "predictor": predictor, **result.record}]).set_index("dataset")
    write_table(record, f"{stem}.training.csv")
    click.echo(f"{stem}.prediction.parquet: {len(test)} test perturbations predicted by {predictor}/{variant} "
               f"({split}; {result.record['n_trainable']:,} of {result.record['n_parameters']:,} "
               f"parameters trained, {result.record['n_tensors_loaded']} tensors loaded, "
               f"{result.record['seconds_total']:.1f} s)")


if __name__ == "__main__":
    main()
