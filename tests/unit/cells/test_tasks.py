"""Each cell-embedding task against its definition on inputs with a known answer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pertprobe.cells.alignment import align
from pertprobe.cells.integrity import structural_integrity
from pertprobe.cells.perturbation_map import (
    read_relationships,
    relationship_recall,
    replicate_consistency,
    replicate_labels,
)
from pertprobe.cells.separability import energy_distance, energy_permutation_test, energy_to_control, probe_accuracy


def labelled_cells(n_perts: int = 12, per_pert: int = 40, n_ctrl: int = 200, n_batches: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    pert = np.array(["control"] * n_ctrl + [f"P{i:02d}" for i in range(n_perts) for _ in range(per_pert)])
    batch = np.array([f"b{i}" for i in rng.integers(0, n_batches, size=len(pert))])
    return pert, batch, pert == "control", rng


# Alignment ---------------------------------------------------------------------------------------

def test_center_and_center_scale_put_each_batch_controls_at_zero_mean_unit_sd():
    pert, batch, ctrl, rng = labelled_cells()
    x = rng.normal(size=(len(pert), 5)) * np.where(batch == "b0", 1.0, 3.0)[:, None] + (batch == "b1")[:, None] * 7
    for method in ("center", "center_scale"):
        out = align(x, batch, ctrl, method)
        for b in ("b0", "b1"):
            np.testing.assert_allclose(out[(batch == b) & ctrl].mean(axis=0), 0, atol=1e-12)
    scaled = align(x, batch, ctrl, "center_scale")
    np.testing.assert_allclose(scaled[(batch == "b1") & ctrl].std(axis=0), 1, atol=1e-12)
    np.testing.assert_array_equal(align(x, batch, ctrl, "none"), x)


def test_tvn_whitens_each_batch_controls_up_to_the_ridge():
    pert, batch, ctrl, rng = labelled_cells(n_ctrl=600)
    mixing = {"b0": rng.normal(size=(4, 4)), "b1": rng.normal(size=(4, 4))}
    x = np.vstack([rng.normal(size=4) @ mixing[b] + (3.0 if b == "b1" else 0.0) for b in batch])
    out = align(x, batch, ctrl, "tvn")
    for b in ("b0", "b1"):
        ref = out[(batch == b) & ctrl]
        np.testing.assert_allclose(ref.mean(axis=0), 0, atol=1e-10)
        eig = np.linalg.eigvalsh(np.cov(ref, rowvar=False))
        # Whitening with (Σ + 0.5 I)^(-1/2) leaves eigenvalues λ / (λ + 0.5) of the TVN-rotated Σ: in (0, 1).
        assert (eig > 0).all() and (eig < 1).all()
    # Both batches' control covariances end up close to each other although the raw ones differ a lot.
    cov = [np.cov(out[(batch == b) & ctrl], rowvar=False) for b in ("b0", "b1")]
    raw = [np.cov(x[(batch == b) & ctrl], rowvar=False) for b in ("b0", "b1")]
    assert np.linalg.norm(cov[0] - cov[1]) < 0.2 * np.linalg.norm(raw[0] - raw[1])


def test_alignment_needs_controls_in_every_batch():
    pert, batch, ctrl, rng = labelled_cells()
    ctrl = ctrl & (batch == "b0")
    with pytest.raises(ValueError, match="two control cells per batch"):
        align(rng.normal(size=(len(pert), 3)), batch, ctrl, "center")


# Separability ------------------------------------------------------------------------------------

def test_probe_on_random_embedding_scores_chance_and_ignores_the_control_majority():
    # 70% control cells: a probe that kept controls as a class would score ≈ 0.7 by predicting "control".
    pert, batch, ctrl, rng = labelled_cells(n_perts=10, per_pert=60, n_ctrl=1400)
    result = probe_accuracy(rng.normal(size=(len(pert), 8)), pert, batch, ctrl, ["b1"], seed=0)
    assert result["n_classes"] == 10 and result["top1_chance"] == pytest.approx(0.1)
    assert abs(result["top1_accuracy"] - 0.1) < 0.06
    assert abs(result["top5_accuracy"] - 0.5) < 0.1


def test_probe_never_sees_the_test_batch():
    pert, batch, ctrl, rng = labelled_cells(n_perts=8, per_pert=80)
    codes = {p: rng.normal(size=6) * 4 for p in np.unique(pert)}
    # Each perturbation has a clear signature, but a different one in each batch.
    x = np.vstack([codes[p] * (1 if b == "b0" else -1) for p, b in zip(pert, batch)]) + rng.normal(size=(len(pert), 6))
    unseen = probe_accuracy(x, pert, batch, ctrl, ["b1"])
    assert unseen["top1_accuracy"] < 0.1  # a probe fitted on b1 would be near 1.0
    shared = np.vstack([codes[p] for p in pert]) + rng.normal(size=(len(pert), 6))
    assert probe_accuracy(shared, pert, batch, ctrl, ["b1"])["top1_accuracy"] > 0.9


def test_constant_embedding_scores_exactly_chance():
    pert, batch, ctrl, _ = labelled_cells(n_perts=5, per_pert=20)
    result = probe_accuracy(np.ones((len(pert), 3)), pert, batch, ctrl, ["b1"])
    assert result["top1_accuracy"] == pytest.approx(0.2) and result["top5_accuracy"] == pytest.approx(1.0)


def test_energy_distance_matches_pertpy():
    pytest.importorskip("pertpy")
    import anndata as ad
    import pertpy as pt

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(30, 4)), rng.normal(0.5, 1.2, size=(45, 4))
    adata = ad.AnnData(np.vstack([x, y]).astype(np.float64),
                       obs=pd.DataFrame({"g": ["x"] * 30 + ["y"] * 45}, index=[str(i) for i in range(75)]))
    adata.obsm["emb"] = adata.X.copy()
    expected = pt.tl.Distance("edistance", obsm_key="emb")(x, y)
    assert energy_distance(x, y) == pytest.approx(expected, rel=1e-10)
    observed, _ = energy_permutation_test(x, y, 10, np.random.default_rng(0))
    assert observed == pytest.approx(expected, rel=1e-8)


def test_energy_permutation_test_detects_shifts_and_not_noise():
    rng = np.random.default_rng(2)
    ctrl = rng.normal(size=(200, 5))
    _, p_shift = energy_permutation_test(rng.normal(0.8, 1, size=(40, 5)), ctrl, 199, rng)
    assert p_shift == pytest.approx(1 / 200)
    p_null = [energy_permutation_test(rng.normal(size=(40, 5)), ctrl, 99, rng)[1] for _ in range(60)]
    assert 0.35 < np.mean(p_null) < 0.65 and np.mean(np.array(p_null) < 0.05) < 0.15


def test_energy_to_control_reports_every_perturbation_with_bh_q_values():
    pert, _, ctrl, rng = labelled_cells(n_perts=6, per_pert=30)
    x = rng.normal(size=(len(pert), 4)) + (pert == "P00")[:, None] * 2.0
    table = energy_to_control(x, pert, ctrl, n_permutations=299, max_controls=100, seed=0)
    assert list(table["perturbation"]) == [f"P{i:02d}" for i in range(6)]
    assert table.set_index("perturbation").loc["P00", "energy_q_value"] < 0.05
    assert (table["energy_q_value"] >= table["energy_p_value"]).all()


# Replicate consistency and known relationships ---------------------------------------------------

def test_replicate_consistency_separates_reproducible_signal_from_the_null():
    pert, batch, ctrl, rng = labelled_cells(n_perts=30, per_pert=60)
    signal = {p: rng.normal(size=8) for p in np.unique(pert)}
    effect = np.isin(pert, ["P00", "P01", "P02", "P03"])
    x = rng.normal(size=(len(pert), 8)) + effect[:, None] * np.vstack([signal[p] for p in pert])
    nulls = [f"P{i}" for i in range(20, 30)]
    table = replicate_consistency(x, pert, batch, ctrl, nulls, n_null=1000, seed=0).set_index("perturbation")
    # 10 null perturbations x 2 batches: all 100 combinations form the null, so the smallest p is 1/101.
    np.testing.assert_allclose(table.loc[["P00", "P01", "P02", "P03"], "consistency_p_value"], 1 / 101)
    assert table.loc[["P00", "P01"], "consistency"].min() > 0.8
    no_effect = table.loc[[f"P{i:02d}" for i in range(4, 20)], "consistency_p_value"]
    assert no_effect.mean() > 0.3 and (no_effect < 0.05).mean() < 0.2
    assert table.loc[nulls, "is_null"].all()
    sampled = replicate_consistency(x, pert, batch, ctrl, nulls, n_null=50, seed=0)
    assert sampled["consistency_p_value"].min() == pytest.approx(1 / 51)


def test_single_batch_uses_seeded_random_halves_as_replicates():
    labels, unit = replicate_labels(np.array(["all"] * 10), seed=0)
    assert unit == "random_half" and set(labels) <= {"half0", "half1"}
    np.testing.assert_array_equal(labels, replicate_labels(np.array(["all"] * 10), seed=0)[0])


def test_relationship_recall_is_two_tails_for_random_profiles_and_one_for_planted_pairs():
    rng = np.random.default_rng(0)
    genes = [f"G{i:03d}" for i in range(200)]
    pairs = pd.DataFrame([(genes[i], genes[i + 1], "s") for i in range(0, 200, 2)], columns=["gene_a", "gene_b", "source"])
    recalls = [relationship_recall(pd.DataFrame(rng.normal(size=(200, 16)), index=genes), pairs)
               .set_index("source").loc["all", "recall"] for _ in range(20)]
    assert abs(np.mean(recalls) - 0.10) < 0.02
    profiles = rng.normal(size=(200, 16))
    profiles[1::2] = profiles[0::2] + 0.01 * rng.normal(size=(100, 16))  # planted pairs are near-identical
    rec = relationship_recall(pd.DataFrame(profiles, index=genes), pairs).set_index("source")
    assert rec.loc["all", "recall"] == 1.0 and rec.loc["all", "recall_high"] == 1.0 and rec.loc["s", "n_pairs"] == 100


def test_relationship_recall_hand_computed_example():
    # Four genes on a circle: cosines A-B 0, A-C -1, A-D 0, B-C 0, B-D -1, C-D 0 (6 background pairs).
    profiles = pd.DataFrame([[1, 0], [0, 1], [-1, 0], [0, -1]], index=list("ABCD"), dtype=float)
    pairs = pd.DataFrame({"gene_a": ["A", "A"], "gene_b": ["C", "B"], "source": ["x", "x"]})
    rec = relationship_recall(profiles, pairs, tail=1 / 3).set_index("source")
    # Rank of A-C (-1) from the right side is 2/6 <= 1/3: in the low tail; A-B (0) is in neither tail.
    assert rec.loc["all", "recall_low"] == 0.5 and rec.loc["all", "recall_high"] == 0.0


def test_relationship_file_errors_name_the_file_and_field(tmp_path):
    from pertprobe.errors import InputError

    bad = tmp_path / "rels.tsv"
    bad.write_text("a\tb\nX\tY\n")
    with pytest.raises(InputError, match="rels.tsv.*gene_a"):
        read_relationships(bad)
    good = tmp_path / "ok.tsv"
    good.write_text("gene_a\tgene_b\tsource\nY\tX\tcorum\nX\tY\tcorum\nX\tX\tcorum\n")
    assert read_relationships(good).to_dict("records") == [{"gene_a": "X", "gene_b": "Y", "source": "corum"}]


# Structural Integrity ----------------------------------------------------------------------------

def test_structural_integrity_oracle_no_change_and_opposite():
    rng = np.random.default_rng(0)
    obs = [rng.normal(size=(5, 20)), rng.normal(size=(7, 20))]
    assert structural_integrity(obs, obs) == pytest.approx(1.0)
    assert structural_integrity([np.zeros_like(o) for o in obs], obs) == pytest.approx(0.5)
    assert structural_integrity([-o for o in obs], obs) == pytest.approx(0.0)


def test_cell_leaderboard_margins_use_the_random_floor_of_the_same_alignment():
    from pertprobe.report.cells import cell_leaderboard, task_tables

    rows = [("pca", "center", "relationships", "recall", 0.5), ("random", "center", "relationships", "recall", 0.1),
            ("pca", "none", "relationships", "recall", 0.2), ("random", "none", "relationships", "recall", 0.12),
            ("pca", "center", "integrity", "mse", 0.02), ("random", "center", "integrity", "mse", 0.05),
            ("pca", "center", "separability", "top1_chance", 0.1), ("random", "center", "separability", "top1_chance", 0.1)]
    summary = pd.DataFrame([{"dataset": "d", "model": m, "alignment": a, "task": t, "metric": k, "value": v,
                             "sd": np.nan, "n": 1, "note": ""} for m, a, t, k, v in rows])
    board = cell_leaderboard(summary).set_index(["model", "alignment", "metric"])
    assert board.loc[("pca", "center", "recall"), "margin_over_floor"] == pytest.approx(0.4)
    assert board.loc[("pca", "none", "recall"), "margin_over_floor"] == pytest.approx(0.08)
    assert board.loc[("pca", "center", "mse"), "margin_over_floor"] == pytest.approx(0.03)  # lower is better
    assert np.isnan(board.loc[("pca", "center", "top1_chance"), "margin_over_floor"])
    tables = task_tables(cell_leaderboard(summary), "d")
    assert list(tables) == ["separability", "relationships", "integrity"]
    assert list(tables["relationships"]["model"])[:2] == ["random", "random"]


def test_a_task_that_cannot_run_is_named_with_its_reason():
    """No null perturbations and no known relationships: both tasks are reported as not run, with
    why, in the summary and on the report page, never dropped silently."""
    import anndata as ad
    from pertprobe.cells.benchmark import NOT_RUN, CellBenchmarkConfig, run_tasks
    from pertprobe.report.cells import cell_leaderboard, tasks_not_run
    from pertprobe.report.html import render_html

    obs = pd.DataFrame({"perturbation": ["control"] * 4 + ["A"] * 4, "batch": "b0"}, index=[f"c{i}" for i in range(8)])
    processed = ad.AnnData(np.ones((8, 3), dtype=np.float32), obs=obs)
    processed.uns["pertprobe"] = {"control_label": "control"}
    config = CellBenchmarkConfig(tasks=("consistency", "relationships"))
    rows, _ = run_tasks(np.zeros((8, 2)), processed, pd.DataFrame(), None, [], config)
    reasons = {r["task"]: r["note"] for r in rows if r["metric"] == NOT_RUN}
    assert set(reasons) == {"consistency", "relationships"}
    assert "null perturbations" in reasons["consistency"] and "--known_relationships" in reasons["relationships"]
    summary = pd.DataFrame([{"dataset": "d", "model": m, "alignment": "none", **r} for r in rows
                            for m in ("pca", "random")])
    board = cell_leaderboard(summary)
    assert tasks_not_run(board, "d") == reasons
    page = render_html(pd.DataFrame(columns=["dataset"]), pd.DataFrame(), {}, [], "", cell_board=board)
    assert page.count("Not run:") == 2 and "--null_perturbations" in page


def _batchy_embedding(seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.repeat([f"p{i}" for i in range(6)], 60)
    batch = np.tile(["b0", "b1"], 180)
    values = rng.normal(size=(360, 8)) + np.where(batch == "b1", 0.8, 0.0)[:, None]
    values[:, 0] += np.repeat(np.arange(6), 60) * 2.0
    return values.astype(np.float32), batch, labels


def test_kbet_is_deterministic_and_uses_exact_diffusion_neighbours():
    from unittest import mock

    from pertprobe.cells.batch_mixing import exact_neighbors, kbet
    from scib_metrics import nearest_neighbors

    values, batch, labels = _batchy_embedding()
    graph = exact_neighbors(values, 30)
    calls = []

    def spy(x, n_neighbors, **kwargs):
        calls.append((len(x), n_neighbors))
        return exact_neighbors(x, n_neighbors)

    first = kbet(graph, batch, labels)
    assert kbet(graph, batch, labels) == first and 0.0 <= first <= 1.0
    with mock.patch("pertprobe.cells.batch_mixing._exact_diffusion_neighbors", spy):
        assert kbet(graph, batch, labels) == first
    assert len(calls) == 6 and all(n == 60 for n, _ in calls)  # one exact search per label's cells
    assert nearest_neighbors.pynndescent.__name__ == "pynndescent"  # the library is left as it was


def _advance_arpack() -> None:
    """Draw ARPACK's internal start vectors, as any earlier eigsh call in the process does."""
    import scipy.sparse as sp
    import scipy.sparse.linalg

    m = sp.random(300, 300, density=0.05, random_state=1)
    for _ in range(3):
        scipy.sparse.linalg.eigsh((m + m.T).tocsr(), k=10)


def test_kbet_does_not_depend_on_earlier_arpack_calls_in_the_process():
    """Each EVAL_CELL_EMBEDDINGS task scores several embeddings and alignments in one process; the
    diffusion map's eigenvectors must not depend on what ran before (issue 12)."""
    import scipy.sparse.linalg
    from pertprobe.cells.batch_mixing import exact_neighbors, kbet

    rng = np.random.default_rng(3)
    labels = np.repeat([f"p{i}" for i in range(4)], 150)
    batch = np.tile(["b0", "b1", "b2"], 200)
    values = (rng.standard_normal((600, 8)) + 0.4 * (batch == "b1")[:, None]).astype(np.float32)
    graph = exact_neighbors(values, 90)
    eigsh = scipy.sparse.linalg.eigsh
    first = kbet(graph, batch, labels)
    _advance_arpack()
    assert kbet(graph, batch, labels) == first
    assert scipy.sparse.linalg.eigsh is eigsh  # the library is left as it was


@pytest.mark.slow
def test_kbet_agrees_with_scib_metrics_approximate_neighbours():
    """On small labels pynndescent finds the exact neighbours, so scib-metrics' own kBET agrees."""
    import scib_metrics
    from pertprobe.cells.batch_mixing import exact_neighbors, kbet

    values, batch, labels = _batchy_embedding(1)
    graph = exact_neighbors(values, 30)
    assert abs(kbet(graph, batch, labels) - float(scib_metrics.kbet_per_label(graph, batch, labels))) < 0.02


def test_a_metric_no_embedding_separates_is_flagged():
    """silhouette_batch ≈ 0.99 for every embedding, random included: flagged; a metric where PCA
    beats the floor is not; counts are not scores."""
    from pertprobe.report.cells import cell_leaderboard, inseparable

    rows = [("pca", "silhouette_batch", 0.991), ("scvi", "silhouette_batch", 0.989), ("random", "silhouette_batch", 0.99),
            ("pca", "recall", 0.4), ("scvi", "recall", 0.3), ("random", "recall", 0.1),
            ("pca", "n_pairs", 10.0), ("scvi", "n_pairs", 10.0), ("random", "n_pairs", 10.0)]
    summary = pd.DataFrame([{"dataset": "d", "model": m, "alignment": "none", "task": "batch", "metric": k, "value": v,
                             "sd": np.nan, "n": 1, "note": ""} for m, k, v in rows])
    flagged = inseparable(cell_leaderboard(summary), "d")
    assert flagged["metric"].tolist() == ["silhouette_batch"]
    assert flagged.loc[0, "min"] == pytest.approx(0.989) and flagged.loc[0, "max"] == pytest.approx(0.991)
    from pertprobe.report.html import render_html

    page = render_html(pd.DataFrame(columns=["dataset"]), pd.DataFrame(), {}, [], "", cell_board=cell_leaderboard(summary))
    assert "No embedding separates from the others" in page and "silhouette_batch (batch, none" in page
