"""Registering foundation-model adapters and running them (cell embeddings or gene tables)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..data.dataset import GENETIC_TYPES
from ..registry import get, register

if TYPE_CHECKING:
    import anndata as ad

    from ..data.dataset import DatasetSpec
    from .checkpoint import ModelEmbedding, RunOptions

KIND = {"cells": "cell_embedder", "genes": "gene_embedding"}


F = TypeVar("F", bound=Callable[..., Any])


class UnknownModelOption(ValueError):
    """A --model-option the adapter does not accept."""


def foundation_model(role: str, name: str, source: str, description: str, **fields: Any) -> Callable[[F], F]:
    """Register an adapter's `embed_cells` (role 'cells') or `embed_genes` (role 'genes'): it reads
    --<name>_model, runs in containers/<name>/ and on an accelerator when one is given. Gene tables
    embed genes, so they are defined for genetic perturbations only."""
    if role == "genes":
        fields.setdefault("perturbation_types", GENETIC_TYPES)
    return register(KIND[role], name, checkpoint=True, container=name, gpu=True, docs=f"docs/models/{name}.md",
                    source=source, description=description, **fields)


def input_counts(counts_h5ad: str | Path, spec: DatasetSpec, cells: Any) -> ad.AnnData:
    """Raw counts of every input gene for `cells` (the processed dataset's cells, in its order).

    Foundation models see the whole measured transcriptome, not PREPROCESS's gene selection.
    """
    from ..data.preprocess import load_counts
    from ..errors import InputError

    raw = load_counts(counts_h5ad, spec)
    missing = [c for c in cells if c not in raw.obs_names]
    if missing:
        raise InputError(counts_h5ad, "obs_names", f"{len(missing)} processed cells are not in the input file "
                         f"(e.g. {missing[0]})", "pass the input .h5ad that PREPROCESS read for this dataset")
    return raw[list(cells)].copy()


def run(model: str, kind: str, genes: Any, checkpoint: str | Path, options: RunOptions, /,
        counts: Any = None, groups: Any = None, **model_options: Any) -> ModelEmbedding:
    """Call the adapter's embed_cells (kind 'cells') or embed_genes (kind 'genes').

    `groups` (one label per cell, the batch) reaches adapters whose cells attend to each other
    (CellPLM). Unknown `model_options` raise a ValueError naming the options the adapter accepts.
    """
    import inspect

    entry = get(KIND[kind], model)
    if not entry.checkpoint:
        raise ValueError(f"{model!r} is not a foundation model")
    func = entry.func
    params = inspect.signature(func).parameters
    accepted = [n for n, p in params.items()
                if (p.kind == p.KEYWORD_ONLY or p.default is not p.empty) and n not in ("counts", "groups")]
    unknown = sorted(set(model_options) - set(accepted))
    if unknown:
        raise UnknownModelOption(f"{model}: unknown model option(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}")
    if kind == "cells":
        if "groups" in params:
            model_options["groups"] = groups
        return func(counts, genes, Path(checkpoint), options, **model_options)
    if counts is not None and "counts" in inspect.signature(func).parameters:
        model_options["counts"] = counts
    return func(genes, Path(checkpoint), options, **model_options)
