"""Check an input `.h5ad` against the dataset contract without loading its matrix into memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from ..errors import InputError
from .dataset import GENE_ID_TYPES, PERTURBATION_TYPES, DatasetSpec, looks_like_ensembl, split_targets

_CHUNK = 5_000_000  # stored values checked per read


def _read_elem(group: h5py.Group) -> Any:
    try:
        from anndata.io import read_elem
    except ImportError:  # anndata < 0.11
        from anndata.experimental import read_elem
    return read_elem(group)


def _check_spec(path: str, spec: DatasetSpec) -> None:
    if spec.perturbation_type not in PERTURBATION_TYPES:
        raise InputError(path, "perturbation_type", f"unknown value {spec.perturbation_type!r}",
                         f"use one of {', '.join(PERTURBATION_TYPES)} in the samplesheet")
    if spec.gene_id_type not in GENE_ID_TYPES:
        raise InputError(path, "gene_id_type", f"unknown value {spec.gene_id_type!r}",
                         f"use one of {', '.join(GENE_ID_TYPES)} in the samplesheet")
    if spec.min_cells_per_perturbation < 2:
        raise InputError(path, "min_cells_per_perturbation", "must be at least 2", "raise the threshold")


def _check_obs_column(path: str, obs: pd.DataFrame, column: str, what: str) -> pd.Series:
    if column not in obs.columns:
        available = ", ".join(map(repr, obs.columns)) or "(none)"
        raise InputError(path, f"obs['{column}']", f"the {what} column is missing (obs has: {available})",
                         f"name the right column in the samplesheet's {what}_col")
    return obs[column]


def _check_counts(path: str, f: h5py.File, layer: str | None) -> dict[str, Any]:
    if layer is None:
        elem, field = f["X"], "X"
    else:
        layers = f.get("layers")
        if layers is None or layer not in layers:
            names = ", ".join(sorted(layers.keys())) if layers is not None else "(none)"
            raise InputError(path, f"layers['{layer}']", f"the counts layer is missing (layers: {names})",
                             "name an existing layer in the samplesheet's counts_layer, or leave it empty to use X")
        elem, field = layers[layer], f"layers['{layer}']"
    values = elem["data"] if isinstance(elem, h5py.Group) else elem
    if values.dtype.kind not in "iuf":
        raise InputError(path, field, f"counts must be numeric, found dtype {values.dtype}", "store raw counts")
    step = max(1, _CHUNK // max(1, int(np.prod(values.shape[1:]))))
    for start in range(0, values.shape[0], step):
        block = np.asarray(values[start:start + step])
        if values.dtype.kind == "f" and not np.all(np.isfinite(block)):
            raise InputError(path, field, "contains NaN or infinite values", "store raw integer UMI counts")
        if np.any(block < 0):
            raise InputError(path, field, "contains negative values, so it is not raw counts",
                             "point counts_layer at the raw-count layer")
        if values.dtype.kind == "f" and np.any(block != np.round(block)):
            raise InputError(path, field, "contains non-integer values; raw counts are required",
                             "point the samplesheet's counts_layer at raw UMI counts "
                             "(e.g. layers['counts']), not normalized or log-transformed data")
    return {"counts_field": field, "counts_dtype": str(values.dtype)}


def _check_gene_ids(path: str, var_names: pd.Index, spec: DatasetSpec) -> float:
    names = var_names.astype(str)
    frac_ens = float(np.mean([looks_like_ensembl(n) for n in names])) if len(names) else 0.0
    if spec.gene_id_type == "ensembl" and frac_ens < 0.5:
        raise InputError(path, "var_names", f"declared as Ensembl IDs but only {frac_ens:.0%} look like Ensembl "
                         f"(e.g. {', '.join(names[:3])})", "set gene_id_type to 'symbol' in the samplesheet, "
                         "or make var_names Ensembl gene IDs")
    if spec.gene_id_type == "symbol" and frac_ens > 0.5:
        raise InputError(path, "var_names", f"declared as gene symbols but {frac_ens:.0%} look like Ensembl IDs "
                         f"(e.g. {', '.join(names[:3])})", "set gene_id_type to 'ensembl' in the samplesheet")
    return frac_ens


def validate_dataset(path: str | Path, spec: DatasetSpec) -> dict[str, Any]:
    """Validate `path` against `spec`; return a summary, or raise `InputError` naming the fix."""
    path = str(path)
    _check_spec(path, spec)
    if not Path(path).is_file():
        raise InputError(path, "h5ad", "file not found", "check the path in the samplesheet")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise InputError(path, "h5ad", f"not a readable HDF5/AnnData file ({err})",
                         "write the dataset with anndata's write_h5ad") from err
    with f:
        for key in ("obs", "var", "X"):
            if key not in f:
                raise InputError(path, key, "missing from the file", "write the dataset with anndata's write_h5ad")
        obs = _read_elem(f["obs"])
        var = _read_elem(f["var"])

        dup = obs.index[obs.index.duplicated()]
        if len(dup):
            raise InputError(path, "obs_names", f"{len(dup)} duplicated cell names (e.g. {', '.join(map(str, dup[:3]))})",
                             "make them unique, e.g. adata.obs_names_make_unique(), before running")
        pert = _check_obs_column(path, obs, spec.perturbation_col, "perturbation").astype(str)
        if spec.batch_col:
            batch = _check_obs_column(path, obs, spec.batch_col, "batch")
            if batch.isna().any():
                raise InputError(path, f"obs['{spec.batch_col}']", "has missing values", "fill or drop those cells")
        if spec.gene_symbol_col and spec.gene_symbol_col not in var.columns:
            raise InputError(path, f"var['{spec.gene_symbol_col}']", "the gene-symbol column is missing "
                             f"(var has: {', '.join(map(repr, var.columns)) or '(none)'})",
                             "name the right column in the samplesheet's gene_symbol_col")

        counts = pert.value_counts()
        if spec.control_label not in counts.index:
            common = ", ".join(f"{k!r}" for k in counts.index[:5])
            raise InputError(path, f"obs['{spec.perturbation_col}']", f"no control cells labelled "
                             f"{spec.control_label!r} (most frequent labels: {common})",
                             "set control_label in the samplesheet to the label of the control cells")
        perts = counts.drop(spec.control_label)
        if perts.empty:
            raise InputError(path, f"obs['{spec.perturbation_col}']", "no perturbed cells (only controls)",
                             "include perturbed cells")
        small = perts[perts < spec.min_cells_per_perturbation]
        if len(small):
            listed = ", ".join(f"{k} ({v})" for k, v in small.sort_values().head(5).items())
            raise InputError(path, f"obs['{spec.perturbation_col}']",
                             f"{len(small)} perturbation(s) have fewer than {spec.min_cells_per_perturbation} cells: "
                             f"{listed}", "drop those cells, or lower --min_cells_per_perturbation")
        if counts[spec.control_label] < spec.min_cells_per_perturbation:
            raise InputError(path, f"obs['{spec.perturbation_col}']",
                             f"only {counts[spec.control_label]} control cells", "include more control cells")

        frac_ens = _check_gene_ids(path, var.index, spec)
        counts_info = _check_counts(path, f, spec.counts_layer)

    gene_names = set(var[spec.gene_symbol_col].astype(str)) if spec.gene_symbol_col else set(var.index.astype(str))
    targets = sorted({t for p in perts.index for t in split_targets(p)})
    missing_targets = [t for t in targets if t not in gene_names]
    return {
        "file": path,
        "n_cells": int(len(obs)),
        "n_genes": int(len(var)),
        "n_control_cells": int(counts[spec.control_label]),
        "n_perturbations": int(len(perts)),
        "n_combinations": int(sum(len(split_targets(p)) > 1 for p in perts.index)),
        "min_cells_per_perturbation": int(perts.min()),
        "n_targets": len(targets),
        "targets_not_measured": missing_targets,
        "fraction_ensembl_var_names": frac_ens,
        **counts_info,
    }
