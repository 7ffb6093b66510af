"""scGPT adapter: released layout, strict loading, binning, `<cls>` embeddings on tiny random checkpoints."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from pertprobe.errors import InputError
from pertprobe.models import scgpt
from pertprobe.models.checkpoint import RunOptions
from pertprobe.testing import scgpt as tiny_scgpt

torch.set_num_threads(1)
GENES = [f"G{i:02d}" for i in range(60)]


@pytest.fixture(scope="module")
def genes() -> pd.DataFrame:
    return pd.DataFrame({"symbol": GENES, "ensembl": ""}, index=GENES)


@pytest.fixture(scope="module")
def counts() -> sp.csr_matrix:
    return sp.csr_matrix(np.random.default_rng(0).poisson(1.0, (30, 60)).astype(np.float32))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, genes):
    return tiny_scgpt.write_tiny_checkpoint(tmp_path_factory.mktemp("scgpt") / "m", genes, seed=0)


def test_cls_embeddings_are_unit_norm_finite_and_deterministic(ckpt, genes, counts):
    first = scgpt.embed_cells(counts, genes, ckpt, RunOptions(batch_size=7))
    second = scgpt.embed_cells(counts, genes, ckpt, RunOptions(batch_size=7))
    assert first.values.shape == (30, 32) and np.isfinite(first.values).all()
    np.testing.assert_allclose(np.linalg.norm(first.values, axis=1), 1.0, atol=1e-6)
    assert first.values.tobytes() == second.values.tobytes()
    assert first.load.n_tensors == 33 and first.params["unused_head_tensors"] == 15
    assert first.checkpoint_hash.startswith("sha256:") and first.coverage.fraction == 1.0
    assert len({tuple(np.round(v, 5)) for v in first.values}) == 30  # cells differ


def test_flash_attention_checkpoint_gives_identical_embeddings(tmp_path, genes, counts, ckpt):
    flash = tiny_scgpt.write_tiny_checkpoint(tmp_path / "flash", genes, seed=0, flash_attention_keys=True)
    assert any("Wqkv" in k for k in torch.load(flash / scgpt.WEIGHTS, weights_only=True))
    a = scgpt.embed_cells(counts, genes, ckpt, RunOptions())
    b = scgpt.embed_cells(counts, genes, flash, RunOptions())
    assert a.values.tobytes() == b.values.tobytes() and len(b.load.renamed) == 4


def test_binning_matches_a_hand_computed_example():
    # edges = quantiles (0, 1/3, 2/3, 1) of 1..5 = 1, 2.33, 3.67, 5; 1 and 5 sit on edges -> (0,1] and (3,4]
    binned = scgpt.binning(np.array([1.0, 2, 3, 4, 5]), 5, np.random.default_rng(0))
    assert binned.tolist() == [1, 1, 2, 3, 4]
    many = scgpt.binning(np.arange(1, 101, dtype=float), 51, np.random.default_rng(1))
    assert many.min() == 1 and many.max() == 50 and (np.diff(many) >= 0).all()


def test_genes_outside_the_vocabulary_never_change_the_embedding(tmp_path, genes, counts):
    partial = tiny_scgpt.write_tiny_checkpoint(tmp_path / "p", genes, seed=0, coverage=0.8)
    result = scgpt.embed_cells(counts, genes, partial, RunOptions())
    assert result.coverage.n_covered == 48 and result.coverage.fraction == pytest.approx(0.8)
    vocab = scgpt.read_vocab(partial, scgpt.read_config(partial))
    outside = np.array([g not in vocab for g in GENES])
    noisy = counts.toarray()
    noisy[:, outside] += 7
    again = scgpt.embed_cells(sp.csr_matrix(noisy), genes, partial, RunOptions())
    assert again.values.tobytes() == result.values.tobytes()
    with pytest.raises(InputError, match="covers 48/60"):
        scgpt.embed_cells(counts, genes, partial, RunOptions(min_coverage=0.9))


def test_long_cells_are_sampled_to_max_length_with_cls_first(ckpt, genes, counts):
    config = scgpt.read_config(ckpt)
    token = np.arange(3, 63)
    ids, values = scgpt.cell_tokens(counts, token, 0, config, 10, 1, seed=0)
    again = scgpt.cell_tokens(counts, token, 0, config, 10, 1, seed=0)
    assert len(ids) == 10 and ids[0] == 1 and values[0] == -2 and (ids == again[0]).all()
    expressed = set(token[counts[0].indices[counts[0].data > 0]])
    assert set(ids[1:]) <= expressed and (values[1:] >= 1).all()
    short = scgpt.embed_cells(counts, genes, ckpt, RunOptions(), max_length=10)
    assert short.params["max_length"] == 10 and np.isfinite(short.values).all()


def test_gene_embeddings_are_the_gene_encoder_output(ckpt, genes):
    result = scgpt.embed_genes(genes, ckpt, RunOptions())
    state = torch.load(ckpt / scgpt.WEIGHTS, weights_only=True)
    vocab = scgpt.read_vocab(ckpt, scgpt.read_config(ckpt))
    rows = state["encoder.embedding.weight"][[vocab[g] for g in GENES]]
    expected = torch.nn.functional.layer_norm(rows, (32,), state["encoder.enc_norm.weight"],
                                              state["encoder.enc_norm.bias"])
    np.testing.assert_allclose(result.values, expected.numpy(), atol=1e-6)
    assert result.index == GENES


@pytest.mark.parametrize("damage", ["remove", "rename", "reshape", "truncate", "missing_file", "bad_args"])
def test_damaged_checkpoints_fail_with_the_file_and_the_fix(tmp_path, genes, counts, damage):
    path = tiny_scgpt.write_tiny_checkpoint(tmp_path / "m", genes, seed=0)
    weights = path / scgpt.WEIGHTS
    state = torch.load(weights, weights_only=True)
    if damage == "remove":
        state.pop("transformer_encoder.layers.1.linear2.weight")
    elif damage == "rename":
        state["transformer_encoder.layers.1.extra.weight"] = state.pop("transformer_encoder.layers.1.linear2.weight")
    elif damage == "reshape":
        state["value_encoder.linear1.weight"] = torch.zeros(32, 2)
    if damage in {"remove", "rename", "reshape"}:
        torch.save(state, weights)
    elif damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:500])
    elif damage == "missing_file":
        (path / scgpt.VOCAB).unlink()
    else:
        (path / scgpt.ARGS).write_text('{"embsize": 32}')
    with pytest.raises(InputError) as err:
        scgpt.embed_cells(counts, genes, path, RunOptions())
    message = str(err.value)
    assert "Fix:" in message
    expected = {"remove": "1 missing", "rename": "unexpected", "reshape": "other shapes", "truncate": "cannot be read",
                "missing_file": "vocab.json", "bad_args": "nheads"}[damage]
    assert expected in message
