"""UCE adapter: real loading and embedding on tiny random checkpoints in the released layout."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from pertprobe.errors import InputError
from pertprobe.models import uce
from pertprobe.models.checkpoint import RunOptions, directory_hash
from pertprobe.testing import uce as tiny_uce

N_CELLS, N_GENES = 30, 60
FAST = {"sample_size": 64}  # short sentences keep the tests quick; the default (1024) runs once


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def genes() -> pd.DataFrame:
    names = [f"GENE{i}" for i in range(N_GENES)]
    return pd.DataFrame({"symbol": [n.lower() if i % 7 == 0 else n for i, n in enumerate(names)], "ensembl": ""},
                        index=names)


@pytest.fixture(scope="module")
def counts() -> sp.csr_matrix:
    return sp.csr_matrix(np.random.default_rng(0).poisson(1.0, size=(N_CELLS, N_GENES)).astype(np.float32))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, genes) -> Path:
    return tiny_uce.write_tiny_checkpoint(tmp_path_factory.mktemp("uce") / "model_files", genes, seed=0)


@pytest.fixture
def tiny_copy(tiny, tmp_path) -> Path:
    return Path(shutil.copytree(tiny, tmp_path / "model_files"))


def cpu(batch_size: int = 7, **kwargs) -> RunOptions:
    return RunOptions(device="cpu", batch_size=batch_size, **kwargs)


# Embeddings ----------------------------------------------------------------------------------------

def test_embeddings_have_one_unit_norm_row_per_cell_and_report_the_load(counts, genes, tiny):
    result = uce.embed_cells(counts, genes, tiny, cpu())
    assert result.values.shape == (N_CELLS, 16) and result.values.dtype == np.float32
    assert np.isfinite(result.values).all()
    np.testing.assert_allclose(np.linalg.norm(result.values, axis=1), 1.0, atol=1e-5)
    state = torch.load(tiny / "4layer_model.torch", weights_only=True)
    assert result.load.n_tensors == len(state)
    assert result.checkpoint_hash == directory_hash(tiny)
    assert result.params["nlayers"] == 2 and result.params["nhead"] == 2 and result.params["d_model"] == 32
    assert result.params["sample_size"] == 1024 and result.params["sentence_length"] == 1 + 1024 + 2 * 3
    assert result.params["token_table"] == "checkpoint" and result.params["chrom_token_offset"] == 4 + N_GENES
    assert result.coverage.fraction == 1.0  # lower-case symbols match upper-case ones


def test_two_runs_give_identical_bytes_and_the_seed_matters(counts, genes, tiny):
    first = uce.embed_cells(counts, genes, tiny, cpu(), **FAST).values
    second = uce.embed_cells(counts, genes, tiny, cpu(), **FAST).values
    assert first.tobytes() == second.tobytes()
    assert not np.array_equal(first, uce.embed_cells(counts, genes, tiny, cpu(seed=1), **FAST).values)


def test_sampling_and_embeddings_do_not_depend_on_the_batch_size(counts, genes, tiny):
    """Each cell's sentence is drawn from its own seeded generator, so the batch size changes nothing but
    the float rounding of batched matrix products (kernel choice varies with the batch shape); a
    sentence that changed with the batch would move its embedding by ~0.1, not 1e-7."""
    small = uce.embed_cells(counts, genes, tiny, cpu(batch_size=2), **FAST).values
    large = uce.embed_cells(counts, genes, tiny, cpu(batch_size=7), **FAST).values
    np.testing.assert_allclose(small, large, rtol=0, atol=1e-5)


def test_tiny_checkpoint_is_deterministic_bytes(genes, tiny, tmp_path):
    again = tiny_uce.write_tiny_checkpoint(tmp_path / "again", genes, seed=0)
    assert directory_hash(again) == directory_hash(tiny)
    assert directory_hash(tiny_uce.write_tiny_checkpoint(tmp_path / "other", genes, seed=1)) != directory_hash(tiny)


def test_state_dict_keys_follow_upstream_transformer_model(tiny):
    state = torch.load(tiny / "4layer_model.torch", weights_only=True)
    prefixes = {k.split(".")[0] for k in state}
    assert prefixes == {"pos_encoder", "encoder", "transformer_encoder", "decoder", "binary_decoder",
                        "gene_embedding_layer", "pe_embedding"}
    arch = uce.infer_architecture(state, tiny)
    assert (arch.token_dim, arch.d_model, arch.d_hid, arch.nlayers, arch.output_dim, arch.decoder_hidden) == \
        (16, 32, 64, 2, 16, 32)
    assert arch.binary_widths == (16 + 32, 32, 16, 8) and arch.max_len == 1536
    torch.testing.assert_close(state["pos_encoder.pe"], uce.sinusoidal_positions(1536, 32))


def test_padding_is_masked_out_of_attention(tiny):
    state = torch.load(tiny / "4layer_model.torch", weights_only=True)
    arch = uce.infer_architecture(state, tiny)
    model = uce.build_model(arch, nhead=2)
    model.load_state_dict(state)
    model.eval()
    sentence = torch.tensor([[uce.CLS_TOKEN, 64, 10, 12, uce.CHROM_CLOSE_TOKEN, 65, 30, uce.CHROM_CLOSE_TOKEN]])
    padded = torch.nn.functional.pad(sentence, (0, 9), value=uce.PAD_TOKEN)
    with torch.no_grad():
        alone = uce.cell_embeddings(model, sentence, torch.tensor([8]), arch.d_model)
        with_padding = uce.cell_embeddings(model, padded, torch.tensor([8]), arch.d_model)
        attended = uce.cell_embeddings(model, padded, torch.tensor([17]), arch.d_model)
    torch.testing.assert_close(alone, with_padding, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(alone, attended, atol=1e-3)


# Strict loading and required files -----------------------------------------------------------------

def _edit_weights(directory: Path, edit) -> None:
    path = directory / "4layer_model.torch"
    state = torch.load(path, weights_only=True)
    edit(state)
    torch.save(state, path)


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop("transformer_encoder.layers.1.linear2.bias"), "1 missing"),
    (lambda s: s.__setitem__("decoder.2.1.scale", s.pop("decoder.2.1.weight")), "1 unexpected"),
    (lambda s: s.pop("encoder.0.weight"), "'encoder.0.weight' is missing"),
])
def test_a_removed_or_renamed_tensor_fails_strict_loading(counts, genes, tiny_copy, edit, message):
    _edit_weights(tiny_copy, edit)
    with pytest.raises(InputError, match=message) as err:
        uce.embed_cells(counts, genes, tiny_copy, cpu(), **FAST)
    assert "4layer_model.torch" in str(err.value)


def test_a_truncated_weights_file_is_reported(counts, genes, tiny_copy):
    path = tiny_copy / "4layer_model.torch"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError, match="cannot be read"):
        uce.embed_cells(counts, genes, tiny_copy, cpu(), **FAST)


@pytest.mark.parametrize("name", ["species_chrom.csv", "all_tokens.torch", "species_offsets.pkl",
                                  "protein_embeddings/Homo_sapiens.GRCh38.gene_symbol_to_embedding_ESM2.pt"])
def test_a_missing_required_file_is_named(counts, genes, tiny_copy, name):
    (tiny_copy / name).unlink()
    with pytest.raises(InputError, match="required file is missing") as err:
        uce.embed_cells(counts, genes, tiny_copy, cpu(), **FAST)
    assert name.split("/")[-1] in str(err.value)


def test_the_weights_file_is_found_or_named(counts, genes, tiny_copy):
    (tiny_copy / "4layer_model.torch").rename(tiny_copy / "33l_8ep_1024t_1280.torch")
    assert uce.embed_cells(counts, genes, tiny_copy, cpu(), **FAST).params["weights"] == "33l_8ep_1024t_1280.torch"
    shutil.copy(tiny_copy / "33l_8ep_1024t_1280.torch", tiny_copy / "4layer_model.torch")
    with pytest.raises(InputError, match="expected one model"):
        uce.embed_cells(counts, genes, tiny_copy, cpu(), **FAST)
    chosen = uce.embed_cells(counts, genes, tiny_copy, cpu(), weights="4layer_model.torch", **FAST)
    assert chosen.params["weights"] == "4layer_model.torch"
    (tiny_copy / "4layer_model.torch").unlink()
    (tiny_copy / "33l_8ep_1024t_1280.torch").unlink()
    with pytest.raises(InputError, match="found none"):
        uce.embed_cells(counts, genes, tiny_copy, cpu(), **FAST)


def test_heads_that_do_not_divide_the_width_are_refused(counts, genes, tiny):
    with pytest.raises(InputError, match="does not divide"):
        uce.embed_cells(counts, genes, tiny, cpu(), nhead=3, **FAST)
    assert uce.default_nhead(1280) == 20 and uce.default_nhead(32) == 2


def test_a_token_file_of_another_size_replaces_the_checkpoint_table(counts, genes, tiny_copy):
    reference = uce.embed_cells(counts, genes, tiny_copy, cpu(), **FAST)
    table = torch.load(tiny_copy / "all_tokens.torch", weights_only=True)
    # the same rows plus one unused row: all_tokens.torch is used and gives the same embeddings
    torch.save(torch.vstack([table, torch.zeros(1, table.shape[1])]), tiny_copy / "all_tokens.torch")
    result = uce.embed_cells(counts, genes, tiny_copy, cpu(), chrom_token_offset=4 + N_GENES, **FAST)
    assert result.params["token_table"] == "all_tokens.torch"
    np.testing.assert_array_equal(result.values, reference.values)
    torch.save(table[:-2].clone(), tiny_copy / "all_tokens.torch")  # chromosome rows lost: tokens no longer fit
    with pytest.raises(InputError, match="do not fit"):
        uce.embed_cells(counts, genes, tiny_copy, cpu(), **FAST)


# Gene coverage -------------------------------------------------------------------------------------

def test_coverage_is_the_fraction_of_genes_with_a_protein_embedding(counts, genes, tmp_path):
    partial = tiny_uce.write_tiny_checkpoint(tmp_path / "partial", genes, seed=0, coverage=0.8)
    result = uce.embed_cells(counts, genes, partial, cpu(min_coverage=0.8), **FAST)
    assert result.coverage.fraction == 0.8 and result.coverage.n_covered == 48
    with pytest.raises(InputError, match="below the minimum"):
        uce.embed_cells(counts, genes, partial, cpu(min_coverage=0.81), **FAST)


def test_tokens_follow_the_protein_file_order_and_chromosome_codes_span_all_species(tmp_path):
    directory = tmp_path / "m"
    (directory / "protein_embeddings").mkdir(parents=True)
    torch.save({"Bbb": torch.zeros(2), "aaa": torch.zeros(2), "AAA": torch.ones(2), "Ccc": torch.zeros(2)},
               directory / "protein_embeddings" / uce.PROTEIN_EMBEDDING_FILES["human"])
    with (directory / "species_offsets.pkl").open("wb") as handle:
        pickle.dump({"mouse": 4, "human": 10}, handle)
    pd.DataFrame({"gene_symbol": ["AAA", "BBB", "CCC", "ZZZ"], "species": ["human", "human", "human", "mouse"],
                  "chromosome": ["2", "10", "X", "1"], "start": [5, 7, 9, 1]}).to_csv(directory / "species_chrom.csv")
    genes = pd.DataFrame({"symbol": ["ccc", "AAA", "", "BBB", "ZZZ"]}, index=list("abcde"))
    vocab = uce.gene_tokens(genes, directory, "human", uce.PROTEIN_EMBEDDING_FILES["human"])
    # 'aaa'/'AAA' collapse to one symbol at its first position: BBB -> 0, AAA -> 1, CCC -> 2 (+ offset 10)
    np.testing.assert_array_equal(vocab.token, [12, 11, -1, 10, -1])
    # categories sorted over every species: human_10, human_2, human_X, mouse_1
    np.testing.assert_array_equal(vocab.chrom, [2, 1, -1, 0, -1])
    assert vocab.n_chrom_codes == 4


# Preprocessing against its definition ---------------------------------------------------------------

def test_sentence_is_cls_then_chromosomes_in_the_given_order_with_genes_by_start():
    tokens = np.array([20, 21, 22, 23, 24, 22])
    chroms = np.array([5, 1, 5, 1, 5, 5])
    starts = np.array([300.0, 50.0, 100.0, 10.0, 200.0, 100.0])
    sentence = uce.build_sentence(tokens, chroms, starts, np.array([5, 1]), chrom_token_offset=1000)
    expected = [uce.CLS_TOKEN, 1005, 22, 22, 24, 20, uce.CHROM_CLOSE_TOKEN, 1001, 23, 21, uce.CHROM_CLOSE_TOKEN]
    np.testing.assert_array_equal(sentence, expected)


def test_genes_are_drawn_in_proportion_to_log1p_counts_and_zero_counts_never():
    # log1p(1) : log1p(7) = ln 2 : 3 ln 2, so the second gene takes 3/4 of the draws
    draws = uce.sample_sentence(np.array([1.0, 7.0]), np.array([10, 11]), np.array([0, 0]), np.array([1.0, 2.0]),
                                np.random.default_rng(0), sample_size=20000, chrom_token_offset=100)
    genes = draws[2:-1]
    assert abs(np.mean(genes == 11) - 0.75) < 0.01
    matrix = sp.csr_matrix(np.array([[0, 3, 0, 1], [2, 0, 0, 5]], dtype=np.float32))
    matrix.data[0] = 0.0  # an explicitly stored zero is not a count either
    vocab = uce.GeneTokens(token=np.array([10, 11, 12, 13]), chrom=np.array([0, 1, 0, 1]),
                           start=np.array([1.0, 2.0, 3.0, 4.0]), n_chrom_codes=2)
    sentences, lengths = uce.sentences(matrix, vocab, slice(0, 2), seed=0, sample_size=200, length=210,
                                       chrom_token_offset=100)
    assert set(sentences[0, : lengths[0]]) == {uce.CLS_TOKEN, uce.CHROM_CLOSE_TOKEN, 101, 13}
    assert set(sentences[1, : lengths[1]]) == {uce.CLS_TOKEN, uce.CHROM_CLOSE_TOKEN, 100, 101, 10, 13}
    assert (sentences[0, lengths[0]:] == uce.PAD_TOKEN).all() and lengths[1] == 1 + 200 + 2 * 2


def test_a_cells_sentence_depends_only_on_the_seed_and_its_index():
    matrix = sp.csr_matrix(np.random.default_rng(3).poisson(2.0, size=(5, 8)).astype(np.float32))
    vocab = uce.GeneTokens(token=np.arange(8) + 4, chrom=np.arange(8) % 3, start=np.arange(8.0), n_chrom_codes=3)
    whole, _ = uce.sentences(matrix, vocab, slice(0, 5), seed=4, sample_size=30, length=37, chrom_token_offset=50)
    tail, _ = uce.sentences(matrix, vocab, slice(3, 5), seed=4, sample_size=30, length=37, chrom_token_offset=50)
    np.testing.assert_array_equal(whole[3:], tail)


def test_cells_without_usable_counts_are_refused(counts, genes, tiny):
    empty = counts.tolil()
    empty[4, :] = 0
    with pytest.raises(InputError, match="no counts"):
        uce.embed_cells(empty.tocsr(), genes, tiny, cpu(), **FAST)
    with pytest.raises(InputError, match="no counts"):  # every gene filtered out
        uce.embed_cells(counts, genes, tiny, cpu(), filter_min_cells=N_CELLS + 1, **FAST)


def test_sentences_longer_than_pad_length_are_refused(counts, genes, tiny):
    with pytest.raises(InputError, match="more than pad_length"):
        uce.embed_cells(counts, genes, tiny, cpu(), sample_size=1024, pad_length=1030)
    with pytest.raises(InputError, match="exceeds the checkpoint"):
        uce.embed_cells(counts, genes, tiny, cpu(), pad_length=2048, **FAST)
