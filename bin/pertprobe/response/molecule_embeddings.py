"""Perturbation embeddings of molecules: the siblings of the gene-embedding sources for drug datasets
(the multimodal benchmark's "pan-modal" perturbation embeddings; docs/metrics.md#molecule-embeddings).

Each source returns a table keyed by compound name (the gene-embedding table format), computed with
RDKit from the dataset's compound table (`data.compounds`); a combination `A+B` of compounds is the
sum of its compounds' vectors, as for genes. User-supplied tables from molecular foundation models
use the same format and plug in through --gene_embedding_tables.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..data.compounds import MORGAN_BITS, MORGAN_RADIUS, morgan_fingerprints, physchem_descriptors
from ..data.dataset import split_targets
from ..registry import register

DOCS = "docs/metrics.md#molecule-embeddings"
RDKIT = "RDKit (rdkit.org)"


def _needs_table(compounds: dict[str, str] | None, name: str) -> dict[str, str]:
    if not compounds:
        raise ValueError(f"{name} needs the dataset's compound table (samplesheet column compound_table)")
    return compounds


@register("gene_embedding", "morgan", docs=DOCS, profiles=("minimal", "paper", "full"), needs=("compound_table",),
          perturbation_types=("drug",), source=f"{RDKIT}, Morgan fingerprints (Rogers & Hahn 2010, ECFP4)",
          description=f"Morgan fingerprint of each compound: radius {MORGAN_RADIUS}, {MORGAN_BITS} bits")
def morgan(means: pd.DataFrame, targets: dict[str, list[str]], n_dims: int, seed: int,
           compounds: dict[str, str] | None = None, **_: Any) -> pd.DataFrame:
    """Compounds x bits (n_dims does not apply: a fingerprint has its own length)."""
    return morgan_fingerprints(_needs_table(compounds, "morgan"))


@register("gene_embedding", "rdkit_descriptors", docs=DOCS, profiles=("paper", "full"), needs=("compound_table",),
          perturbation_types=("drug",), source=f"{RDKIT}, Descriptors.CalcMolDescriptors",
          description="RDKit's physico-chemical 2D descriptors, standardised on the split's training compounds")
def rdkit_descriptors(means: pd.DataFrame, targets: dict[str, list[str]], n_dims: int, seed: int,
                      compounds: dict[str, str] | None = None, **_: Any) -> pd.DataFrame:
    """Compounds x descriptors, each centred and scaled by its mean and SD over the training
    compounds (`means` holds the training perturbations); descriptors constant there are dropped."""
    table = physchem_descriptors(_needs_table(compounds, "rdkit_descriptors"))
    trained = sorted({c for p in means.index for c in split_targets(p)} & set(table.index))
    centre, scale = table.loc[trained].mean(), table.loc[trained].std(ddof=0)
    keep = scale > 0
    return ((table.loc[:, keep] - centre[keep]) / scale[keep]).astype(np.float64)
