#!/usr/bin/env python3
"""Embed a dataset's perturbation targets with a foundation model (gene-embedding table)."""

import click
from pertprobe.cli import command, dataset_options, model_run_options, registry_name


@command("extract_gene_embeddings.py",
         packages=["anndata", "numpy", "pandas", "pyarrow", "torch", "transformers", "sentence-transformers"])
@click.option("--h5ad", "h5ad_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Processed dataset (.processed.h5ad): its perturbations name the genes to embed.")
@click.option("--counts-h5ad", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The input .h5ad PREPROCESS read (measured genes' identifiers; counts for contextual embeddings).")
@click.option("--model", required=True, callback=registry_name("gene_embedding", checkpoint=True),
              help="A foundation model with gene embeddings (docs/registry.md).")
@click.option("--side-input", type=click.Path(exists=True, dir_okay=False),
              help="The model's extra file where it has one (docs/registry.md): esm2 protein sequences, genept "
                   "gene descriptions.")
@click.option("--seed", default=0, show_default=True, type=int)
@model_run_options
@dataset_options
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Output .parquet table.")
def main(h5ad_path: str, counts_h5ad: str, model: str, side_input: str | None, seed: int,
         checkpoint: str | None, gene_id_map: str | None, run_options, model_options: dict, spec,
         out_path: str) -> None:
    """Write one row per covered perturbation target (gene-embedding table format, see docs/models/)."""
    import anndata as ad
    import pandas as pd
    from pertprobe.data.preprocess import input_var
    from pertprobe.models.adapters import UnknownModelOption, input_counts, run
    from pertprobe.models.gene_ids import GeneIdMap, dataset_gene_ids, target_gene_ids
    from pertprobe.registry import get
    from pertprobe.response.gene_embeddings import write_embedding

    if not checkpoint:
        raise click.UsageError(f"--model {model} needs --checkpoint (the model directory)")
    entry = get("gene_embedding", model)
    if entry.side_option and not side_input:
        raise click.UsageError(f"--model {model} needs --side-input: its {entry.side_input.replace('_', ' ')} "
                               f"(pipeline parameter --{entry.side_input})")
    if side_input and not entry.side_option:
        raise click.UsageError(f"--model {model} takes no --side-input")
    if entry.side_option:
        model_options[entry.side_option] = side_input
    id_map = GeneIdMap.from_table(gene_id_map) if gene_id_map else None
    processed = ad.read_h5ad(h5ad_path, backed="r")
    obs = processed.obs[["perturbation"]].copy()
    processed.file.close()
    perturbations = obs["perturbation"].astype(str).unique()
    raw = ad.read_h5ad(counts_h5ad, backed="r")
    var = input_var(raw, spec)
    raw.file.close()
    measured = dataset_gene_ids(var, spec.gene_id_type, id_map)
    targets = target_gene_ids(perturbations, spec.control_label, measured, id_map)
    contextual = model_options.get("kind") == "contextual"
    counts = None
    if contextual:  # contextual gene states need every measured gene of every cell
        counts = input_counts(counts_h5ad, spec, obs.index).X
    try:
        result = run(model, "genes", measured if contextual else targets, checkpoint, run_options, counts=counts,
                     **model_options)
    except UnknownModelOption as err:
        raise click.UsageError(str(err)) from err
    table = pd.DataFrame(result.values.astype("float64"), index=pd.Index(result.index, dtype=object),
                         columns=[f"dim{i}" for i in range(result.values.shape[1])])
    if contextual:  # rows are measured genes: keep the targets', under their labels
        by_symbol = {s: n for n, s in zip(measured.index, measured["symbol"], strict=True) if s}
        var_name = {label: label if label in measured.index else by_symbol.get(label) for label in targets.index}
        kept = [label for label in targets.index if var_name[label] in table.index]
        table = table.loc[[var_name[label] for label in kept]].set_axis(pd.Index(kept, dtype=object))
    meta = result.metadata(model)
    meta["targets_covered"] = {"n_targets": len(targets), "n_covered": int(table.shape[0])}
    write_embedding(table, out_path, meta)
    click.echo(f"{out_path}: {model}, {table.shape[0]}/{len(targets)} perturbation targets x {table.shape[1]} dims, "
               f"{result.load.n_tensors} tensors loaded")


if __name__ == "__main__":
    main()
