"""No test-perturbation data reaches any fitted object of its split.

Every predictor and gene embedding is fitted on a split's data; the test perturbations' pseudobulk
(overall and per batch) is then replaced by garbage and everything is fitted again: embeddings and
predictions must be bit-identical. Gene selection and DE genes are computed once per dataset in
PREPROCESS (they define the evaluation space, as in GEARS); they are not fitted models.
"""

import numpy as np
import pandas as pd
import pytest
from pertprobe.data.pseudobulk import Pseudobulk
from pertprobe.registry import entries
from pertprobe.response.gene_embeddings import data_pca, random_embedding
from pertprobe.response.predictors import predict

from ...conftest import small_config


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from pertprobe.data.dataset import DatasetSpec
    from pertprobe.data.preprocess import PreprocessConfig, load_counts, preprocess
    from pertprobe.data.simulate import simulate

    path = tmp_path_factory.mktemp("leak") / "d.h5ad"
    simulate(small_config(seed=11)).to_anndata().write_h5ad(path)
    spec = DatasetSpec(batch_col="batch")
    result = preprocess(load_counts(path, spec), spec,
                        PreprocessConfig(min_genes_per_cell=20, n_hvg=80, n_folds=3, seeds=(0,)))
    rows = result.splits[(result.splits["task"] == "unseen_perturbation") & (result.splits["fold"] == 0)]
    train = rows.loc[rows["split"] == "train", "perturbation"].tolist()
    test = rows.loc[rows["split"] == "test", "perturbation"].tolist()
    return result.pseudobulk, result.pseudobulk_by_batch, train, test


def _tampered(pb: Pseudobulk, by_batch: pd.DataFrame, perts: list[str],
              metadata: bool = True) -> tuple[Pseudobulk, pd.DataFrame]:
    """Garbage in place of the expression of `perts` (and, with `metadata`, their cell counts and
    library sizes)."""
    means = pb.means.copy()
    means.loc[perts] = np.random.default_rng(5).normal(50, 10, size=(len(perts), means.shape[1]))
    n_cells, library = pb.n_cells.copy(), pb.library_size.copy()
    if metadata:
        n_cells.loc[perts] = 99_999
        library.loc[perts] = 1.0
    batch = by_batch.copy()
    hit = batch.index.get_level_values("perturbation").isin(perts)
    batch.loc[hit, batch.columns[1:]] = -7.0
    return Pseudobulk(means, n_cells, pb.targets, pb.control_label, pb.perturbation_type, library), batch


def _fit_all(pb, by_batch, train, test, test_metadata=True):
    """Every gene embedding and predictor fitted on the split; predictors that read the test
    perturbations' metadata are left out unless `test_metadata`."""
    embeddings = {"data_pca": data_pca(pb.means.loc[train], pb.targets, 5, 0), "random": random_embedding(pb.genes, 5, 0)}
    out = {f"embedding:{k}": v for k, v in embeddings.items()}
    for entry in entries("predictor"):
        if ("test_metadata" in entry.needs and not test_metadata) or "cells" in entry.needs:
            continue  # fine-tuned predictors train on cells: their leakage test is tests/unit/models/test_finetune.py
        for emb_name, emb in (embeddings.items() if entry.needs_embedding else [("none", None)]):
            out[f"{entry.name}/{emb_name}"] = predict(entry.name, pb, train, test, embedding=emb, by_batch=by_batch, seed=0)[0]
    return out


def test_no_test_data_reaches_embeddings_or_predictors(data):
    pb, by_batch, train, test = data
    before = _fit_all(pb, by_batch, train, test, test_metadata=False)
    after = _fit_all(*_tampered(pb, by_batch, test), train, test, test_metadata=False)
    assert before.keys() == after.keys()
    for key in before:
        pd.testing.assert_frame_equal(before[key], after[key], check_exact=True, obj=key)


def test_metadata_probe_sees_test_metadata_but_no_test_expression(data):
    """metadata_only declares 'test_metadata': the test perturbations' cell counts and library
    sizes reach it (that is the shortcut it measures), their expression never does."""
    pb, by_batch, train, test = data
    metadata_users = [e.name for e in entries("predictor") if "test_metadata" in e.needs]
    assert metadata_users == ["metadata_only"]
    before = _fit_all(pb, by_batch, train, test)
    expression = _fit_all(*_tampered(pb, by_batch, test, metadata=False), train, test)
    everything = _fit_all(*_tampered(pb, by_batch, test), train, test)
    for name in metadata_users:
        pd.testing.assert_frame_equal(before[f"{name}/none"], expression[f"{name}/none"], check_exact=True)
        assert not before[f"{name}/none"].equals(everything[f"{name}/none"])


def test_the_tampering_would_be_detected(data):
    """Control experiment: tampering a *training* perturbation does change the fitted objects."""
    pb, by_batch, train, test = data
    before = _fit_all(pb, by_batch, train, test)
    after = _fit_all(*_tampered(pb, by_batch, train[:3]), train, test)
    changed = [k for k in before if not before[k].equals(after[k])]
    assert "embedding:data_pca" in changed and "mean/none" in changed and "linear/data_pca" in changed
    assert {"knn/data_pca", "ridge/data_pca", "latent_additive/data_pca", "decoder_only/data_pca"} <= set(changed)
    assert {"target_only/none", "metadata_only/none", "nearest_training/data_pca"} <= set(changed)
