"""The input-dataset contract: what a samplesheet row declares about one `.h5ad`."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

PERTURBATION_TYPES = ("CRISPRi", "CRISPRa", "KO", "drug")
GENETIC_TYPES = ("CRISPRi", "CRISPRa", "KO")  # perturbations of a target gene
GENE_ID_TYPES = ("symbol", "ensembl")
ENSEMBL_RE = re.compile(r"^ENS[A-Z]*G\d{11}(\.\d+)?$")
COMBINATION_SEP = "+"
WHOLE_TRANSCRIPTOME_MIN_GENES = 200  # the usual scRNA-seq cell filter (scanpy's tutorials)
PANEL_MIN_GENES_FRACTION = 0.1  # ... capped at this share of the measured genes (targeted panels)


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
    dose_col: str | None = None  # drug: obs column of doses (numbers); checked, recorded (docs/tasks.md)
    layout: str = "pertprobe"  # the file's downloaded layout (data/layouts.py): pertprobe, gears, scperturb


def split_targets(perturbation: str) -> list[str]:
    """Target genes of a perturbation label (`A+B` is a combination of A and B)."""
    return [t for t in perturbation.split(COMBINATION_SEP) if t]


def gene_targets(perturbation: str, perturbation_type: str) -> list[str]:
    """The genes a perturbation label names as its targets: each part of `A+B` for genetic types, none
    for drugs (a compound is not a gene, even where its name is a gene symbol)."""
    return split_targets(perturbation) if perturbation_type in GENETIC_TYPES else []


def min_genes_per_cell(given: int | None, n_genes: int) -> tuple[int, str]:
    """The cell filter and the rule that chose it: `given`, or (None) at least 200 detected genes but
    never more than 10% of the measured genes, so a 300-gene targeted panel keeps cells with 30
    detected genes (docs/usage.md#qc)."""
    if given is not None:
        return given, "--min_genes_per_cell"
    auto = min(WHOLE_TRANSCRIPTOME_MIN_GENES, int(np.ceil(PANEL_MIN_GENES_FRACTION * n_genes)))
    return auto, f"auto: min({WHOLE_TRANSCRIPTOME_MIN_GENES}, {PANEL_MIN_GENES_FRACTION:.0%} of {n_genes} measured genes)"


def looks_like_ensembl(name: str) -> bool:
    """True for Ensembl gene identifiers such as ENSG00000141510 or ENSMUSG00000059552.2."""
    return bool(ENSEMBL_RE.match(name))
