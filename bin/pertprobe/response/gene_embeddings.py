"""Gene (perturbation) embeddings: data-derived PCA, random, and external tables.

File format (any source): a table with one row per gene and numeric columns, keyed by gene name
(symbol or Ensembl ID as in the dataset) — `.parquet` (index = gene), or `.csv`/`.tsv` whose first
column is the gene. Foundation-model gene embeddings plug in by writing this format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data.dataset import GENETIC_TYPES, split_targets
from ..errors import InputError
from ..io import read_table, read_table_metadata, write_table
from ..registry import register

DOCS = "docs/metrics.md#gene-embeddings-pertproberesponsegene_embeddings-embed_genes"


def data_pca(train_means: pd.DataFrame, targets: dict[str, list[str]], n_components: int = 10,
             seed: int = 0) -> pd.DataFrame:
    """Genes x k PCA scores of the training pseudobulk (genes as rows, centred per gene).

    Fitted on the training perturbations passed in, and nothing else: the split-aware gene
    embedding of the linear model of Ahlmann-Eltze, Huber & Anders. Each training perturbation's
    own target entries (its direct knockdown/activation) are replaced by that gene's mean over
    the other training perturbations first, so a gene's embedding reflects co-regulation rather
    than whether it happened to be perturbed in training.
    """
    from sklearn.decomposition import PCA

    Y = train_means.to_numpy(dtype=np.float64).T.copy()  # genes x perturbations
    col = {g: i for i, g in enumerate(train_means.columns)}
    direct = np.zeros(Y.shape, dtype=bool)
    for j, pert in enumerate(train_means.index):
        for gene in targets.get(pert, []):
            direct[col[gene], j] = True
    with np.errstate(invalid="ignore"):
        others = np.nanmean(np.where(direct, np.nan, Y), axis=1, keepdims=True)
    Y = np.where(direct, np.nan_to_num(others), Y)
    Y = Y - Y.mean(axis=1, keepdims=True)
    k = max(1, min(n_components, Y.shape[0] - 1, Y.shape[1] - 1))
    scores = PCA(n_components=k, svd_solver="full", random_state=seed).fit_transform(Y)
    return pd.DataFrame(scores, index=train_means.columns, columns=[f"pc{i}" for i in range(k)])


@register("gene_embedding", "data_pca", docs=DOCS, profiles=("minimal", "paper", "full"), needs=("training_pseudobulk",),
          perturbation_types=GENETIC_TYPES,
          source="Ahlmann-Eltze, Huber & Anders 2025",
          description="PCA of the split's training pseudobulk, genes as rows (fitted on training perturbations)")
def data_pca_source(means: pd.DataFrame, targets: dict[str, list[str]], n_dims: int, seed: int,
                    **_: Any) -> pd.DataFrame:
    """`data_pca` of the training perturbations' pseudobulk `means`."""
    return data_pca(means, targets, n_dims, seed)


@register("gene_embedding", "random", docs=DOCS, floor=True, profiles=("minimal", "paper", "full"),
          source="floor", description="seeded standard-normal vectors (the floor an embedding must beat)")
def random_source(means: pd.DataFrame, targets: dict[str, list[str]], n_dims: int, seed: int,
                  **_: Any) -> pd.DataFrame:
    """`random_embedding` of the measured genes, then of every other name a perturbation label is made
    of (a compound, an unmeasured target): every perturbation has a random vector (the gene rows are
    the same draws as without the others)."""
    genes = list(means.columns)
    others = sorted({t for p in targets for t in split_targets(p)} - set(genes))
    return random_embedding(pd.Index(genes + others), n_dims, seed)


def random_embedding(genes: pd.Index, dim: int = 10, seed: int = 0) -> pd.DataFrame:
    """A seeded standard-normal embedding: the floor every informative embedding must beat."""
    values = np.random.default_rng(seed).standard_normal((len(genes), dim))
    return pd.DataFrame(values, index=pd.Index(genes), columns=[f"dim{i}" for i in range(dim)])


def read_embedding(path: str | Path) -> pd.DataFrame:
    """Read a gene-embedding table; bad tables raise `InputError` naming the file and the fix."""
    path = Path(path)
    if path.suffix not in {".parquet", ".csv", ".tsv"}:
        raise InputError(path, "file", "unsupported gene-embedding format", "use .parquet, .csv or .tsv")
    try:
        table = read_table(path)
    except Exception as err:  # noqa: BLE001 - report any parse failure with the file name
        raise InputError(path, "file", f"cannot be read ({err})", "write a table of gene -> numeric vector") from err
    table.index = table.index.astype(str)
    non_numeric = [c for c in table.columns if not pd.api.types.is_numeric_dtype(table[c])]
    if non_numeric:
        raise InputError(path, f"column '{non_numeric[0]}'", "is not numeric",
                         "keep the gene name as the first column (or index) and only numeric dimensions after it")
    dup = table.index[table.index.duplicated()]
    if len(dup):
        raise InputError(path, "gene", f"duplicated genes (e.g. {', '.join(dup[:3])})", "keep one row per gene")
    if table.empty or not np.isfinite(table.to_numpy(dtype=np.float64)).all():
        raise InputError(path, "values", "empty or non-finite", "remove rows with NaN/inf")
    return table.astype(np.float64)


def write_embedding(table: pd.DataFrame, path: str | Path, metadata: dict[str, Any]) -> None:
    write_table(table.rename_axis("gene"), path, metadata=metadata)


def embedding_metadata(path: str | Path) -> dict[str, Any]:
    return read_table_metadata(path) if Path(path).suffix == ".parquet" else {}


def perturbation_vectors(perturbations: list[str], table: pd.DataFrame,
                         targets: dict[str, list[str]]) -> tuple[np.ndarray, np.ndarray]:
    """Embedding of each perturbation (sum over its targets) and a mask of those that have one.

    A target is looked up by its label in the perturbation name, then by its measured gene name;
    a combination has an embedding only if every target has one.
    """
    out = np.zeros((len(perturbations), table.shape[1]))
    found = np.zeros(len(perturbations), dtype=bool)
    index = set(table.index)
    for row, pert in enumerate(perturbations):
        labels = split_targets(pert)
        measured = targets.get(pert, [])
        names = [lab if lab in index else (measured[i] if len(measured) == len(labels) else None)
                 for i, lab in enumerate(labels)]
        if labels and all(n is not None and n in index for n in names):
            out[row] = table.loc[names].to_numpy().sum(axis=0)
            found[row] = True
    return out, found
