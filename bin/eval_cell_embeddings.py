#!/usr/bin/env python3
"""Benchmark cell embeddings of one dataset on the five perturbation-analysis tasks under each alignment."""

import click
from pertprobe.cli import command, registry_names, str_list


@command("eval_cell_embeddings.py", packages=["anndata", "numpy", "scikit-learn", "scib-metrics", "jax"])
@click.option("--embedding", "embedding_paths", required=True, multiple=True,
              help="Cell embedding (.embedding.h5ad); repeat for several embeddings of the same dataset.")
@click.option("--h5ad", "h5ad_path", required=True, help="Processed dataset (.processed.h5ad).")
@click.option("--splits", "splits_path", required=True, help="Perturbation splits (splits.csv) for the decoder probe.")
@click.option("--dataset", required=True, help="Dataset id written into the tables.")
@click.option("--relationships", "relationships_path", default=None,
              help="Known relationships TSV (gene_a, gene_b, source); without it the recall task is skipped.")
@click.option("--alignments", default="full", show_default=True, callback=registry_names("alignment"),
              help="Comma-separated alignments, or a profile: minimal, paper, full (docs/registry.md).")
@click.option("--tasks", default="full", show_default=True, callback=registry_names("cell_task"),
              help="Comma-separated tasks, or a profile: minimal, paper, full (docs/registry.md).")
@click.option("--holdout-batches", default="", callback=lambda c, p, v: str_list(v),
              help="Batches the separability probe is tested on (default: the last batch in sorted order).")
@click.option("--n-permutations", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Permutations of the energy-distance test.")
@click.option("--max-controls", default=1000, show_default=True, type=click.IntRange(min=2),
              help="Control cells (seeded sample) the energy distance compares with.")
@click.option("--n-null", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Null draws for replicate consistency.")
@click.option("--null-perturbations", default="", callback=lambda c, p, v: str_list(v),
              help="Perturbations forming the consistency null (default: targets detected in at most "
                   "--null-max-detection of control cells).")
@click.option("--null-max-detection", default=0.01, show_default=True, type=click.FloatRange(0, 1))
@click.option("--tail", default=0.05, show_default=True, type=click.FloatRange(0, 0.5, min_open=True),
              help="Tail fraction of the all-pairs cosine distribution for relationship recall.")
@click.option("--n-neighbors", default=90, show_default=True, type=click.IntRange(min=2))
@click.option("--max-cells-batch", default=20000, show_default=True, type=click.IntRange(min=10))
@click.option("--max-decoder-cells", default=50000, show_default=True, type=click.IntRange(min=10))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--compile-cache", default=None, type=click.Path(file_okay=False),
              help="Folder shared by all EVAL_CELL_EMBEDDINGS tasks where JAX keeps compiled kernels "
                   "(speeds up every task after the first; results unchanged).")
@click.option("--prefix", required=True,
              help="Writes PREFIX.MODEL.cell_metrics.csv and PREFIX.MODEL.cell_perturbations.csv per embedding.")
def main(embedding_paths: tuple[str, ...], h5ad_path: str, splits_path: str, dataset: str, relationships_path: str | None,
         alignments: list[str], tasks: list[str], holdout_batches: list[str], null_perturbations: list[str],
         compile_cache: str | None, prefix: str, **params) -> None:
    """Batch mixing, separability, replicate consistency, known-relationship recall and Structural Integrity."""
    import anndata as ad
    from pertprobe.cells.benchmark import CellBenchmarkConfig, evaluate_embedding
    from pertprobe.cells.perturbation_map import read_relationships
    from pertprobe.errors import InputError
    from pertprobe.io import read_table, write_table

    processed = ad.read_h5ad(h5ad_path)
    unknown = sorted(set(null_perturbations) - set(processed.obs["perturbation"].astype(str)))
    if unknown:
        raise click.BadParameter(f"{unknown} are not perturbations of {h5ad_path}", param_hint="--null-perturbations")
    relationships = read_relationships(relationships_path) if relationships_path else None
    if compile_cache:
        from pertprobe.cells.batch_mixing import use_compile_cache

        use_compile_cache(compile_cache)
    config = CellBenchmarkConfig(alignments=tuple(alignments), tasks=tuple(tasks),
                                 holdout_batches=tuple(holdout_batches),
                                 null_perturbations=tuple(null_perturbations), **params)
    splits = read_table(splits_path).reset_index()
    # Every embedding is checked before any is scored.
    models = {}
    for embedding_path in embedding_paths:
        emb = ad.read_h5ad(embedding_path, backed="r")
        model = emb.uns["embedding"].get("model") if "embedding" in emb.uns else None
        matches = emb.obs_names.equals(processed.obs_names)
        emb.file.close()
        if model is None or not matches:
            raise InputError(embedding_path, "obs_names/uns['embedding']",
                             f"is not an embedding of the cells of {h5ad_path}",
                             "embed the processed dataset with embed_cells.py (or an adapter following the embedding contract)")
        if model in models.values():
            raise InputError(embedding_path, "uns['embedding']['model']", f"'{model}' is given twice",
                             "pass one embedding per model")
        models[embedding_path] = model
    # Several embeddings in one process share its compiled kernels (scib-metrics' JAX, umap's numba).
    for i, (embedding_path, model) in enumerate(models.items(), start=1):
        click.echo(f"scoring {model} ({i}/{len(models)}): {len(alignments)} alignment(s) x {len(tasks)} task(s)", err=True)
        summary, per_pert = evaluate_embedding(ad.read_h5ad(embedding_path), processed, splits, dataset,
                                               relationships, config)
        write_table(summary.set_index("dataset"), f"{prefix}.{model}.cell_metrics.csv")
        write_table(per_pert.set_index("dataset"), f"{prefix}.{model}.cell_perturbations.csv")
        click.echo(f"{prefix}.{model}: {len(summary)} summary values over {len(alignments)} alignment(s)")

if __name__ == "__main__":
    main()
