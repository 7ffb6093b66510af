"""CellPLM adapter: real loading and embedding on tiny random checkpoints in the released layout,
checked against the authors' own CellEmbeddingPipeline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from pertprobe.errors import InputError
from pertprobe.models import cellplm
from pertprobe.models.checkpoint import RunOptions, directory_hash
from pertprobe.models.geneformer import synthetic_ensembl

pytest.importorskip("CellPLM")

N_CELLS, N_GENES = 40, 60
PREFIX = cellplm.RELEASED_PREFIX


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def genes() -> pd.DataFrame:
    names = [f"GENE{i}" for i in range(N_GENES)]
    return pd.DataFrame({"symbol": names, "ensembl": [synthetic_ensembl(n) for n in names]}, index=names)


@pytest.fixture(scope="module")
def counts() -> sp.csr_matrix:
    return sp.csr_matrix(np.random.default_rng(0).poisson(1.0, size=(N_CELLS, N_GENES)).astype(np.float32))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, genes) -> Path:
    return cellplm.write_tiny_checkpoint(tmp_path_factory.mktemp("cellplm") / "ckpt", genes, seed=0)


@pytest.fixture
def tiny_copy(tiny, tmp_path) -> Path:
    return Path(shutil.copytree(tiny, tmp_path / "ckpt"))


def cpu(batch_size: int = 16, **kwargs) -> RunOptions:
    return RunOptions(device="cpu", batch_size=batch_size, **kwargs)


def upstream(counts, genes, checkpoint: Path, batch_size: int, batch: np.ndarray | None = None) -> np.ndarray:
    """The authors' CellEmbeddingPipeline on the same checkpoint (no symbol conversion, same seed)."""
    import anndata as ad
    from CellPLM.pipeline.cell_embedding import CellEmbeddingPipeline

    adata = ad.AnnData(counts.copy(), var=pd.DataFrame(index=genes["ensembl"].to_numpy()))
    if batch is not None:
        adata.obs["batch"] = batch
    pipeline = CellEmbeddingPipeline(pretrain_prefix=PREFIX, pretrain_directory=str(checkpoint))
    torch.manual_seed(0)
    return pipeline.predict(adata, inference_config={"batch_size": batch_size}, ensembl_auto_conversion=False,
                            device="cpu").numpy()


# Embeddings ----------------------------------------------------------------------------------------

def test_embeddings_match_the_authors_pipeline_and_report_the_load(counts, genes, tiny):
    result = cellplm.embed_cells(counts, genes, tiny, cpu())
    assert result.values.shape == (N_CELLS, 16) and result.values.dtype == np.float32
    assert np.isfinite(result.values).all()
    np.testing.assert_allclose(result.values, upstream(counts, genes, tiny, 16), rtol=0, atol=1e-6)
    assert result.load.n_tensors == len(torch.load(tiny / f"{PREFIX}.best.ckpt")["model_state_dict"]) - \
        result.params["pretraining_tensors_ignored"]
    assert result.params["pretraining_tensors_ignored"] > 0 and result.params["latent_mod"] == "gmvae"
    assert (result.coverage.n_genes, result.coverage.n_covered) == (N_GENES, 54)
    assert result.checkpoint_hash == directory_hash(tiny)


def test_groups_keep_cells_apart_and_rows_return_in_input_order(counts, genes, tiny):
    batch = np.array(["b", "a", "c"])[np.arange(N_CELLS) % 3]  # interleaved groups
    result = cellplm.embed_cells(counts, genes, tiny, cpu(batch_size=5), groups=batch)
    np.testing.assert_allclose(result.values, upstream(counts, genes, tiny, 5, batch), rtol=0, atol=1e-6)
    assert result.params["n_groups"] == 3
    chunks = cellplm.chunks(batch, 5)
    assert [len(c) for c in chunks] == [5, 5, 3, 5, 5, 4, 5, 5, 3]
    assert all(len(set(batch[c])) == 1 for c in chunks)


def test_same_inputs_same_bytes_and_chunking_is_part_of_the_result(counts, genes, tiny):
    first = cellplm.embed_cells(counts, genes, tiny, cpu()).values
    assert first.tobytes() == cellplm.embed_cells(counts, genes, tiny, cpu()).values.tobytes()
    # Cells attend to their chunk (and the GMVAE draws per chunk): another chunk size, other numbers.
    assert not np.allclose(first, cellplm.embed_cells(counts, genes, tiny, cpu(batch_size=7)).values)
    assert not np.allclose(first, cellplm.embed_cells(counts, genes, tiny, cpu(seed=1)).values)


# Checkpoint errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".config.json", ".best.ckpt"])
def test_missing_file_is_named(counts, genes, tiny_copy, suffix):
    (tiny_copy / f"{PREFIX}{suffix}").unlink()
    with pytest.raises(InputError, match="CellPLM" if suffix == ".best.ckpt" else "config.json"):
        cellplm.embed_cells(counts, genes, tiny_copy, cpu())


def test_two_checkpoints_need_a_prefix(counts, genes, tiny_copy):
    for suffix in (".config.json", ".best.ckpt"):
        shutil.copy(tiny_copy / f"{PREFIX}{suffix}", tiny_copy / f"20230926_85M{suffix}")
    with pytest.raises(InputError, match="prefix="):
        cellplm.embed_cells(counts, genes, tiny_copy, cpu())
    result = cellplm.embed_cells(counts, genes, tiny_copy, cpu(), prefix="20230926_85M")
    assert result.params["prefix"] == "20230926_85M"


@pytest.mark.parametrize("damage", ["rename", "reshape", "drop", "no_state_dict", "truncate"])
def test_damaged_weights_fail_strictly(counts, genes, tiny_copy, damage):
    path = tiny_copy / f"{PREFIX}.best.ckpt"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:2000])
    else:
        state = torch.load(path)["model_state_dict"]
        key = next(k for k in state if k.startswith("encoder."))
        if damage == "rename":
            state["encoder.renamed"] = state.pop(key)
        elif damage == "reshape":
            state[key] = torch.zeros(tuple(s + 1 for s in state[key].shape))
        elif damage == "drop":
            del state[key]
        torch.save(state if damage == "no_state_dict" else {"model_state_dict": state}, path)
    expected = {"rename": "unexpected", "reshape": "other shapes", "drop": "missing",
                "no_state_dict": "model_state_dict", "truncate": "cannot be read"}[damage]
    with pytest.raises(InputError, match=expected) as err:
        cellplm.embed_cells(counts, genes, tiny_copy, cpu())
    assert str(path) in str(err.value)


def test_config_without_gene_list_is_refused(counts, genes, tiny_copy):
    path = tiny_copy / f"{PREFIX}.config.json"
    config = json.loads(path.read_text())
    del config["gene_list"]
    path.write_text(json.dumps(config))
    with pytest.raises(InputError, match="gene_list"):
        cellplm.embed_cells(counts, genes, tiny_copy, cpu())


# Genes and cells ---------------------------------------------------------------------------------

def test_symbols_without_ensembl_ids_fail_on_coverage_with_the_fix(counts, genes, tiny):
    no_ids = genes.assign(ensembl="")
    with pytest.raises(InputError, match="gene-id-map"):
        cellplm.embed_cells(counts, no_ids, tiny, cpu())


def test_empty_cell_is_an_error(counts, genes, tiny):
    empty = counts.tolil()
    empty[3, :] = 0
    with pytest.raises(InputError, match="cell #3"):
        cellplm.embed_cells(empty.tocsr(), genes, tiny, cpu())


def test_tiny_checkpoint_is_byte_identical_per_seed(genes, tiny, tmp_path):
    again = cellplm.write_tiny_checkpoint(tmp_path / "again", genes, seed=0)
    assert directory_hash(again) == directory_hash(tiny)
    assert directory_hash(cellplm.write_tiny_checkpoint(tmp_path / "other", genes, seed=1)) != directory_hash(tiny)


def test_reduced_precision_request_runs_fp32_and_says_so(counts, genes, tiny):
    """The sparse input layer has no bf16/fp16 CUDA kernel: CellPLM always runs fp32, recorded as such."""
    result = cellplm.embed_cells(counts, genes, tiny, cpu(precision="bf16"))
    assert (result.params["precision"], result.params["precision_requested"]) == ("fp32", "bf16")
    assert result.values.tobytes() == cellplm.embed_cells(counts, genes, tiny, cpu()).values.tobytes()
