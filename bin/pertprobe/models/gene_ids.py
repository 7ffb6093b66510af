"""Gene identifiers (symbol <-> Ensembl) and how much of a dataset a model's vocabulary covers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.dataset import looks_like_ensembl
from ..errors import InputError


def strip_version(gene_id: str) -> str:
    """ENSG00000141510.17 -> ENSG00000141510 (model dictionaries use unversioned IDs)."""
    return gene_id.split(".", 1)[0] if looks_like_ensembl(gene_id) else gene_id


@dataclass(frozen=True)
class GeneIdMap:
    """Symbol -> Ensembl ID pairs; the first pair seen wins for a repeated symbol or ID."""

    symbol_to_ensembl: Mapping[str, str]

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> GeneIdMap:
        out: dict[str, str] = {}
        for symbol, ensembl in pairs:
            out.setdefault(str(symbol), strip_version(str(ensembl)))
        return cls(out)

    @classmethod
    def from_table(cls, path: str | Path) -> GeneIdMap:
        """Read a CSV/TSV with columns `symbol` and `ensembl`."""
        path = Path(path)
        try:
            table = pd.read_csv(path, sep=None, engine="python", dtype=str)
        except Exception as err:  # noqa: BLE001 - report any parse failure with the file name
            raise InputError(path, "file", f"cannot be read ({err})", "write a CSV/TSV with columns symbol, ensembl") from err
        missing = [c for c in ("symbol", "ensembl") if c not in table.columns]
        if missing:
            raise InputError(path, f"column '{missing[0]}'", "is missing",
                             "give the gene-identifier map the header `symbol,ensembl` (one gene per row)")
        table = table.dropna(subset=["symbol", "ensembl"])
        return cls.from_pairs(zip(table["symbol"], table["ensembl"], strict=True))

    def merged(self, other: GeneIdMap | None) -> GeneIdMap:
        """This map with `other`'s pairs added where this one has none."""
        return self if other is None else GeneIdMap({**other.symbol_to_ensembl, **self.symbol_to_ensembl})

    def ensembl_to_symbol(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for symbol, ensembl in self.symbol_to_ensembl.items():
            out.setdefault(ensembl, symbol)
        return out


def dataset_gene_ids(var: pd.DataFrame, gene_id_type: str, id_map: GeneIdMap | None = None) -> pd.DataFrame:
    """Symbol and Ensembl ID of each dataset gene (index = var_names; '' where unknown).

    var_names are symbols or Ensembl IDs (`gene_id_type`); a `gene_symbol` column (from the
    samplesheet's gene_symbol_col) gives symbols for Ensembl-keyed data; `id_map` fills the rest.
    """
    names = var.index.astype(str)
    if gene_id_type == "ensembl":
        ensembl = pd.Series([strip_version(n) for n in names], index=names)
        symbol = (var["gene_symbol"].astype(str).set_axis(names) if "gene_symbol" in var.columns
                  else pd.Series("", index=names))
    else:
        symbol = pd.Series(np.asarray(names), index=names)
        ensembl = pd.Series("", index=names)
    genes = pd.DataFrame({"symbol": symbol.to_numpy(), "ensembl": ensembl.to_numpy()}, index=names)
    return fill_missing(genes, id_map) if id_map is not None else genes


def fill_missing(genes: pd.DataFrame, id_map: GeneIdMap) -> pd.DataFrame:
    """A copy of `genes` (columns symbol, ensembl) with empty entries filled from `id_map`."""
    to_symbol = id_map.ensembl_to_symbol()
    out = genes.copy()
    out["ensembl"] = out["ensembl"].where(out["ensembl"] != "", out["symbol"].map(id_map.symbol_to_ensembl).fillna(""))
    out["symbol"] = out["symbol"].where(out["symbol"] != "", out["ensembl"].map(to_symbol).fillna(""))
    return out


@dataclass(frozen=True)
class Coverage:
    """How many of the dataset's genes a model has a token / embedding for."""

    model: str
    n_genes: int
    n_covered: int

    @property
    def fraction(self) -> float:
        return self.n_covered / self.n_genes if self.n_genes else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {"n_genes": self.n_genes, "n_covered": self.n_covered, "fraction": round(self.fraction, 6)}


def check_coverage(model: str, covered: np.ndarray, min_coverage: float, where: str | Path) -> Coverage:
    """Coverage from a boolean mask over the dataset's genes; too little raises `InputError`."""
    coverage = Coverage(model, int(covered.size), int(np.count_nonzero(covered)))
    if coverage.fraction < min_coverage:
        raise InputError(where, f"{model} vocabulary",
                         f"covers {coverage.n_covered}/{coverage.n_genes} ({coverage.fraction:.1%}) of the dataset's "
                         f"genes, below the minimum {min_coverage:.0%}",
                         "check the samplesheet's gene_id_type / gene_symbol_col, or pass --gene-id-map with "
                         "symbol,ensembl pairs for this species; lower --min-gene-coverage only on purpose")
    return coverage


def lookup(genes: pd.DataFrame, vocabulary: Mapping[str, int], key: str) -> np.ndarray:
    """Token id of each dataset gene by its `key` column ('symbol' or 'ensembl'); -1 when absent."""
    return np.array([vocabulary.get(k, -1) if k else -1 for k in genes[key].to_numpy()], dtype=np.int64)


def target_gene_ids(perturbations: Iterable[str], control_label: str, genes: pd.DataFrame,
                    id_map: GeneIdMap | None = None) -> pd.DataFrame:
    """Symbol and Ensembl ID of every perturbation target, indexed by the target's label.

    `genes` are the dataset's measured genes (`dataset_gene_ids`); a label that names a measured
    gene (by var name or symbol) takes its identifiers, any other label is read as an Ensembl ID
    when it looks like one and as a symbol otherwise. The index matches how gene-embedding tables
    are looked up (target label first, see `gene_embeddings.perturbation_vectors`).
    """
    from ..data.dataset import split_targets

    by_symbol = {s: n for n, s in zip(genes.index, genes["symbol"], strict=True) if s}
    labels = sorted({t for p in perturbations if p != control_label for t in split_targets(p)})
    rows = []
    for label in labels:
        name = label if label in genes.index else by_symbol.get(label)
        if name is not None:
            rows.append(genes.loc[name].to_dict())
        elif looks_like_ensembl(label):
            rows.append({"symbol": "", "ensembl": strip_version(label)})
        else:
            rows.append({"symbol": label, "ensembl": ""})
    out = pd.DataFrame(rows, index=pd.Index(labels, dtype=object), columns=["symbol", "ensembl"])
    return fill_missing(out, id_map) if id_map is not None else out
