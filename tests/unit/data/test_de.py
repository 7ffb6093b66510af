"""DE statistics against scanpy, scipy and statsmodels; DE genes against their definition."""

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from pertprobe.data.de import (
    DEConfig,
    de_counts,
    de_gene_sets,
    de_statistics,
    de_table,
    de_weights,
    group_moments,
    rest_weights,
    top_de_genes,
)
from scipy import stats


@pytest.fixture(scope="module")
def normalized(small_sim):
    import scanpy as sc

    adata = small_sim.to_anndata().copy()  # the session fixture keeps its counts
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    adata.obs["perturbation"] = adata.obs["perturbation"].astype(str).astype("category")
    return adata


def _labels(adata) -> np.ndarray:
    return adata.obs["perturbation"].to_numpy().astype(str)


def test_statistics_match_scanpy_scipy_and_statsmodels(normalized):
    """t and p equal scanpy's t-test against control and scipy's Welch test; BH equals statsmodels'
    over the tested genes; logFC and the expression filter equal their definitions."""
    import scanpy as sc
    from statsmodels.stats.multitest import multipletests

    adata = normalized.copy()
    config = DEConfig(min_fraction=0.2, pseudocount=1.0)
    ours = de_statistics(adata.X, _labels(adata), adata.var_names, "control", config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.tl.rank_genes_groups(adata, "perturbation", reference="control", method="t-test", n_genes=adata.n_vars)
    ref = adata.uns["rank_genes_groups"]
    X = adata.X.toarray().astype(np.float64)
    labels = _labels(adata)
    ctrl = X[labels == "control"]
    for pert in ours.score.index[:6]:
        scores = pd.Series(ref["scores"][pert].astype(float), index=ref["names"][pert]).reindex(adata.var_names)
        pvals = pd.Series(ref["pvals"][pert].astype(float), index=ref["names"][pert]).reindex(adata.var_names)
        np.testing.assert_allclose(ours.score.loc[pert], scores, rtol=1e-4, atol=1e-4)  # scanpy: float32
        np.testing.assert_allclose(ours.pval.loc[pert], pvals, rtol=1e-3, atol=1e-12)
        cells = X[labels == pert]
        t, p = stats.ttest_ind(cells, ctrl, equal_var=False)
        np.testing.assert_allclose(ours.score.loc[pert], np.nan_to_num(t), rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(ours.pval.loc[pert], np.nan_to_num(p, nan=1.0), rtol=1e-6, atol=1e-300)
        tested = ((cells > 0).mean(axis=0) >= 0.2) | ((ctrl > 0).mean(axis=0) >= 0.2)
        np.testing.assert_array_equal(ours.tested.loc[pert], tested)
        adjusted = multipletests(ours.pval.loc[pert].to_numpy()[tested], method="fdr_bh")[1]
        np.testing.assert_allclose(ours.pval_adj.loc[pert].to_numpy()[tested], adjusted, rtol=1e-10)
        assert np.isnan(ours.pval_adj.loc[pert].to_numpy()[~tested]).all()
        lfc = np.log2((np.expm1(cells.mean(axis=0)) + 1) / (np.expm1(ctrl.mean(axis=0)) + 1))
        np.testing.assert_allclose(ours.logfoldchange.loc[pert], lfc, rtol=1e-6, atol=1e-9)
    scanpy_lfc = de_statistics(adata.X, labels, adata.var_names, "control", DEConfig(pseudocount=1e-9)).logfoldchange
    for pert in ours.score.index[:6]:
        lfc = pd.Series(ref["logfoldchanges"][pert].astype(float), index=ref["names"][pert]).reindex(adata.var_names)
        np.testing.assert_allclose(scanpy_lfc.loc[pert], lfc, rtol=1e-3, atol=1e-3)


def test_de_genes_are_the_significant_expressed_genes_ranked_by_abs_t(normalized):
    config = DEConfig(n_genes=20, alpha=0.05, min_fraction=0.1)
    s = de_statistics(normalized.X, _labels(normalized), normalized.var_names, "control", config)
    top = top_de_genes(s, config)
    counts = de_counts(s, config)
    for pert in s.score.index:
        ok = s.tested.loc[pert] & (s.pval_adj.loc[pert] < 0.05)
        expected = s.score.loc[pert][ok].abs().sort_values(ascending=False, kind="stable").index[:20]
        got = top.loc[top["perturbation"] == pert].sort_values("rank")
        assert list(got["gene"]) == list(expected), pert
        assert list(got["rank"]) == list(range(len(got)))
        assert counts.loc[pert, "n_significant"] == ok.sum()
        assert counts.loc[pert, "n_de_genes"] == len(got) == min(ok.sum(), 20)
    assert (top["pval_adj"] < 0.05).all()
    assert counts["n_de_genes"].max() == 20  # the simulator's perturbations have real DE genes


def test_without_threshold_or_filter_the_top_genes_are_scanpys(normalized):
    """alpha = 1 and no expression filter reproduce scanpy's top-20 by |t| (rankby_abs)."""
    import scanpy as sc

    adata = normalized.copy()
    config = DEConfig(n_genes=20, alpha=1.0 + 1e-9, min_fraction=0.0)
    top = top_de_genes(de_statistics(adata.X, _labels(adata), adata.var_names, "control", config), config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.tl.rank_genes_groups(adata, "perturbation", reference="control", method="t-test", rankby_abs=True,
                                n_genes=20)
    names = adata.uns["rank_genes_groups"]["names"]
    for pert, rows in top.groupby("perturbation"):
        assert set(rows["gene"]) == set(names[pert]), pert


def test_a_gene_absent_from_a_small_perturbation_is_not_a_de_gene_without_evidence():
    """Six cells with zeros in a gene that 5% of control cells express: not tested, no logFC of -28."""
    rng = np.random.default_rng(0)
    n_ctrl, n_genes = 400, 30
    ctrl = np.log1p(rng.poisson(3.0, (n_ctrl, n_genes)).astype(float))
    ctrl[:, 0] = 0.0
    ctrl[rng.choice(n_ctrl, 20, replace=False), 0] = np.log1p(2.0)  # rare: 5% of control cells
    small = np.log1p(rng.poisson(3.0, (6, n_genes)).astype(float))
    small[:, 0] = 0.0
    X = sp.csr_matrix(np.vstack([ctrl, small]))
    labels = np.array(["control"] * n_ctrl + ["P"] * 6)
    genes = pd.Index([f"g{i}" for i in range(n_genes)])
    s = de_statistics(X, labels, genes, "control", DEConfig())
    assert not s.tested.loc["P", "g0"]
    assert "g0" not in set(top_de_genes(s)["gene"])
    assert np.isfinite(s.logfoldchange.to_numpy()).all() and np.abs(s.logfoldchange.to_numpy()).max() < 2
    unfiltered = de_statistics(X, labels, genes, "control", DEConfig(min_fraction=0.0, pseudocount=1e-9))
    assert unfiltered.logfoldchange.loc["P", "g0"] < -10  # what the pseudocount-free log ratio says


def test_group_moments_sparse_equals_dense(normalized):
    X = normalized.X
    a, b = group_moments(X, _labels(normalized)), group_moments(X.toarray(), _labels(normalized))
    np.testing.assert_array_equal(a.groups, b.groups)
    for x, y in zip(a[1:], b[1:], strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-12)


def test_miller_weights_match_scanpy_vs_rest(normalized):
    """|t| against the other perturbed cells (t-test_overestim_var), min-max normalized, squared."""
    import scanpy as sc

    labels = _labels(normalized)
    w = rest_weights(normalized.X, labels, normalized.var_names, "control")
    perturbed = normalized[labels != "control"].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.tl.rank_genes_groups(perturbed, "perturbation", reference="rest", method="t-test_overestim_var",
                                n_genes=perturbed.n_vars)
    ref = perturbed.uns["rank_genes_groups"]
    for pert in w.index[:6]:
        t = pd.Series(ref["scores"][pert].astype(float), index=ref["names"][pert]).reindex(w.columns).abs()
        expected = ((t - t.min()) / (t.max() - t.min())) ** 2
        np.testing.assert_allclose(w.loc[pert], expected, atol=1e-6)
    assert np.isclose(w.max(axis=1), 1).all() and np.isclose(w.min(axis=1), 0).all()


def test_de_table_round_trips_gene_sets_and_weights(normalized):
    labels = _labels(normalized)
    config = DEConfig()
    s = de_statistics(normalized.X, labels, normalized.var_names, "control", config)
    top = top_de_genes(s, config)
    w = rest_weights(normalized.X, labels, normalized.var_names, "control")
    table = de_table(s, top, w)
    assert len(table) == w.size
    sets = de_gene_sets(table)
    for pert, rows in top.groupby("perturbation"):
        assert sets[pert] == list(rows.sort_values("rank")["gene"])
    pd.testing.assert_frame_equal(de_weights(table).loc[w.index, w.columns], w, check_names=False)
