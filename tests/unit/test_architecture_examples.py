"""The worked examples of docs/architecture.md ("Adding things"), run as written: each registers a
new entry that is then used the way the pipeline uses it."""

import re

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from pertprobe import registry
from pertprobe.data.pseudobulk import Pseudobulk
from pertprobe.models.adapters import run
from pertprobe.models.checkpoint import RunOptions
from pertprobe.registry_docs import registry_markdown
from pertprobe.response.metrics import directions, response_metrics
from pertprobe.response.predictors import floors, predict

from ..conftest import ROOT

BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "architecture.md").read_text(), re.S)


@pytest.fixture
def examples():
    """Execute every example block, then restore the registry as it was."""
    registry.entries()  # load the real implementations first
    saved = dict(registry._ENTRIES)
    try:
        for block in BLOCKS:
            exec(compile(block, "docs/architecture.md", "exec"), {"__name__": "architecture_example"})
        yield
    finally:
        registry._ENTRIES.clear()
        registry._ENTRIES.update(saved)


def test_there_is_one_example_per_kind_of_addition():
    assert len(BLOCKS) == 4


def test_example_predictor_is_a_floor_that_predicts_from_training_data(examples):
    genes = [f"g{i}" for i in range(6)]
    rng = np.random.default_rng(0)
    means = pd.DataFrame(rng.normal(size=(5, 6)), index=["control", "A", "B", "C", "D"], columns=genes)
    pb = Pseudobulk(means, pd.Series(10, index=means.index), {}, "control", "CRISPRi")
    pred, _ = predict("median_of_means", pb, ["A", "B", "C"], ["D"])
    np.testing.assert_allclose(pred.loc["D"], means.loc[["A", "B", "C"]].median(axis=0))
    assert "median_of_means" in floors() and "median_of_means" in registry.select("predictor", "full")
    assert "`median_of_means`" in registry_markdown()


def test_example_metric_is_scored_with_its_direction(examples):
    obs = pd.DataFrame([[1.0, 2.0], [0.0, 4.0]], index=["A", "B"], columns=["g0", "g1"])
    pred = obs + np.array([[1.0, -1.0], [0.5, 0.5]])
    table = response_metrics(pred, obs, np.zeros(2), metrics=["mae_delta"])
    assert table.set_index("perturbation")["value"].to_dict() == {"A": 1.0, "B": 0.5}
    assert directions()["mae_delta"] is False


def test_example_cell_embedder_follows_the_embedding_contract(examples):
    obs = pd.DataFrame({"perturbation": ["control", "A"] * 3, "batch": ["b0"] * 6}, index=[f"c{i}" for i in range(6)])
    adata = ad.AnnData(sp.csr_matrix(np.arange(24, dtype=np.float32).reshape(6, 4)), obs=obs)
    emb = registry.get("cell_embedder", "first_genes").func(adata, n_comps=2)
    assert emb.shape == (6, 2) and emb.obs_names.equals(adata.obs_names)
    assert emb.uns["embedding"]["model"] == "first_genes"


def test_example_foundation_model_runs_through_the_adapter_plumbing(examples, tmp_path):
    genes = pd.DataFrame({"symbol": ["A", "B", "C"], "ensembl": ["", "", ""]}, index=["A", "B", "C"])
    result = run("hashed", "genes", genes, tmp_path, RunOptions(), dims=4)
    assert result.values.shape == (3, 4) and result.coverage.n_covered == 3
    entry = registry.get("gene_embedding", "hashed")
    assert entry.checkpoint and entry.container == "hashed" and "hashed" in registry.foundation_models()
