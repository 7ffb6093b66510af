"""Preprocessing: QC, normalization, gene selection, pseudobulk, DE genes and splits."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .dataset import DatasetSpec, gene_targets, min_genes_per_cell, split_targets
from .de import DEConfig, de_counts, de_statistics, de_table, rest_weights, top_de_genes
from .layouts import contract_labels
from .pseudobulk import Pseudobulk, group_means
from .tasks import TaskConfig, make_splits

if TYPE_CHECKING:
    import anndata as ad

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreprocessConfig:
    """Parameters of PREPROCESS (defaults follow DESIGN.md)."""

    min_genes_per_cell: int | None = None  # None: chosen from the measured genes (dataset.min_genes_per_cell)
    min_cells_per_gene: int = 3
    target_sum: float = 1e4
    n_hvg: int = 2000
    n_de_genes: int = 20
    de_alpha: float = 0.05
    de_min_fraction: float = 0.1
    de_pseudocount: float = 1.0
    n_folds: int = 5
    seeds: tuple[int, ...] = (0,)
    tasks: tuple[str, ...] = field(default_factory=lambda: tuple(_all_tasks()))
    combination_unseen_singles: float = 0.0

    @property
    def task(self) -> TaskConfig:
        """The settings of the tasks' splits."""
        return TaskConfig(n_folds=self.n_folds, seeds=self.seeds,
                          combination_unseen_singles=self.combination_unseen_singles)

    @property
    def de(self) -> DEConfig:
        """The DE-gene settings."""
        return DEConfig(n_genes=self.n_de_genes, alpha=self.de_alpha, min_fraction=self.de_min_fraction,
                        pseudocount=self.de_pseudocount)


def _all_tasks() -> list[str]:
    from ..registry import names

    return names("task")


def load_counts(path: str | Path, spec: DatasetSpec) -> ad.AnnData:
    """Read a validated input file with raw counts in X (float32 CSR) and standard obs columns."""
    import anndata as ad

    adata = ad.read_h5ad(path)
    counts = adata.layers[spec.counts_layer] if spec.counts_layer else adata.X
    counts = sp.csr_matrix(counts, dtype=np.float32)
    obs = pd.DataFrame(index=adata.obs_names.astype(str))
    obs["perturbation"] = contract_labels(adata.obs, spec, str(path))
    obs["is_control"] = obs["perturbation"] == spec.control_label
    obs["batch"] = adata.obs[spec.batch_col].astype(str).to_numpy() if spec.batch_col else "all"
    out = ad.AnnData(X=counts, obs=obs, var=input_var(adata, spec))
    out.uns["pertprobe"] = {k: ("" if v is None else v) for k, v in asdict(spec).items()}
    return out


def input_var(adata: ad.AnnData, spec: DatasetSpec) -> pd.DataFrame:
    """Gene table of an input file: var_names, plus `gene_symbol` from the samplesheet's gene_symbol_col."""
    var = pd.DataFrame(index=adata.var_names.astype(str))
    if spec.gene_symbol_col:
        var["gene_symbol"] = adata.var[spec.gene_symbol_col].astype(str).to_numpy()
    return var


def target_map(perturbations: list[str], var: pd.DataFrame, control_label: str,
               perturbation_type: str) -> dict[str, list[str]]:
    """Map each perturbation to the var_names of its measured target genes (symbols resolved via var;
    none for drugs, `gene_targets`)."""
    lookup = {name: name for name in var.index}
    if "gene_symbol" in var.columns:
        lookup.update({sym: name for name, sym in zip(var.index, var["gene_symbol"], strict=True)})
    return {p: [lookup[t] for t in gene_targets(p, perturbation_type) if t in lookup]
            for p in perturbations if p != control_label}


def quality_control(adata: ad.AnnData, min_genes_per_cell: int, min_cells_per_gene: int,
                    keep_genes: set[str]) -> ad.AnnData:
    """Drop cells with too few detected genes and genes detected in too few cells (targets kept)."""
    detected_per_cell = np.diff(adata.X.indptr)
    adata = adata[detected_per_cell >= min_genes_per_cell].copy()
    detected_per_gene = np.bincount(adata.X.indices, minlength=adata.n_vars)
    keep = (detected_per_gene >= min_cells_per_gene) | adata.var_names.isin(list(keep_genes))
    return adata[:, keep].copy()


def normalize(adata: ad.AnnData, target_sum: float) -> None:
    """normalize_total + log1p into X, raw counts kept in layers['counts'] (in place)."""
    import scanpy as sc

    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=target_sum)
    sc.pp.log1p(adata)


def select_genes(adata: ad.AnnData, n_hvg: int, extra: set[str]) -> np.ndarray:
    """Boolean mask: highly variable genes (scanpy 'seurat' flavor) united with `extra` genes."""
    import scanpy as sc

    if n_hvg >= adata.n_vars:
        hvg = np.ones(adata.n_vars, dtype=bool)
    else:
        result = sc.pp.highly_variable_genes(adata, n_top_genes=n_hvg, flavor="seurat", inplace=False)
        hvg = result["highly_variable"].to_numpy()
    adata.var["highly_variable"] = hvg
    return hvg | adata.var_names.isin(list(extra))


@dataclass
class Preprocessed:
    """Everything PREPROCESS writes."""

    adata: ad.AnnData
    pseudobulk: Pseudobulk
    pseudobulk_by_batch: pd.DataFrame
    de: pd.DataFrame  # long DE table over the selected genes (`de_table`)
    splits: pd.DataFrame
    summary: dict[str, Any]
    resolution: pd.DataFrame  # each perturbation label, its targets and the measured genes they resolve to
    de_counts: pd.DataFrame  # per perturbation: cells, genes tested, significant genes, DE genes used


def label_resolution(perturbations: list[str], targets: dict[str, list[str]], perturbation_type: str) -> pd.DataFrame:
    """One row per perturbation: its target labels, the measured genes they resolve to, and whether
    every target gene (`gene_targets`: none for drugs) resolved (an unresolved perturbation is predicted
    and scored without its targets)."""
    rows = [{"perturbation": p, "targets": "+".join(split_targets(p)), "measured_genes": ";".join(targets.get(p, [])),
             "resolved": len(targets.get(p, [])) == len(gene_targets(p, perturbation_type))} for p in perturbations]
    return pd.DataFrame(rows, columns=["perturbation", "targets", "measured_genes", "resolved"])


def preprocess(raw: ad.AnnData, spec: DatasetSpec, config: PreprocessConfig) -> Preprocessed:
    """Run the whole preprocessing of one dataset."""
    n_cells_in, n_genes_in = raw.n_obs, raw.n_vars
    LOG.info("preprocess: %d cells x %d genes; QC", n_cells_in, n_genes_in)
    targets = target_map(sorted(raw.obs["perturbation"].unique()), raw.var, spec.control_label, spec.perturbation_type)
    target_genes = {g for genes in targets.values() for g in genes}
    min_genes, min_genes_rule = min_genes_per_cell(config.min_genes_per_cell, n_genes_in)
    adata = quality_control(raw, min_genes, config.min_cells_per_gene, target_genes)

    counts = adata.obs["perturbation"].value_counts()
    too_small = sorted(p for p, n in counts.items() if p != spec.control_label and n < spec.min_cells_per_perturbation)
    if too_small:
        adata = adata[~adata.obs["perturbation"].isin(too_small)].copy()
    kept = adata.obs["perturbation"].nunique() - int(spec.control_label in counts.index)
    if kept < config.n_folds:
        raise ValueError(f"only {kept} perturbations keep {spec.min_cells_per_perturbation} cells after QC, fewer than "
                         f"--n_folds {config.n_folds}; use --n_folds {kept} or fewer, or lower --min_genes_per_cell / "
                         "--min_cells_per_perturbation")
    if (adata.obs["perturbation"] == spec.control_label).sum() < 2:
        raise ValueError("fewer than two control cells pass QC; lower min_genes_per_cell")

    LOG.info("preprocess: %d cells x %d genes after QC; normalizing, DE genes", adata.n_obs, adata.n_vars)
    normalize(adata, config.target_sum)
    library = pd.Series(np.asarray(adata.layers["counts"].sum(axis=1), dtype=np.float64).ravel())
    library = library.groupby(adata.obs["perturbation"].to_numpy().astype(str)).mean()
    stats = de_statistics(adata.X, adata.obs["perturbation"].to_numpy(), adata.var_names, spec.control_label,
                          config.de)
    top = top_de_genes(stats, config.de)
    counts_de = de_counts(stats, config.de)
    keep = select_genes(adata, config.n_hvg, target_genes | set(top["gene"]))
    adata = adata[:, keep].copy()
    adata.var["is_target"] = adata.var_names.isin(list(target_genes))
    adata.var["is_de"] = adata.var_names.isin(list(set(top["gene"])))
    adata.uns["pertprobe"]["preprocess"] = {k: list(v) if isinstance(v, tuple) else v
                                            for k, v in asdict(config).items()} | {"min_genes_per_cell": min_genes}

    LOG.info("preprocess: %d genes selected; pseudobulk, splits", adata.n_vars)
    labels = adata.obs["perturbation"].to_numpy()
    means, n_cells = group_means(adata.X, labels)
    perts = [p for p in means.index if p != spec.control_label]
    pb = Pseudobulk(
        means=pd.DataFrame(means.to_numpy(), index=means.index, columns=adata.var_names),
        n_cells=n_cells,
        targets={p: [g for g in targets.get(p, []) if g in set(adata.var_names)] for p in perts},
        control_label=spec.control_label,
        perturbation_type=spec.perturbation_type,
        library_size=library.reindex(means.index).rename("library_size"),
    )
    batch_labels = np.char.add(np.char.add(labels.astype(str), "|"), adata.obs["batch"].to_numpy().astype(str))
    by_batch, by_batch_n = group_means(adata.X, batch_labels)
    by_batch.columns = adata.var_names
    by_batch.index = pd.MultiIndex.from_tuples([tuple(i.rsplit("|", 1)) for i in by_batch.index],
                                               names=["perturbation", "batch"])
    by_batch.insert(0, "n_cells", by_batch_n.to_numpy())

    weights = rest_weights(adata.X, labels, adata.var_names, spec.control_label)
    de = de_table(stats, top, weights.loc[perts])
    splits, task_status = make_splits(perts, list(config.tasks), config.task)
    resolution = label_resolution(perts, pb.targets, spec.perturbation_type)
    summary = {
        "n_cells_input": n_cells_in, "n_genes_input": n_genes_in,
        "n_cells": adata.n_obs, "n_genes": adata.n_vars,
        "n_control_cells": int(n_cells[spec.control_label]),
        "n_perturbations": len(perts),
        "n_hvg": int(adata.var["highly_variable"].sum()),
        "n_targets_measured": int(adata.var["is_target"].sum()),
        "perturbations_dropped_after_qc": too_small,
        "n_perturbations_unresolved": int((~resolution["resolved"]).sum()),
        "unresolved_perturbations": resolution.loc[~resolution["resolved"], "perturbation"].tolist(),
        "perturbation_type": spec.perturbation_type,
        "qc_min_genes_per_cell": min_genes,
        "qc_min_genes_rule": min_genes_rule,
        "qc_min_cells_per_gene": config.min_cells_per_gene,
        "tasks": task_status,
        "n_de_genes_median": float(counts_de["n_de_genes"].median()),
        "perturbations_with_fewer_de_genes": counts_de.index[counts_de["n_de_genes"] < config.n_de_genes].tolist(),
        "perturbations_without_de_genes": counts_de.index[counts_de["n_de_genes"] == 0].tolist(),
    }
    return Preprocessed(adata, pb, by_batch, de, splits, summary, resolution, counts_de)
