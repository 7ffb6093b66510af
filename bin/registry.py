#!/usr/bin/env python3
"""Write (or check) the registry files generated from the registered implementations: the JSON the
pipeline reads at start and the tables of docs/registry.md."""

import sys
from pathlib import Path

import click
from pertprobe.cli import command

ROOT = Path(__file__).resolve().parents[1]


@command("registry.py")
@click.option("--json", "json_path", default=str(ROOT / "assets" / "registry.json"), show_default=True,
              type=click.Path(dir_okay=False), help="Registry JSON read by the pipeline.")
@click.option("--docs", "docs_path", default=str(ROOT / "docs" / "registry.md"), show_default=True,
              type=click.Path(dir_okay=False), help="Generated documentation tables.")
@click.option("--schema", "schema_path", default=str(ROOT / "nextflow_schema.json"), show_default=True,
              type=click.Path(dir_okay=False, exists=True), help="Pipeline schema whose help texts list the choices.")
@click.option("--check", is_flag=True, help="Only compare: exit 1 naming each file that differs from the code.")
def main(json_path: str, docs_path: str, schema_path: str, check: bool) -> None:
    """Every predictor, gene-embedding source, cell embedder, metric, alignment and cell task, from the code."""
    from pertprobe.io import atomic_path
    from pertprobe.registry_docs import registry_json, registry_markdown, schema_with_choices

    stale = []
    generated = {Path(json_path): registry_json(), Path(docs_path): registry_markdown(),
                 Path(schema_path): schema_with_choices(Path(schema_path).read_text())}
    for path, text in generated.items():
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
            continue
        with atomic_path(path) as tmp:
            tmp.write_text(text)
        click.echo(f"{path}: written")
    if stale:
        click.echo(f"out of date with the registered implementations: {', '.join(stale)}. "
                   "Fix: run `make registry` (bin/registry.py) and commit the result", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
