#!/usr/bin/env python3
"""Check every side input of a run (known relationships, gene-embedding tables, the gene-id map,
the foundation models' extra files) with the readers the steps use, before any work starts."""

import click
from pertprobe.cli import command


@command("validate_side_inputs.py", packages=["numpy", "pandas", "pyarrow"])
@click.option("--known-relationships", "relationships", default=None, type=click.Path(dir_okay=False),
              help="Known-relationship TSV (gene_a, gene_b, source).")
@click.option("--gene-embedding-table", "tables", multiple=True, type=click.Path(dir_okay=False),
              help="External gene-embedding table; repeat for several.")
@click.option("--gene-id-map", default=None, type=click.Path(dir_okay=False), help="symbol,ensembl table.")
@click.option("--side-input", "side_inputs", multiple=True, metavar="MODEL=PATH",
              help="A foundation model's extra file (docs/registry.md: side_input), e.g. esm2=proteins.fasta.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Summary (.json).")
def main(relationships: str | None, tables: tuple[str, ...], gene_id_map: str | None, side_inputs: tuple[str, ...],
         out_path: str) -> None:
    """Exit non-zero with a message naming the file, the field and the fix on the first bad input."""
    import importlib
    from pathlib import Path

    from pertprobe.errors import InputError
    from pertprobe.io import write_json
    from pertprobe.registry import get

    def exists(path: str, what: str) -> str:
        if not Path(path).is_file():
            raise InputError(path, "file", f"{what} not found", "check the path given to the pipeline")
        return path

    summary: dict[str, object] = {}
    if relationships:
        from pertprobe.cells.perturbation_map import read_relationships

        summary["known_relationships"] = {"file": relationships,
                                          "n_pairs": len(read_relationships(exists(relationships, "known relationships")))}
    if tables:
        from pertprobe.response.gene_embeddings import read_embedding

        summary["gene_embedding_tables"] = [{"file": t, "n_genes": len(read_embedding(exists(t, "gene-embedding table")))}
                                            for t in tables]
    if gene_id_map:
        from pertprobe.models.gene_ids import GeneIdMap

        GeneIdMap.from_table(exists(gene_id_map, "gene-id map"))
        summary["gene_id_map"] = {"file": gene_id_map}
    for item in side_inputs:
        model, sep, path = item.partition("=")
        entry = get("gene_embedding", model) if sep else None
        if entry is None or not entry.side_input:
            raise click.BadParameter(f"{item!r}: give MODEL=PATH for a model with a side input", param_hint="--side-input")
        reader = importlib.import_module(entry.func.__module__).read_side_input
        summary[entry.side_input] = {"file": path, "model": model,
                                     "n_records": len(reader(exists(path, entry.side_input.replace("_", " "))))}
    write_json(summary, out_path)
    click.echo(f"{out_path}: {len(summary)} side input(s) OK")


if __name__ == "__main__":
    main()
