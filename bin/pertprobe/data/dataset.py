"""The input-dataset contract: what a samplesheet row declares about one `.h5ad`."""

from __future__ import annotations

import re
from dataclasses import dataclass

PERTURBATION_TYPES = ("CRISPRi", "CRISPRa", "KO", "drug")
GENE_ID_TYPES = ("symbol", "ensembl")
ENSEMBL_RE = re.compile(r"^ENS[A-Z]*G\d{11}(\.\d+)?$")
COMBINATION_SEP = "+"


@dataclass(frozen=True)
class DatasetSpec:
    """Columns and conventions of one input dataset (one samplesheet row)."""

    perturbation_col: str = "perturbation"
    control_label: str = "control"
    batch_col: str | None = None
    counts_layer: str | None = None
    perturbation_type: str = "CRISPRi"
    gene_id_type: str = "symbol"
    gene_symbol_col: str | None = None
    min_cells_per_perturbation: int = 10


def split_targets(perturbation: str) -> list[str]:
    """Target genes of a perturbation label (`A+B` is a combination of A and B)."""
    return [t for t in perturbation.split(COMBINATION_SEP) if t]


def looks_like_ensembl(name: str) -> bool:
    """True for Ensembl gene identifiers such as ENSG00000141510 or ENSMUSG00000059552.2."""
    return bool(ENSEMBL_RE.match(name))
