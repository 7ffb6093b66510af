"""Aggregated perturbation profiles ("map") from aligned cell embeddings: replicate consistency
against a null of non-expressed-gene perturbations, and recall of known gene-gene relationships.

Definitions follow Celik et al. 2024 (EFAAR) and Bendidi et al. 2024; see docs/metrics.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..data.pseudobulk import group_means
from ..errors import InputError

RELATIONSHIP_COLUMNS = ("gene_a", "gene_b", "source")


def cosine_matrix(x: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
    """Cosine similarities between rows (a zero row has similarity 0 with everything)."""
    def unit(a: np.ndarray) -> np.ndarray:
        norm = np.linalg.norm(a, axis=1, keepdims=True)
        return np.divide(a, norm, out=np.zeros_like(a, dtype=np.float64), where=norm > 0)

    ux = unit(np.asarray(x, dtype=np.float64))
    uy = ux if y is None else unit(np.asarray(y, dtype=np.float64))
    return np.clip(ux @ uy.T, -1.0, 1.0)


def mean_pairwise_cosine(rows: np.ndarray) -> float:
    """Mean cosine over distinct pairs of rows; NaN with fewer than two rows."""
    if len(rows) < 2:
        return np.nan
    sim = cosine_matrix(rows)
    return float(sim[np.triu_indices(len(rows), k=1)].mean())


def replicate_labels(batch: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    """Replicate unit of each cell: its batch when there are several, else a seeded random half."""
    batch = np.asarray(batch).astype(str)
    if len(np.unique(batch)) > 1:
        return batch, "batch"
    halves = np.random.default_rng(seed).integers(0, 2, size=len(batch))
    return np.char.add("half", halves.astype(str)), "random_half"


def null_perturbations(detection: pd.Series, max_detection: float) -> list[str]:
    """Single-gene perturbations whose target is detected in at most `max_detection` of control cells."""
    return sorted(detection.index[detection <= max_detection])


def replicate_consistency(values: np.ndarray, perturbation: np.ndarray, replicate: np.ndarray,
                          is_control: np.ndarray, nulls: list[str], n_null: int, seed: int) -> pd.DataFrame:
    """Per perturbation: mean pairwise cosine between its replicate profiles (the mean of its cells
    in each replicate unit), with a p-value against a null of the same statistic over profiles of
    non-expressed-gene perturbations: one null perturbation drawn per replicate unit, all
    combinations when there are at most `n_null`, else `n_null` seeded draws.
    """
    perts = sorted(set(perturbation[~is_control]))
    profiles = {p: group_means(values[perturbation == p], replicate[perturbation == p])[0] for p in perts}
    table = pd.DataFrame({"perturbation": perts,
                          "consistency": [mean_pairwise_cosine(profiles[p].to_numpy()) for p in perts]})
    table["is_null"] = table["perturbation"].isin(nulls)
    units = sorted(set(replicate))
    null_sets = [np.array([profiles[p].loc[u].to_numpy() for p in nulls if p in profiles and u in profiles[p].index])
                 for u in units]
    sizes = [len(s) for s in null_sets]
    if len(units) < 2 or min(sizes) == 0:
        table["consistency_p_value"] = np.nan
        return table
    if np.prod(sizes, dtype=float) <= n_null:
        combos = np.array(np.meshgrid(*[np.arange(n) for n in sizes], indexing="ij")).reshape(len(units), -1).T
    else:
        rng = np.random.default_rng(seed)
        combos = np.column_stack([rng.integers(0, n, size=n_null) for n in sizes])
    null = np.sort([mean_pairwise_cosine(np.vstack([null_sets[j][i] for j, i in enumerate(combo)]))
                    for combo in combos])
    observed = table["consistency"].to_numpy()
    n_ge = len(null) - np.searchsorted(null, observed, side="left")
    table["consistency_p_value"] = np.where(np.isnan(observed), np.nan, (1 + n_ge) / (1 + len(null)))
    return table


def read_relationships(path: str | Path) -> pd.DataFrame:
    """Read a known-relationship TSV (columns gene_a, gene_b, source); pairs sorted, self-pairs and
    duplicates within a source dropped."""
    path = Path(path)
    try:
        table = pd.read_csv(path, sep="\t", dtype=str, comment="#")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise InputError(path, "file", f"cannot be read as TSV ({err})",
                         "give a tab-separated file with a header line gene_a<TAB>gene_b<TAB>source") from err
    missing = [c for c in RELATIONSHIP_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(path, ",".join(missing), f"column(s) missing (found {list(table.columns)})",
                         "add a header line gene_a<TAB>gene_b<TAB>source")
    table = table[list(RELATIONSHIP_COLUMNS)].dropna()
    pairs = np.sort(table[["gene_a", "gene_b"]].to_numpy(dtype=str), axis=1)
    table = pd.DataFrame({"gene_a": pairs[:, 0], "gene_b": pairs[:, 1], "source": table["source"].to_numpy()})
    table = table[table["gene_a"] != table["gene_b"]].drop_duplicates(ignore_index=True)
    if table.empty:
        raise InputError(path, "gene_a,gene_b", "no pair of two different genes", "list at least one gene pair")
    return table


def relationship_recall(profiles: pd.DataFrame, relationships: pd.DataFrame,
                        tail: float = 0.05) -> pd.DataFrame:
    """Recall of known pairs in the lower and upper `tail` of the all-pairs cosine distribution of
    perturbation profiles (index = gene). Random profiles give ≈ 2·tail. One row per source and 'all'."""
    genes = profiles.index
    sim = cosine_matrix(profiles.to_numpy())
    background = np.sort(sim[np.triu_indices(len(genes), k=1)])
    position = {g: i for i, g in enumerate(genes)}
    known = relationships[relationships["gene_a"].isin(position) & relationships["gene_b"].isin(position)]
    rows = []
    groups = [("all", known.drop_duplicates(["gene_a", "gene_b"]))] + list(known.groupby("source", sort=True))
    for source, pairs in groups:
        query = sim[pairs["gene_a"].map(position).to_numpy(dtype=int), pairs["gene_b"].map(position).to_numpy(dtype=int)]
        low = np.searchsorted(background, query, side="right") / len(background) <= tail
        high = np.searchsorted(background, query, side="left") / len(background) >= 1 - tail
        n = len(query)
        rows.append({"source": source, "n_pairs": n, "n_background_pairs": len(background),
                     "recall": float(np.mean(low | high)) if n else np.nan,
                     "recall_low": float(np.mean(low)) if n else np.nan,
                     "recall_high": float(np.mean(high)) if n else np.nan})
    return pd.DataFrame(rows)
