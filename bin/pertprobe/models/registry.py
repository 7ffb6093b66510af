"""Which adapters exist and what they embed; modules are imported only when used."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import anndata as ad

    from ..dataset import DatasetSpec
    from .checkpoint import ModelEmbedding, RunOptions

CELL_MODELS = ("cellplm", "geneformer", "scgpt", "uce")
GENE_MODELS = ("esm2", "genept", "geneformer", "scgpt")


class UnknownModelOption(ValueError):
    """A --model-option the adapter does not accept."""


def adapter(model: str) -> ModuleType:
    """The adapter module of `model` (e.g. pertprobe.models.geneformer)."""
    if model not in set(CELL_MODELS) | set(GENE_MODELS):
        raise ValueError(f"unknown foundation model {model!r}")
    return importlib.import_module(f"{__package__}.{model}")


def input_counts(counts_h5ad: str | Path, spec: DatasetSpec, cells: Any) -> ad.AnnData:
    """Raw counts of every input gene for `cells` (the processed dataset's cells, in its order).

    Foundation models see the whole measured transcriptome, not PREPROCESS's gene selection.
    """
    from ..errors import InputError
    from ..preprocess import load_counts

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

    module = adapter(model)
    func = module.embed_cells if kind == "cells" else module.embed_genes
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
