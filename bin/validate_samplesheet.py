#!/usr/bin/env python3
"""Check the samplesheet against assets/schema_input.json and write its rows as meta maps."""

import click
from pertprobe.cli import command


@command("validate_samplesheet.py", packages=["jsonschema"])
@click.option("--samplesheet", "samplesheet_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Samplesheet CSV, one row per dataset.")
@click.option("--schema", "schema_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="assets/schema_input.json (nf-schema format).")
@click.option("--source", default=None,
              help="Where the user's samplesheet lives: named in messages, base of relative h5ad paths.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="JSON list of {meta, h5ad}, one entry per row.")
def main(samplesheet_path: str, schema_path: str, source: str | None, out_path: str) -> None:
    """Exit non-zero with a message naming the line, the field and the fix on a bad row."""
    from pertprobe.data.samplesheet import read_samplesheet
    from pertprobe.io import write_json

    rows = read_samplesheet(samplesheet_path, schema_path, source)
    write_json(rows, out_path)
    click.echo(f"{source or samplesheet_path}: OK ({len(rows)} dataset(s): {', '.join(r['meta']['id'] for r in rows)})")


if __name__ == "__main__":
    main()
