"""CellPLM adapter: real loading and embedding on tiny random checkpoints in the released layout,
checked against the authors' own CellEmbeddingPipeline (load_pretrain + _inference)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from pertprobe.errors import InputError
from pertprobe.models import cellplm
from pertprobe.models.checkpoint import RunOptions, directory_hash
from pertprobe.testing import cellplm as tiny_cellplm
from pertprobe.testing.geneformer import synthetic_ensembl

pytest.importorskip("CellPLM")

N_CELLS, N_GENES = 40, 60
PREFIX = cellplm.RELEASED_PREFIX
BATCH = np.array(["b", "a", "c"])[np.arange(N_CELLS) % 3]  # interleaved batch labels


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
    """20231027_85M architecture: VAE latent (deterministic in eval mode)."""
    return tiny_cellplm.write_tiny_checkpoint(tmp_path_factory.mktemp("cellplm") / "ckpt", genes, seed=0)


@pytest.fixture(scope="module")
def tiny_gmvae(tmp_path_factory, genes) -> Path:
    """20230926_85M architecture: GMVAE latent (draws Gumbel noise in eval mode)."""
    return tiny_cellplm.write_tiny_checkpoint(tmp_path_factory.mktemp("cellplm") / "gmvae", genes, seed=0,
                                         latent_mod="gmvae")


@pytest.fixture
def tiny_copy(tiny, tmp_path) -> Path:
    return Path(shutil.copytree(tiny, tmp_path / "ckpt"))


def cpu(batch_size: int = 16, **kwargs) -> RunOptions:
    return RunOptions(device="cpu", batch_size=batch_size, **kwargs)


def upstream(counts, genes, checkpoint: Path, batch_size: int, batch: np.ndarray | None = None) -> np.ndarray:
    """The authors' CellEmbeddingPipeline on the same checkpoint (Ensembl var index, no conversion, seed 0)."""
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
    np.testing.assert_allclose(result.values, upstream(counts, genes, tiny, 16), rtol=0, atol=1e-5)
    n_file = len(torch.load(tiny / f"{PREFIX}.best.ckpt")["model_state_dict"])
    params = result.params
    assert params["pretraining_tensors_ignored"] > 0
    assert result.load.n_tensors == n_file - params["pretraining_tensors_ignored"]
    assert (params["latent_mod"], params["latent_dim"], params["n_genes_used"]) == ("vae", 16, 54)
    assert (result.coverage.n_genes, result.coverage.n_covered) == (N_GENES, 54)
    assert result.checkpoint_hash == directory_hash(tiny)


def test_groups_keep_cells_apart_and_rows_return_in_input_order(counts, genes, tiny):
    result = cellplm.embed_cells(counts, genes, tiny, cpu(batch_size=5), groups=BATCH)
    np.testing.assert_allclose(result.values, upstream(counts, genes, tiny, 5, BATCH), rtol=0, atol=1e-5)
    assert (result.params["grouping"], result.params["n_groups"]) == ("batch", 3)
    chunks = cellplm.chunks(cellplm.group_codes(BATCH, N_CELLS, "batch"), 5)
    assert [len(c) for c in chunks] == [5, 5, 3, 5, 5, 4, 5, 5, 3]
    assert all(len(set(BATCH[c])) == 1 for c in chunks)
    # Same chunks, other input order: the cells sorted by batch give the same rows, put back in place.
    order = np.argsort(BATCH, kind="stable")
    moved = cellplm.embed_cells(counts[order], genes, tiny, cpu(batch_size=5), groups=BATCH[order]).values
    np.testing.assert_array_equal(moved[np.argsort(order)], result.values)
    # A batch embedded alone gives its rows of the grouped run: other batches do not reach it.
    alone = cellplm.embed_cells(counts[BATCH == "a"], genes, tiny, cpu(batch_size=5)).values
    np.testing.assert_allclose(alone, result.values[BATCH == "a"], rtol=0, atol=1e-6)


def test_same_inputs_same_bytes_and_chunking_is_part_of_the_result(counts, genes, tiny):
    first = cellplm.embed_cells(counts, genes, tiny, cpu()).values
    assert first.tobytes() == cellplm.embed_cells(counts, genes, tiny, cpu()).values.tobytes()
    # Cells attend to the cells of their chunk: other chunks, other numbers.
    assert not np.allclose(first, cellplm.embed_cells(counts, genes, tiny, cpu(batch_size=7)).values)
    grouped = cellplm.embed_cells(counts, genes, tiny, cpu(), groups=BATCH)
    assert not np.allclose(first, grouped.values)
    ungrouped = cellplm.embed_cells(counts, genes, tiny, cpu(), groups=BATCH, grouping="none")
    assert ungrouped.values.tobytes() == first.tobytes() and ungrouped.params["n_groups"] == 1
    # batch_size 0 = whole groups (upstream's default) = one chunk of every cell here.
    whole = cellplm.embed_cells(counts, genes, tiny, cpu(batch_size=0)).values
    np.testing.assert_array_equal(whole, cellplm.embed_cells(counts, genes, tiny, cpu(batch_size=N_CELLS)).values)
    # The VAE latent returns its mean in eval mode: the seed does not matter.
    assert cellplm.embed_cells(counts, genes, tiny, cpu(seed=5)).values.tobytes() == first.tobytes()


def test_gmvae_draws_are_seeded_as_the_authors_pipeline_after_manual_seed(counts, genes, tiny_gmvae):
    result = cellplm.embed_cells(counts, genes, tiny_gmvae, cpu(batch_size=5), groups=BATCH)
    assert result.params["latent_mod"] == "gmvae"
    np.testing.assert_allclose(result.values, upstream(counts, genes, tiny_gmvae, 5, BATCH), rtol=0, atol=1e-5)
    again = cellplm.embed_cells(counts, genes, tiny_gmvae, cpu(batch_size=5), groups=BATCH).values
    assert again.tobytes() == result.values.tobytes()
    other = cellplm.embed_cells(counts, genes, tiny_gmvae, cpu(batch_size=5, seed=1), groups=BATCH).values
    assert not np.allclose(other, result.values)


def test_reduced_precision_request_runs_fp32_and_says_so(counts, genes, tiny):
    """The sparse input layer has no bf16/fp16 CUDA kernel: CellPLM always runs fp32, recorded as such."""
    result = cellplm.embed_cells(counts, genes, tiny, cpu(precision="bf16"))
    assert (result.params["precision"], result.params["precision_requested"]) == ("fp32", "bf16")
    assert result.values.tobytes() == cellplm.embed_cells(counts, genes, tiny, cpu()).values.tobytes()


def test_registry_passes_groups_and_model_options(counts, genes, tiny):
    from pertprobe.models.adapters import UnknownModelOption, run

    result = run("cellplm", "cells", genes, tiny, cpu(batch_size=5), counts=counts, groups=pd.Series(BATCH),
                 prefix=PREFIX)
    assert result.params["n_groups"] == 3
    with pytest.raises(UnknownModelOption, match="accepted: prefix, grouping"):
        run("cellplm", "cells", genes, tiny, cpu(), counts=counts, batch_key="batch")


# Checkpoint errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".config.json", ".best.ckpt"])
def test_missing_file_is_named(counts, genes, tiny_copy, suffix):
    (tiny_copy / f"{PREFIX}{suffix}").unlink()
    with pytest.raises(InputError, match="required file is missing") as err:
        cellplm.embed_cells(counts, genes, tiny_copy, cpu())
    assert str(err.value).startswith(str(tiny_copy / f"{PREFIX}{suffix}"))


def test_empty_directory_says_what_belongs_there(counts, genes, tmp_path):
    with pytest.raises(InputError, match=f"none.*{PREFIX}.config.json"):
        cellplm.embed_cells(counts, genes, tmp_path, cpu())


def test_two_checkpoints_need_a_prefix(counts, genes, tiny_copy):
    for suffix in (".config.json", ".best.ckpt"):
        shutil.copy(tiny_copy / f"{PREFIX}{suffix}", tiny_copy / f"20230926_85M{suffix}")
    with pytest.raises(InputError, match="prefix="):
        cellplm.embed_cells(counts, genes, tiny_copy, cpu())
    result = cellplm.embed_cells(counts, genes, tiny_copy, cpu(), prefix="20230926_85M")
    assert result.params["prefix"] == "20230926_85M"


@pytest.mark.parametrize("damage", ["rename", "reshape", "drop", "extra", "no_state_dict", "truncate"])
def test_damaged_weights_fail_strictly(counts, genes, tiny_copy, damage):
    path = tiny_copy / f"{PREFIX}.best.ckpt"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:2000])
    else:
        state = torch.load(path)["model_state_dict"]
        key = next(k for k in state if k.startswith("encoder."))
        if damage == "rename":
            state[key.replace("encoder.", "encoder_v2.", 1)] = state.pop(key)
        elif damage == "reshape":
            state[key] = torch.zeros(tuple(s + 1 for s in state[key].shape))
        elif damage == "drop":
            del state[key]
        elif damage == "extra":
            state["head.mlp.0.weight"] = torch.zeros(2, 2)
        torch.save(state if damage == "no_state_dict" else {"model_state_dict": state}, path)
    expected = {"rename": "1 missing.*1 unexpected", "reshape": "other shapes", "drop": "missing",
                "extra": "unexpected .*head.mlp.0.weight", "no_state_dict": "model_state_dict",
                "truncate": "cannot be read"}[damage]
    with pytest.raises(InputError, match=expected) as err:
        cellplm.embed_cells(counts, genes, tiny_copy, cpu())
    assert str(path) in str(err.value) and "Fix:" in str(err.value)


def test_pretraining_decoder_tensors_are_optional(counts, genes, tiny, tiny_copy):
    path = tiny_copy / f"{PREFIX}.best.ckpt"
    state = torch.load(path)["model_state_dict"]
    torch.save({"model_state_dict": {k: v for k, v in state.items() if not k.startswith("decoder.")}}, path)
    result = cellplm.embed_cells(counts, genes, tiny_copy, cpu())
    assert result.params["pretraining_tensors_ignored"] == 0
    assert result.values.tobytes() == cellplm.embed_cells(counts, genes, tiny, cpu()).values.tobytes()


@pytest.mark.parametrize("edit", ["no_gene_list", "bad_encoder"])
def test_bad_config_is_refused_naming_the_file(counts, genes, tiny_copy, edit):
    path = tiny_copy / f"{PREFIX}.config.json"
    config = json.loads(path.read_text())
    if edit == "no_gene_list":
        del config["gene_list"]
    else:
        config["enc_mod"] = "lstm"
    path.write_text(json.dumps(config))
    with pytest.raises(InputError, match="gene_list" if edit == "no_gene_list" else "does not build") as err:
        cellplm.embed_cells(counts, genes, tiny_copy, cpu())
    assert str(path) in str(err.value)


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "CellPLM.model", None)
    with pytest.raises(InputError, match="pip install --no-deps cellplm==0.1.0.post2 einops"):
        cellplm._omicsformer()


# Genes and cells ---------------------------------------------------------------------------------

def test_coverage_below_the_minimum_fails_with_the_fix(counts, genes, tiny):
    with pytest.raises(InputError, match="54/60"):
        cellplm.embed_cells(counts, genes, tiny, cpu(min_coverage=0.95))
    with pytest.raises(InputError, match="gene-id-map"):  # symbols only: no Ensembl ID to match
        cellplm.embed_cells(counts, genes.assign(ensembl=""), tiny, cpu())


def test_empty_cell_is_an_error(counts, genes, tiny):
    empty = counts.tolil()
    empty[3, :] = 0
    with pytest.raises(InputError, match="cell #3"):
        cellplm.embed_cells(empty.tocsr(), genes, tiny, cpu())


def test_bad_grouping_and_missing_batch_labels_are_errors(counts, genes, tiny):
    with pytest.raises(InputError, match="grouping"):
        cellplm.embed_cells(counts, genes, tiny, cpu(), groups=BATCH, grouping="dataset")
    labels = pd.Series(BATCH, dtype=object)
    labels[2] = None
    with pytest.raises(InputError, match="no batch label"):
        cellplm.embed_cells(counts, genes, tiny, cpu(), groups=labels)


def test_tiny_checkpoint_is_byte_identical_per_seed(genes, tiny, tmp_path):
    again = tiny_cellplm.write_tiny_checkpoint(tmp_path / "again", genes, seed=0)
    assert directory_hash(again) == directory_hash(tiny)
    assert directory_hash(tiny_cellplm.write_tiny_checkpoint(tmp_path / "other", genes, seed=1)) != directory_hash(tiny)
    config = json.loads((tiny / f"{PREFIX}.config.json").read_text())
    assert len(config["gene_list"]) == 54 + 2 and "head_type" not in config  # pre-training model, decoder saved
    assert (config["enc_mod"], config["latent_mod"], config["dec_mod"], config["norm"]) == \
        ("flowformer", "vae", "nbmlp", "groupnorm")
