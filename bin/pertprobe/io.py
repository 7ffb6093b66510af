"""Atomic, deterministic reading and writing of the pipeline's files."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import anndata as ad


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_h5ad(adata: ad.AnnData, path: str | os.PathLike) -> None:
    """Write an AnnData atomically (gzip-compressed)."""
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp, compression="gzip")


def write_table(df: pd.DataFrame, path: str | os.PathLike, metadata: dict[str, Any] | None = None) -> None:
    """Write a table atomically; `.parquet` keeps `metadata` in the file's key-value metadata."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(df, preserve_index=True)
            if metadata:
                merged = dict(table.schema.metadata or {})
                merged[b"pertprobe"] = json.dumps(metadata, sort_keys=True).encode()
                table = table.replace_schema_metadata(merged)
            pq.write_table(table, tmp)
        elif path.suffix in {".csv", ".tsv"}:
            df.to_csv(tmp, sep="," if path.suffix == ".csv" else "\t", index=True, float_format="%.10g")
        else:
            raise ValueError(f"{path}: unsupported table format (use .parquet, .csv or .tsv)")


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a table written by `write_table`."""
    path = Path(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, sep="," if path.suffix == ".csv" else "\t", index_col=0)


def read_table_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Return the pertprobe metadata stored in a parquet file (empty if none)."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(b"pertprobe")
    return json.loads(raw) if raw else {}


def write_json(obj: Any, path: str | os.PathLike) -> None:
    """Write JSON atomically with sorted keys (stable bytes)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_jsonable(obj), indent=2, sort_keys=True) + "\n")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def read_text_columns(path: str | os.PathLike, columns: tuple[str, ...]) -> pd.DataFrame:
    """A small CSV/TSV (by suffix) of text cells with at least `columns` (only those kept, stripped);
    an unreadable file or a missing column raises `InputError` naming the file and the header to give."""
    from .errors import InputError

    path = Path(path)
    header = ",".join(columns)
    try:
        table = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",", dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise InputError(path, "file", f"cannot be read ({err})", f"give a CSV/TSV with columns {header}") from err
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(path, ",".join(missing), f"column(s) missing (found {list(table.columns)})",
                         f"give a header line {header}")
    return table[list(columns)].apply(lambda col: col.str.strip())

