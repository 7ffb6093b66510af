"""Chemical perturbations: the compound table's checks, the molecule features against RDKit's known
values, and the simulator's promise that fingerprint embeddings carry signal the random floor lacks."""

import numpy as np
import pandas as pd
import pytest
from pertprobe.data.compounds import (BUNDLED, check_compounds, morgan_fingerprints, physchem_descriptors,
                                      read_compound_table)
from pertprobe.data.dataset import DatasetSpec
from pertprobe.data.preprocess import PreprocessConfig, load_counts, preprocess
from pertprobe.data.simulate import SimulationConfig, simulate
from pertprobe.data.splits import SplitKey, split_sets
from pertprobe.data.validate import validate_dataset
from pertprobe.errors import InputError
from pertprobe.registry import get
from pertprobe.response.metrics import response_metrics
from pertprobe.response.predictors import predict

ASPIRIN = "CC(=O)OC1=CC=CC=C1C(=O)O"


def _table(tmp_path, text, name="compounds.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("text,match", [
    ("name,smiles\nA,C\n", "compound.*column"),
    ("compound,smiles\nA,\n", "line 2.*empty compound name or SMILES"),
    ("compound,smiles\nA,C\nA,CC\n", "repeated compounds.*'A'"),
    ("compound,smiles\nA,C\nB,C1CC\n", "line 3.*'C1CC' of 'B' is not a parsable SMILES"),
])
def test_a_bad_compound_table_names_the_row_and_the_fix(tmp_path, text, match):
    with pytest.raises(InputError, match=match) as info:
        read_compound_table(_table(tmp_path, text))
    assert "Fix:" in str(info.value)


def test_every_compound_of_the_dataset_needs_a_smiles(tmp_path):
    table = read_compound_table(_table(tmp_path, f"compound,smiles\naspirin,{ASPIRIN}\n"))
    check_compounds(["aspirin"], table, "t.csv")
    with pytest.raises(InputError, match="1 compound.*'caffeine'.*Fix: add a row"):
        check_compounds(["aspirin", "aspirin+caffeine"], table, "t.csv")


def test_molecule_features_match_rdkit_known_values():
    table = {"aspirin": ASPIRIN, "aspirin_again": "OC(=O)c1ccccc1OC(C)=O", "methane": "C"}
    bits = morgan_fingerprints(table)
    assert bits.shape == (3, 2048) and set(np.unique(bits)) <= {0.0, 1.0}
    np.testing.assert_array_equal(bits.loc["aspirin"], bits.loc["aspirin_again"])  # same molecule, other SMILES
    assert bits.loc["methane"].sum() == 1  # one atom, one environment
    descriptors = physchem_descriptors(table)
    assert descriptors.loc["aspirin", "MolWt"] == pytest.approx(180.159, abs=1e-3)  # C9H8O4
    assert descriptors.loc["aspirin", "NumHDonors"] == 1 and descriptors.loc["methane", "HeavyAtomCount"] == 1
    assert np.isfinite(descriptors.to_numpy()).all()


def test_descriptors_are_standardised_on_training_compounds_only():
    table = read_compound_table(BUNDLED)
    names = sorted(table)
    train = pd.DataFrame(index=names[:30])
    source = get("gene_embedding", "rdkit_descriptors").func
    first = source(train, {}, 10, 0, compounds=table)
    np.testing.assert_allclose(first.loc[names[:30]].mean(), 0, atol=1e-9)
    changed = {**table, names[40]: "CCCCCCCCCCCCCCCCCCCC"}  # a test compound's structure never moves the training rows
    again = source(train, {}, 10, 0, compounds=changed)
    pd.testing.assert_frame_equal(first.loc[names[:30]], again.loc[names[:30]])


@pytest.fixture(scope="module")
def drug_screen(tmp_path_factory):
    folder = tmp_path_factory.mktemp("drugs")
    config = SimulationConfig(perturbation_type="drug", compound_table=str(BUNDLED), n_double=0, n_genes=300,
                              n_programs=6, program_size=20, cells_per_perturbation=60, n_control=300, seed=1)
    adata = simulate(config).to_anndata()
    adata.obs["dose"] = np.where(adata.obs["perturbation"] == "control", np.nan, 1.0)
    path = folder / "drugs.h5ad"
    adata.write_h5ad(path)
    spec = DatasetSpec(batch_col="batch", perturbation_type="drug", dose_col="dose")
    return path, spec, preprocess(load_counts(path, spec), spec, PreprocessConfig(n_hvg=200, n_folds=5, seeds=(0,)))


def test_a_drug_dataset_validates_with_its_compounds_and_doses(drug_screen, tmp_path):
    path, spec, result = drug_screen
    summary = validate_dataset(path, spec, compound_table=BUNDLED)
    assert summary["n_perturbations"] == 45 and summary["unresolved_perturbations"] == []
    assert result.summary["n_perturbations_unresolved"] == 0 and result.pseudobulk.targets["aspirin"] == []
    partial = _table(tmp_path, "compound,smiles\n" + "".join(f"{k},{v}\n" for k, v in
                                                            list(read_compound_table(BUNDLED).items())[1:]))
    with pytest.raises(InputError, match="1 compound.*no SMILES"):
        validate_dataset(path, spec, compound_table=partial)
    import anndata as ad

    bad = ad.read_h5ad(path)
    bad.obs["dose"] = np.where(bad.obs["perturbation"] == "aspirin", "10 uM", "1.0")
    bad.write_h5ad(tmp_path / "bad.h5ad")
    with pytest.raises(InputError, match=r"obs\['dose'\].*not a number \(e.g. '10 uM'\)"):
        validate_dataset(tmp_path / "bad.h5ad", spec)


def test_floors_without_a_target_gene_are_refused_for_drugs(drug_screen):
    _, _, result = drug_screen
    train, test = split_sets(result.splits, SplitKey("unseen_perturbation", 0, 0))
    for name in ("crispr_informed_mean", "target_only"):
        with pytest.raises(ValueError, match="defined for CRISPRi, CRISPRa, KO perturbations only, not drug"):
            predict(name, result.pseudobulk, train, test)


def test_fingerprints_carry_signal_the_random_floor_lacks(drug_screen):
    """The simulator makes a compound's effect a linear function of its Morgan bits: a probe on the
    fingerprint predicts unseen compounds, the same probe on a random embedding does not."""
    _, _, result = drug_screen
    pb, compounds, rows = result.pseudobulk, read_compound_table(BUNDLED), []
    for fold in range(5):
        train, test = split_sets(result.splits, SplitKey("unseen_perturbation", 0, fold))
        for source in ("morgan", "random"):
            embedding = get("gene_embedding", source).func(pb.means.loc[train], pb.targets, 10, 0, compounds=compounds)
            assert set(test) <= set(embedding.index)  # the random floor embeds every compound too
            pred, info = predict("linear", pb, train, test, embedding=embedding, seed=0)
            assert info.get("n_fallback", 0) == 0
            scores = response_metrics(pred, pb.means.loc[test], pb.control, None, metrics=["rank_delta", "pearson_delta"])
            rows.append(scores.assign(source=source))
    table = pd.concat(rows).groupby(["metric", "source"])["value"].mean()
    assert table["rank_delta", "morgan"] < table["rank_delta", "random"] - 0.1
    assert table["pearson_delta", "morgan"] > table["pearson_delta", "random"] + 0.1
