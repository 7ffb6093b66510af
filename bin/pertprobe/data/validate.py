"""Check an input `.h5ad` against the dataset contract without loading its matrix into memory."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from ..errors import InputError
from .compounds import check_compounds, read_compound_table
from .dataset import (GENE_ID_TYPES, PERTURBATION_TYPES, DatasetSpec, gene_targets, looks_like_ensembl,
                      min_genes_per_cell, split_targets)
from .layouts import contract_labels

_CHUNK = 5_000_000  # stored values checked per read
MIN_FREE_GENES = 20  # genes besides the targets that must survive gene QC for there to be a readout
GUIDE_LIKE = re.compile(r"^(sg|guide)|_\d+$", re.IGNORECASE)
OTHER_COMBINATION_SEPARATORS = ("_", " + ", ";", "|", ",")


@dataclass(frozen=True)
class RunChecks:
    """Parameters of the run that must work with the dataset (checked before any heavy task; None:
    not checked, e.g. when only the file is validated)."""

    n_folds: int | None = None
    min_cells_per_gene: int | None = None
    min_genes_per_cell: int | str | None = None  # 'auto': chosen from the measured genes (dataset.min_genes_per_cell)
    max_unresolved_fraction: float = 0.2  # share of perturbations whose targets are not all measured


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


def _check_counts(path: str, f: h5py.File, layer: str | None,
                  shape: tuple[int, int]) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Check the counts are raw integer counts and count detections, in one chunked pass over the file."""
    if layer is None:
        elem, field = f["X"], "X"
    else:
        layers = f.get("layers")
        if layers is None or layer not in layers:
            names = ", ".join(sorted(layers.keys())) if layers is not None else "(none)"
            raise InputError(path, f"layers['{layer}']", f"the counts layer is missing (layers: {names})",
                             "name an existing layer in the samplesheet's counts_layer, or leave it empty to use X")
        elem, field = layers[layer], f"layers['{layer}']"
    dtype = (elem["data"] if isinstance(elem, h5py.Group) else elem).dtype
    if dtype.kind not in "iuf":
        raise InputError(path, field, f"counts must be numeric, found dtype {dtype}", "store raw counts")

    def check(block: np.ndarray) -> None:
        if dtype.kind == "f" and not np.all(np.isfinite(block)):
            raise InputError(path, field, "contains NaN or infinite values", "store raw integer UMI counts")
        if np.any(block < 0):
            raise InputError(path, field, "contains negative values, so it is not raw counts",
                             "point counts_layer at the raw-count layer")
        if dtype.kind == "f" and np.any(block != np.round(block)):
            raise InputError(path, field, "contains non-integer values; raw counts are required",
                             "point the samplesheet's counts_layer at raw UMI counts "
                             "(e.g. layers['counts']), not normalized or log-transformed data")

    cells_per_gene, genes_per_cell = _detection(elem, shape, check)
    return {"counts_field": field, "counts_dtype": str(dtype)}, cells_per_gene, genes_per_cell


def _detection(elem: h5py.Dataset | h5py.Group, shape: tuple[int, int],
               check: Callable[[np.ndarray], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cells in which each gene is detected and genes detected in each cell (count > 0), read in chunks;
    `check` sees every chunk of stored values first."""
    n_obs, n_vars = shape
    cells_per_gene = np.zeros(n_vars, dtype=np.int64)
    genes_per_cell = np.zeros(n_obs, dtype=np.int64)
    if isinstance(elem, h5py.Group):  # CSR (rows = cells) or CSC (rows = genes)
        csr = elem.attrs.get("encoding-type", "csr_matrix") == "csr_matrix"
        indptr = np.asarray(elem["indptr"])
        data, indices = elem["data"], elem["indices"]
        inner, outer = (cells_per_gene, genes_per_cell) if csr else (genes_per_cell, cells_per_gene)
        for start in range(0, data.shape[0], _CHUNK):
            stop = min(start + _CHUNK, data.shape[0])
            block = np.asarray(data[start:stop])
            if check:
                check(block)
            hit = block > 0
            inner += np.bincount(np.asarray(indices[start:stop])[hit], minlength=inner.size)
            rows = np.searchsorted(indptr, np.arange(start, stop)[hit], side="right") - 1
            outer += np.bincount(rows, minlength=outer.size)
    else:
        step = max(1, _CHUNK // max(1, n_vars))
        for start in range(0, n_obs, step):
            block = np.asarray(elem[start:start + step])
            if check:
                check(block)
            hit = block > 0
            cells_per_gene += hit.sum(axis=0)
            genes_per_cell[start:start + step] = hit.sum(axis=1)
    return cells_per_gene, genes_per_cell


def _unresolved_fix(labels: list[str], var_looks_ensembl: bool, spec: DatasetSpec) -> str:
    """The most likely reason why perturbation labels do not name measured genes, as a fix."""
    if var_looks_ensembl and not spec.gene_symbol_col:
        return ("var_names are Ensembl IDs and the labels are not: set gene_symbol_col in the samplesheet to the "
                "var column holding gene symbols")
    if any(GUIDE_LIKE.search(lab) for lab in labels):
        return ("the labels look like guide names: give the samplesheet's label_map (a CSV label,target), or "
                "relabel each cell with its target gene")
    return ("label each perturbation by its target gene as named in the dataset (var_names or gene_symbol_col), "
            "or raise --max_unresolved_fraction if these perturbations have no measured target")


def _check_run(path: str, spec: DatasetSpec, checks: RunChecks, perts: pd.Series, unresolved: list[str],
               gene_names: set[str], var_looks_ensembl: bool, target_columns: np.ndarray,
               cells_per_gene: np.ndarray, genes_per_cell: np.ndarray, is_control: np.ndarray) -> None:
    """Stop combinations of parameters and data that cannot give a meaningful run."""
    for sep in OTHER_COMBINATION_SEPARATORS:  # A_B would silently run as one unknown perturbation
        wrong = [lab for lab in unresolved if sep in lab and all(p.strip() in gene_names for p in lab.split(sep))]
        if wrong:
            raise InputError(path, f"obs['{spec.perturbation_col}']", f"{len(wrong)} labels look like combinations "
                             f"written with {sep!r} (e.g. {wrong[0]!r})", f"write combinations as A+B "
                             f"(e.g. {'+'.join(p.strip() for p in wrong[0].split(sep))!r})")
    if len(unresolved) > checks.max_unresolved_fraction * len(perts):
        raise InputError(path, f"obs['{spec.perturbation_col}']",
                         f"{len(unresolved)} of {len(perts)} perturbations do not name measured genes "
                         f"(e.g. {', '.join(map(repr, unresolved[:4]))}), above --max_unresolved_fraction "
                         f"{checks.max_unresolved_fraction}", _unresolved_fix(unresolved, var_looks_ensembl,
                                                                              spec))
    if checks.n_folds is not None and checks.n_folds > len(perts):
        raise InputError(path, "n_folds", f"{checks.n_folds} folds but only {len(perts)} perturbations",
                         f"use --n_folds {len(perts)} or fewer")
    free = cells_per_gene[~target_columns]
    passing = int((free >= (checks.min_cells_per_gene or 0)).sum())
    if checks.min_cells_per_gene is not None and passing < min(MIN_FREE_GENES, free.size):
        enough = int(np.sort(free)[::-1][min(MIN_FREE_GENES, free.size) - 1]) if free.size else 0
        raise InputError(path, "min_cells_per_gene", f"only {passing} genes besides the targets are detected in at "
                         f"least {checks.min_cells_per_gene} cells", f"use --min_cells_per_gene {enough} or lower")
    min_genes = (min_genes_per_cell(None, len(cells_per_gene))[0]
                 if checks.min_genes_per_cell == "auto" else checks.min_genes_per_cell)
    kept_controls = int((genes_per_cell[is_control] >= (min_genes or 0)).sum())
    if min_genes is not None and kept_controls < spec.min_cells_per_perturbation:
        enough = int(np.sort(genes_per_cell[is_control])[::-1][min(spec.min_cells_per_perturbation, is_control.sum()) - 1])
        raise InputError(path, "min_genes_per_cell", f"only {kept_controls} control cells have at least "
                         f"{min_genes} detected genes", f"use --min_genes_per_cell {enough} or lower")


def _check_doses(path: str, obs: pd.DataFrame, spec: DatasetSpec, labels: pd.Series) -> None:
    """The dose column holds non-negative numbers for every perturbed cell (controls may be empty)."""
    column = _check_obs_column(path, obs, spec.dose_col, "dose")
    values = pd.to_numeric(column.astype(str).str.strip().replace({"": "nan"}), errors="coerce")
    perturbed = (labels != spec.control_label).to_numpy()
    bad = perturbed & ~np.isfinite(values.to_numpy(dtype=np.float64))
    if bad.any():
        example = column[bad].astype(str).iloc[0]
        raise InputError(path, f"obs['{spec.dose_col}']", f"{int(bad.sum())} perturbed cells have a dose that is not a "
                         f"number (e.g. {example!r})", "store doses as numbers in one unit (e.g. µM), the unit in "
                         "the column name or the docs")
    if (values[perturbed] < 0).any():
        raise InputError(path, f"obs['{spec.dose_col}']", "negative doses", "store doses as non-negative numbers")


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


def validate_dataset(path: str | Path, spec: DatasetSpec, checks: RunChecks | None = None,
                     compound_table: str | Path | None = None) -> dict[str, Any]:
    """Validate `path` against `spec` (and the run's parameters, `checks`, and a drug dataset's
    `compound_table`); return a summary, or raise `InputError` naming the file, the field and the fix."""
    checks = checks or RunChecks()
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
        try:
            obs = _read_elem(f["obs"])
            var = _read_elem(f["var"])
        except (KeyError, OSError, ValueError, TypeError) as err:
            raise InputError(path, "obs/var", f"cannot be read as AnnData ({type(err).__name__}: {err})",
                             "the file is damaged or not written by anndata: write it again with write_h5ad") from err

        dup = obs.index[obs.index.duplicated()]
        if len(dup):
            raise InputError(path, "obs_names", f"{len(dup)} duplicated cell names (e.g. {', '.join(map(str, dup[:3]))})",
                             "make them unique, e.g. adata.obs_names_make_unique(), before running")
        if len(var) == 0:
            raise InputError(path, "var", "the file has no genes", "write the expression matrix with its genes")
        dup = var.index[var.index.duplicated()]
        if len(dup):
            raise InputError(path, "var_names", f"{len(dup)} duplicated gene names (e.g. {', '.join(map(str, dup[:3]))})",
                             "make them unique (adata.var_names_make_unique()) or key genes by Ensembl ID")
        raw_labels = _check_obs_column(path, obs, spec.perturbation_col, "perturbation")
        empty = raw_labels.isna().to_numpy() | (raw_labels.astype(str).str.strip() == "").to_numpy()
        if empty.any():
            raise InputError(path, f"obs['{spec.perturbation_col}']", f"{int(empty.sum())} cells have no perturbation "
                             "label (NaN or empty)", "label them (the control label for controls) or drop them")
        pert = pd.Series(contract_labels(obs, spec, path), index=obs.index)
        if spec.batch_col:
            batch = _check_obs_column(path, obs, spec.batch_col, "batch")
            if batch.isna().any():
                raise InputError(path, f"obs['{spec.batch_col}']", "has missing values", "fill or drop those cells")
        if spec.dose_col:
            _check_doses(path, obs, spec, pert)
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
        counts_info, cells_per_gene, genes_per_cell = _check_counts(path, f, spec.counts_layer, (len(obs), len(var)))

    names = var[spec.gene_symbol_col].astype(str) if spec.gene_symbol_col else var.index.astype(str)
    gene_names = set(names)
    targets = sorted({t for p in perts.index for t in gene_targets(p, spec.perturbation_type)})
    missing_targets = [t for t in targets if t not in gene_names]
    unresolved = sorted(p for p in perts.index
                        if not all(t in gene_names for t in gene_targets(p, spec.perturbation_type)))
    if compound_table is not None:
        check_compounds(list(perts.index), read_compound_table(compound_table), compound_table)
    _check_run(path, spec, checks, perts, unresolved, gene_names, frac_ens > 0.5, np.isin(names, targets),
               cells_per_gene, genes_per_cell, (pert == spec.control_label).to_numpy())
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
        "unresolved_perturbations": unresolved,
        "fraction_ensembl_var_names": frac_ens,
        **counts_info,
    }
