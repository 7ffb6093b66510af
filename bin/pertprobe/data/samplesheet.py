"""The samplesheet, checked against `assets/schema_input.json` (nf-schema format) with jsonschema.

The schema is the one description of the samplesheet: its columns, types, enums and defaults, and
which columns become meta-map keys (`meta`). Users with nf-schema can validate against the same file.
"""

from __future__ import annotations

import csv
import difflib
import json
from pathlib import Path
from typing import Any

from ..errors import InputError


def _is_uri(path: str) -> bool:
    return "://" in path


def read_schema(schema_path: str | Path) -> dict[str, Any]:
    with open(schema_path) as fh:
        return json.load(fh)


def read_samplesheet(path: str | Path, schema_path: str | Path, source: str | None = None) -> list[dict[str, Any]]:
    """Validated rows as `{"meta": {...}, "h5ad": path, "label_map": path (when given)}`; `source` is
    where the user's samplesheet lives (named in messages; relative paths are resolved against its folder)."""
    from jsonschema import Draft202012Validator

    source = source or str(path)
    schema = read_schema(schema_path)
    item = schema["items"]
    columns = list(item["properties"])
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        unknown = [c for c in header if c not in item["properties"]]
        if unknown:
            close = difflib.get_close_matches(unknown[0], columns, n=1)
            hint = f"rename it to '{close[0]}'" if close else f"use only the columns {','.join(columns)}"
            raise InputError(f"{source} line 1", unknown[0], f"unknown column (header: {','.join(header)})",
                             f"{hint} (columns: docs/usage.md)")
        # nf-schema reads an empty cell as an absent value: the default applies.
        rows = [{k: v.strip() for k, v in row.items() if v is not None and v.strip()} for row in reader]
    if len(rows) < schema.get("minItems", 0):
        raise InputError(source, "dataset", "no datasets", "add one row per dataset")
    validator = Draft202012Validator(item)
    for line, row in enumerate(rows, start=2):
        errors = sorted(validator.iter_errors(row), key=lambda e: (list(e.path), e.message))
        if errors:
            raise _row_error(errors[0], row, item, f"{source} line {line}")
    for key in schema.get("uniqueEntries", []):
        seen: dict[str, int] = {}
        for line, row in enumerate(rows, start=2):
            if row[key] in seen:
                raise InputError(f"{source} line {line}", key, f"'{row[key]}' repeats line {seen[row[key]]}",
                                 f"give each row a unique {key}")
            seen[row[key]] = line
    base = Path(source).parent
    out = []
    for line, row in enumerate(rows, start=2):
        meta = {}
        for column in columns:
            prop = item["properties"][column]
            for key in prop.get("meta", []):
                meta[key] = row.get(column, prop.get("default", ""))
        entry: dict[str, Any] = {"meta": meta}
        for column in columns:  # file columns: resolved against the samplesheet's folder, checked
            prop = item["properties"][column]
            if prop.get("format") != "file-path" or column not in row:
                continue
            value = row[column]
            if not _is_uri(value):
                resolved = Path(value) if Path(value).is_absolute() else base / value
                if prop.get("exists") and not resolved.is_file():
                    raise InputError(f"{source} line {line}", column, f"'{value}': file {resolved} not found",
                                     "give a path relative to the samplesheet's folder, or an absolute one")
                value = str(resolved.resolve())
            entry[column] = value
        out.append(entry)
    return out


def _row_error(error: Any, row: dict[str, str], item: dict[str, Any], where: str) -> InputError:
    """One jsonschema error as an InputError naming the line, the field and the schema's fix."""
    if error.validator == "required":
        field = error.message.split("'")[1]
        return InputError(where, field, "empty or missing",
                          f"fill it in ({item['properties'][field].get('errorMessage', 'required')})")
    field = str(error.path[0]) if error.path else "?"
    prop = item["properties"].get(field, {})
    return InputError(where, field, f"'{row.get(field)}' is not valid ({error.message})",
                      f"use {prop.get('errorMessage', 'a valid value')}")
