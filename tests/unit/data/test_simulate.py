"""The simulator: determinism, contract, and that the ground truth is what the counts show."""

import numpy as np
import pytest
from pertprobe.data.dataset import split_targets
from pertprobe.data.pseudobulk import group_means
from pertprobe.data.simulate import SimulationConfig, simulate
from pertprobe.data.validate import validate_dataset

from ...conftest import small_config


def test_same_seed_same_data_different_seed_different_data():
    a, b, c = simulate(small_config(seed=1)), simulate(small_config(seed=1)), simulate(small_config(seed=2))
    assert (a.counts != b.counts).nnz == 0
    assert a.obs.equals(b.obs)
    np.testing.assert_array_equal(a.truth_lfc, b.truth_lfc)
    assert a.counts.shape != c.counts.shape or (a.counts != c.counts).nnz > 0


def test_output_satisfies_input_contract(small_h5ad, spec):
    summary = validate_dataset(small_h5ad, spec)
    cfg = small_config()
    assert summary["n_perturbations"] == cfg.n_single + cfg.n_double + cfg.n_nonexpressed
    assert summary["n_combinations"] == cfg.n_double
    assert summary["targets_not_measured"] == []


def test_perturbation_classes_present(small_sim):
    classes = set(small_sim.truth_obs["class"])
    assert {"strong", "weak", "no_effect", "non_expressed", "double_additive", "double_interaction"} <= classes
    doubles = small_sim.truth_obs[small_sim.truth_obs["class"].str.startswith("double")]
    assert all(len(split_targets(p)) == 2 for p in doubles.index)
    assert all(t in small_sim.truth_obs.index for p in doubles.index for t in split_targets(p))


def _observed_lfc(sim):
    """Log ratio of depth-normalized mean expression, perturbation vs control."""
    counts = sim.counts.toarray()
    norm = counts / counts.sum(axis=1, keepdims=True)
    means, _ = group_means(norm, sim.obs["perturbation"].astype(str).to_numpy())
    return means


def test_knockdown_reaches_the_configured_fraction():
    sim = simulate(small_config(seed=5, cells_per_perturbation=150, knockdown_fraction=0.2))
    means = _observed_lfc(sim)
    ctrl = means.loc["control"].to_numpy()
    singles = sim.truth_obs[sim.truth_obs["class"].isin(["strong", "weak", "no_effect"])]
    genes = list(sim.var.index)
    ratios = [means.loc[p].to_numpy()[genes.index(p)] / ctrl[genes.index(p)] for p in singles.index]
    # Depth normalization shifts ratios slightly; the knockdown itself dominates.
    assert np.median(ratios) == pytest.approx(0.2, abs=0.08)


def test_activation_increases_target():
    sim = simulate(small_config(seed=5, perturbation_type="CRISPRa", activation_fold=4.0, cells_per_perturbation=150))
    means = _observed_lfc(sim)
    ctrl = means.loc["control"].to_numpy()
    genes = list(sim.var.index)
    singles = sim.truth_obs[sim.truth_obs["class"] == "strong"].index
    ratios = [means.loc[p].to_numpy()[genes.index(p)] / ctrl[genes.index(p)] for p in singles]
    assert np.median(ratios) > 2.5


def test_downstream_effects_follow_programs(small_sim):
    """Observed responses of strong perturbations correlate with the true effects; nulls do not move."""
    means = _observed_lfc(small_sim)
    ctrl = means.loc["control"].to_numpy()
    expressed = small_sim.var["expressed"].to_numpy() & (ctrl > 0)
    obs_lfc = np.log((means.to_numpy()[:, expressed] + 1e-6) / (ctrl[expressed] + 1e-6))
    obs_lfc = obs_lfc - obs_lfc[means.index.get_loc("control")]
    truth = small_sim.truth_obs
    cors, null_sd, strong_sd = [], [], []
    for p in truth.index:
        o = obs_lfc[means.index.get_loc(p)]
        t = small_sim.truth_lfc[truth.index.get_loc(p)][expressed]
        mask = np.ones_like(t, dtype=bool)
        for target in split_targets(p):
            mask &= small_sim.var.index[expressed] != target
        if truth.loc[p, "class"] == "strong":
            cors.append(np.corrcoef(o[mask], t[mask])[0, 1])
            strong_sd.append(np.std(o[mask]))
        if truth.loc[p, "class"] == "non_expressed":
            null_sd.append(np.std(o[mask]))
    assert np.median(cors) > 0.6
    assert max(null_sd) < min(strong_sd)


def test_program_membership_in_truth(small_sim):
    """Strong regulators of one program differ only inside that program (plus their own targets)."""
    truth = small_sim.truth_anndata()
    assert truth.shape == (len(small_sim.truth_obs), small_sim.counts.shape[1])
    programs = truth.var["program"].to_numpy()
    strong = small_sim.truth_obs[small_sim.truth_obs["class"] == "strong"]
    pairs = [(a, b) for a in strong.index for b in strong.index
             if a < b and strong.loc[a, "target_program"] == strong.loc[b, "target_program"]]
    assert pairs, "the simulated screen should have two strong regulators of one program"
    for a, b in pairs:
        diff = truth[a].X.ravel() - truth[b].X.ravel()
        outside = (programs != strong.loc[a, "target_program"]) & ~truth.var_names.isin([a, b])
        np.testing.assert_allclose(diff[outside], 0.0, atol=1e-12)
        assert np.abs(diff[~outside]).max() > 0.05


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="perturbation_type"):
        SimulationConfig(perturbation_type="siRNA")
    with pytest.raises(ValueError, match="compound_table"):
        SimulationConfig(perturbation_type="drug")
    with pytest.raises(ValueError, match="program"):
        SimulationConfig(n_genes=50, n_programs=10, program_size=25)


def test_bundled_test_data_is_the_simulators_output(tmp_path):
    """assets/test_data is reproducible from `make test-data` (seed 0, default config)."""
    import anndata as ad

    from ...conftest import TEST_DATA

    bundled = ad.read_h5ad(TEST_DATA / "sim_crispri.h5ad")
    fresh = simulate(SimulationConfig(seed=0)).to_anndata()
    assert (bundled.X != fresh.X).nnz == 0
    assert bundled.obs.equals(fresh.obs)
    assert list(bundled.var_names) == list(fresh.var_names)


def test_simulator_doc_describes_the_bundled_data():
    """docs/simulator.md states the bundled file's size; the numbers must be the file's."""
    import re

    import anndata as ad

    from ...conftest import ROOT, TEST_DATA

    text = (ROOT / "docs" / "simulator.md").read_text()
    found = re.search(r"\(([\d,]+) cells × (\d+) genes, (\d+) perturbations of which (\d+) are combinations, "
                      r"(\d+) batches", text)
    assert found, "docs/simulator.md no longer states the bundled data's size"
    adata = ad.read_h5ad(TEST_DATA / "sim_crispri.h5ad", backed="r")
    labels = adata.obs["perturbation"].astype(str)
    perts = set(labels) - {"control"}
    actual = (adata.n_obs, adata.n_vars, len(perts), sum("+" in p for p in perts), adata.obs["batch"].nunique())
    assert tuple(int(g.replace(",", "")) for g in found.groups()) == actual


def test_covariates_share_a_response_and_keep_a_line_specific_part():
    """Every perturbation and the controls in every line; a perturbation's mean over the other lines
    predicts its effect in a line better than no change, but not exactly (the covariate-transfer floor)."""

    sim = simulate(small_config(n_covariates=3, seed=4))
    truth = sim.truth_obs.assign(row=range(len(sim.truth_obs)))
    assert set(sim.obs["cell_line"]) == {"line0", "line1", "line2"}
    assert (sim.obs[sim.obs["perturbation"] == "control"].groupby("cell_line", observed=True).size() > 0).all()
    assert truth.groupby("perturbation")["cell_line"].nunique().eq(3).all()
    strong = truth[truth["class"] == "strong"]
    better, exact = [], []
    for pert, rows in strong.groupby("perturbation"):
        effects = sim.truth_lfc[rows["row"].to_numpy()]
        for i in range(3):
            context = np.delete(effects, i, axis=0).mean(axis=0)
            better.append(np.linalg.norm(effects[i] - context) < np.linalg.norm(effects[i]))
            exact.append(np.allclose(effects[i], context))
    assert np.mean(better) > 0.9 and not any(exact)
    # Observed: per-line pseudobulk minus that line's control follows the truth.
    labels = (sim.obs["perturbation"].astype(str) + "|" + sim.obs["cell_line"].astype(str)).to_numpy()
    norm = sim.counts.multiply(1e4 / sim.counts.sum(axis=1)).tocsr().log1p()
    means, _ = group_means(norm, labels)
    row = strong.iloc[0]
    observed = means.loc[f"{row['perturbation']}|{row['cell_line']}"] - means.loc[f"control|{row['cell_line']}"]
    assert np.corrcoef(observed, sim.truth_lfc[row["row"]])[0, 1] > 0.5


def test_doses_follow_a_hill_curve_with_each_compounds_ec50():
    from pertprobe.data.compounds import BUNDLED

    doses = (0.01, 0.1, 1.0, 10.0)
    sim = simulate(small_config(perturbation_type="drug", compound_table=str(BUNDLED), n_double=0, doses=doses,
                                seed=6))
    truth = sim.truth_obs.assign(row=range(len(sim.truth_obs)))
    assert sorted(sim.obs.loc[sim.obs["perturbation"] != "control", "dose"].unique()) == list(doses)
    for _, rows in list(truth.groupby("perturbation"))[:10]:
        rows = rows.sort_values("dose")
        ec50 = rows["ec50"].iloc[0]
        assert doses[0] <= ec50 <= doses[-1]
        effects = sim.truth_lfc[rows["row"].to_numpy()]
        hill = np.array(doses) / (ec50 + np.array(doses))  # hill_slope 1
        np.testing.assert_allclose(effects, np.outer(hill / hill[-1], effects[-1]), atol=1e-12)  # one shape, scaled
        assert np.all(np.diff(np.linalg.norm(effects, axis=1)) > 0)  # more drug, more effect
    with pytest.raises(ValueError, match="doses are for drug"):
        SimulationConfig(doses=(1.0,))
