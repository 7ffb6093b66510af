"""Geneformer adapter: tiny random checkpoints in the released layout through the real loading,
rank-value encoding and embedding code."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from pertprobe.errors import InputError
from pertprobe.models import geneformer as gf
from pertprobe.models.checkpoint import RunOptions, directory_hash
from pertprobe.testing import geneformer as tiny_geneformer

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
from safetensors.torch import load_file, save_file  # noqa: E402

N_CELLS, N_GENES = 30, 60
OPTIONS = RunOptions(device="cpu", batch_size=8, seed=0)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def genes() -> pd.DataFrame:
    """Symbol-only dataset genes (Ensembl IDs come from the checkpoint's gene name dictionary)."""
    names = [f"GENE{i}" for i in range(N_GENES)]
    return pd.DataFrame({"symbol": names, "ensembl": [""] * N_GENES}, index=names)


@pytest.fixture(scope="module")
def counts() -> sp.csr_matrix:
    return sp.csr_matrix(np.random.default_rng(0).poisson(1.5, size=(N_CELLS, N_GENES)).astype(np.float32))


@pytest.fixture(scope="module")
def v2(tmp_path_factory, genes) -> Path:
    return tiny_geneformer.write_tiny_checkpoint(tmp_path_factory.mktemp("v2"), genes)


@pytest.fixture(scope="module")
def v1(tmp_path_factory, genes) -> Path:
    return tiny_geneformer.write_tiny_checkpoint(tmp_path_factory.mktemp("v1"), genes, version=1, num_hidden_layers=3)


def copy_of(checkpoint: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(checkpoint, tmp_path / "ckpt"))


# ------------------------------------------------------------------ layout, versions, determinism


def test_tiny_checkpoint_layout_and_bytes_are_deterministic(tmp_path, genes, v2, v1):
    assert {p.name for p in v2.iterdir()} == {"config.json", "model.safetensors", "token_dictionary_gc104M.pkl",
                                              "gene_median_dictionary_gc104M.pkl", "gene_name_id_dict_gc104M.pkl",
                                              "ensembl_mapping_dict_gc104M.pkl"}
    assert (v1 / "token_dictionary_gc30M.pkl").is_file() and (v1 / "gene_median_dictionary_gc30M.pkl").is_file()
    again = tiny_geneformer.write_tiny_checkpoint(tmp_path / "again", genes)
    assert directory_hash(again) == directory_hash(v2)
    other_seed = tiny_geneformer.write_tiny_checkpoint(tmp_path / "seed1", genes, seed=1)
    assert directory_hash(other_seed) != directory_hash(v2)


def test_v1_and_v2_special_tokens(v1, v2):
    d1, d2 = gf.load_dictionaries(v1), gf.load_dictionaries(v2)
    assert d2.version == 2 and {"<pad>", "<mask>", "<cls>", "<eos>"} <= set(d2.tokens)
    assert d1.version == 1 and "<cls>" not in d1.tokens and "<eos>" not in d1.tokens
    cells = [np.array([11, 12, 13]), np.array([14])]
    e2 = gf.build_encoder(gf.load_model(v2, torch.device("cpu"))[0], d2, -1, None, v2 / "config.json")
    ids, attention, gene_pos = e2.inputs(cells)
    cls, eos, pad = d2.tokens["<cls>"], d2.tokens["<eos>"], d2.tokens["<pad>"]
    np.testing.assert_array_equal(ids, [[cls, 11, 12, 13, eos], [cls, 14, eos, pad, pad]])
    np.testing.assert_array_equal(attention, [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    np.testing.assert_array_equal(gene_pos, [[0, 1, 1, 1, 0], [0, 1, 0, 0, 0]])
    assert e2.max_length == 4096 and e2.n_genes == 4094
    e1 = gf.build_encoder(gf.load_model(v1, torch.device("cpu"))[0], d1, -1, None, v1 / "config.json")
    ids, attention, gene_pos = e1.inputs(cells)
    np.testing.assert_array_equal(ids, [[11, 12, 13], [14, d1.tokens["<pad>"], d1.tokens["<pad>"]]])
    np.testing.assert_array_equal(gene_pos, attention.astype(bool))
    assert e1.max_length == 2048 and e1.n_genes == 2048


def test_cell_embeddings_shape_finite_deterministic(counts, genes, v2, v1):
    a = gf.embed_cells(counts, genes, v2, OPTIONS)
    b = gf.embed_cells(counts, genes, v2, OPTIONS)
    assert a.values.shape == (N_CELLS, 32) and a.values.dtype == np.float32
    assert np.isfinite(a.values).all()
    assert a.values.tobytes() == b.values.tobytes()
    assert a.load.n_tensors > 0 and a.checkpoint_hash == directory_hash(v2)
    assert a.params["version"] == "V2" and a.params["pooling"] == "mean" and a.params["max_length"] == 4096
    c = gf.embed_cells(counts, genes, v1, OPTIONS)
    assert c.values.shape == (N_CELLS, 32) and np.isfinite(c.values).all() and c.params["version"] == "V1"


def test_batch_size_and_cell_order_do_not_change_a_cells_embedding(counts, genes, v2):
    a = gf.embed_cells(counts, genes, v2, OPTIONS).values
    b = gf.embed_cells(counts, genes, v2, RunOptions(device="cpu", batch_size=3)).values
    np.testing.assert_allclose(a, b, atol=1e-5)
    reverse = np.arange(N_CELLS)[::-1]
    c = gf.embed_cells(counts[reverse], genes, v2, OPTIONS).values
    np.testing.assert_allclose(c, a[reverse], atol=1e-5)


def test_mean_pooling_is_the_gene_token_mean_of_the_second_to_last_layer(counts, genes, v2):
    """emb_layer=-1 is hidden_states[n_layers - 1] of the full model; <cls>/<eos>/padding are left out."""
    from transformers import BertForMaskedLM

    got = gf.embed_cells(counts, genes, v2, OPTIONS)
    dicts = gf.load_dictionaries(v2)
    mapped = gf.map_genes(genes, dicts)
    cells = gf.rank_value_encode(counts, mapped.token, mapped.median, n_genes=4094)
    model = BertForMaskedLM.from_pretrained(str(v2), local_files_only=True).eval()
    for i in (0, 7):
        ids = torch.tensor([[dicts.tokens["<cls>"], *cells[i], dicts.tokens["<eos>"]]])
        with torch.no_grad():
            hidden = model(input_ids=ids, output_hidden_states=True).hidden_states
        assert len(hidden) == 3  # embeddings + 2 layers
        np.testing.assert_allclose(got.values[i], hidden[1][0, 1:-1].mean(0).numpy(), atol=1e-5)
        last = gf.embed_cells(counts[i:i + 1], genes, v2, OPTIONS, emb_layer=0).values[0]
        np.testing.assert_allclose(last, hidden[2][0, 1:-1].mean(0).numpy(), atol=1e-5)
        cls = gf.embed_cells(counts[i:i + 1], genes, v2, OPTIONS, pooling="cls").values[0]
        np.testing.assert_allclose(cls, hidden[1][0, 0].numpy(), atol=1e-5)


def test_cls_and_mean_pooling_differ_and_cls_needs_v2(counts, genes, v1, v2):
    mean = gf.embed_cells(counts, genes, v2, OPTIONS)
    cls = gf.embed_cells(counts, genes, v2, OPTIONS, pooling="cls")
    assert cls.params["pooling"] == "cls" and np.isfinite(cls.values).all()
    assert not np.allclose(mean.values, cls.values, atol=1e-3)
    with pytest.raises(InputError, match="pooling"):
        gf.embed_cells(counts, genes, v1, OPTIONS, pooling="cls")
    with pytest.raises(InputError, match="pooling"):
        gf.embed_cells(counts, genes, v2, OPTIONS, pooling="max")


def test_layer_and_length_options(counts, genes, v2):
    last = gf.embed_cells(counts, genes, v2, OPTIONS, emb_layer=0)
    assert last.params["hidden_state_index"] == 2
    assert not np.allclose(last.values, gf.embed_cells(counts, genes, v2, OPTIONS).values, atol=1e-3)
    short = gf.embed_cells(counts, genes, v2, OPTIONS, max_length=8)
    assert short.params["max_length"] == 8 and np.isfinite(short.values).all()
    for bad in ({"emb_layer": -3}, {"emb_layer": 1}, {"emb_layer": "last"}, {"max_length": 5000}, {"max_length": 2}):
        with pytest.raises(InputError, match=next(iter(bad))):
            gf.embed_cells(counts, genes, v2, OPTIONS, **bad)


# ------------------------------------------------------------------ rank-value encoding by hand


def test_rank_value_encoding_hand_computed():
    """Totals over all genes (an out-of-vocabulary gene included), x 10,000, / median, descending."""
    counts = sp.csr_matrix(np.array([[4, 6, 1, 9],      # raw order B > A > C; scaled: C 5000, A 2000, B 1500
                                     [0, 6, 1, 0],      # A not expressed: C 10000 > B 5000
                                     [40, 60, 10, 90]]), dtype=np.float32)  # 10x cell 0: same order
    tokens = np.array([7, 5, 9, -1])                    # gene D has no token
    medians = np.array([1.0, 2.0, 0.1, np.nan])
    norm = gf.normalise(counts, tokens, medians)
    np.testing.assert_array_equal(norm.tokens, [7, 5, 9])  # columns in dataset gene order
    dense = norm.values.toarray()
    np.testing.assert_allclose(dense[0], [4 / 20 * 1e4 / 1.0, 6 / 20 * 1e4 / 2.0, 1 / 20 * 1e4 / 0.1])
    np.testing.assert_allclose(dense[1], [0, 6 / 7 * 1e4 / 2.0, 1 / 7 * 1e4 / 0.1])
    np.testing.assert_allclose(dense[2], dense[0])
    encoded = gf.rank_value_encode(counts, tokens, medians, n_genes=10)
    assert [e.tolist() for e in encoded] == [[9, 7, 5], [9, 5], [9, 7, 5]]
    assert [e.tolist() for e in gf.rank_value_encode(counts, tokens, medians, n_genes=2)] == [[9, 7], [9, 5], [9, 7]]


def test_median_scaling_comes_after_cell_normalisation_and_changes_the_order():
    """Same counts, different medians: the order follows count / median, not the raw counts."""
    counts = sp.csr_matrix(np.array([[10, 5, 1]], dtype=np.float32))
    tokens = np.array([3, 4, 5])
    assert gf.rank_value_encode(counts, tokens, np.array([1.0, 1.0, 1.0]), 10)[0].tolist() == [3, 4, 5]
    assert gf.rank_value_encode(counts, tokens, np.array([20.0, 1.0, 0.05]), 10)[0].tolist() == [5, 4, 3]
    norm = gf.normalise(counts, tokens, np.array([20.0, 1.0, 0.05]))
    np.testing.assert_allclose(norm.values.toarray()[0], [10 / 16 * 1e4 / 20, 5 / 16 * 1e4 / 1, 1 / 16 * 1e4 / 0.05])


def test_ties_keep_dataset_gene_order_and_duplicates_are_summed():
    counts = sp.csr_matrix(np.array([[2, 2, 2, 0], [1, 1, 3, 2]], dtype=np.float32))
    tokens = np.array([8, 6, 7, 6])  # genes 1 and 3 share token 6 (collapsed Ensembl IDs): counts summed
    medians = np.ones(4)
    encoded = gf.rank_value_encode(counts, tokens, medians, 10)
    assert encoded[0].tolist() == [8, 6, 7]  # all tied: first dataset occurrence order
    assert encoded[1].tolist() == [6, 7, 8]  # token 6: 1 + 2 = 3 ties with gene 2 (3) and comes first


def test_adapter_input_follows_the_dictionaries(tmp_path):
    """End to end: the encoder sees the tokens in the order the checkpoint's medians dictate."""
    genes = pd.DataFrame({"symbol": ["A", "B", "C"], "ensembl": ["ENSG00000000001", "ENSG00000000002",
                                                                  "ENSG00000000003"]}, index=["A", "B", "C"])
    ckpt = tiny_geneformer.write_tiny_checkpoint(tmp_path / "abc", genes)
    dicts = gf.load_dictionaries(ckpt)
    with (ckpt / "gene_median_dictionary_gc104M.pkl").open("wb") as handle:
        pickle.dump({"ENSG00000000001": 1.0, "ENSG00000000002": 2.0, "ENSG00000000003": 0.1}, handle)
    mapped = gf.map_genes(genes, gf.load_dictionaries(ckpt))
    cell = gf.rank_value_encode(sp.csr_matrix(np.array([[4.0, 6.0, 1.0]])), mapped.token, mapped.median, 4094)[0]
    t = dicts.tokens
    assert cell.tolist() == [t["ENSG00000000003"], t["ENSG00000000001"], t["ENSG00000000002"]]


# ------------------------------------------------------------------ coverage and gene identifiers


def test_coverage_reported_and_enforced(tmp_path, counts, genes):
    ckpt = tiny_geneformer.write_tiny_checkpoint(tmp_path / "c80", genes, coverage=0.8)
    emb = gf.embed_cells(counts, genes, ckpt, OPTIONS)
    assert emb.coverage.n_genes == N_GENES and emb.coverage.n_covered == 48 and emb.coverage.fraction == 0.8
    with pytest.raises(InputError, match="covers 48/60"):
        gf.embed_cells(counts, genes, ckpt, RunOptions(device="cpu", min_coverage=0.9))
    token = gf.embed_genes(genes, ckpt, OPTIONS)
    assert token.values.shape == (48, 32) and token.coverage.fraction == 0.8


def test_ensembl_ids_used_directly_and_symbols_mapped(tmp_path, counts):
    ensembl = [f"ENSG{i:011d}" for i in range(N_GENES)]
    genes = pd.DataFrame({"symbol": [f"S{i}" for i in range(N_GENES)], "ensembl": ensembl}, index=ensembl)
    ckpt = tiny_geneformer.write_tiny_checkpoint(tmp_path / "ens", genes)
    assert gf.embed_cells(counts, genes, ckpt, OPTIONS).coverage.fraction == 1.0
    by_symbol = pd.DataFrame({"symbol": genes["symbol"].to_numpy(), "ensembl": ""}, index=genes["symbol"].to_numpy())
    mapped = gf.map_genes(by_symbol, gf.load_dictionaries(ckpt))
    assert mapped.covered.all() and mapped.genes["ensembl"].tolist() == ensembl
    unknown = pd.DataFrame({"symbol": [f"X{i}" for i in range(N_GENES)], "ensembl": ""})
    assert gf.map_genes(unknown, gf.load_dictionaries(ckpt)).covered.sum() == 0


def test_ensembl_mapping_dictionary_collapses_ids_like_the_official_tokenizer(tmp_path, v2):
    ckpt = copy_of(v2, tmp_path)
    dicts = gf.load_dictionaries(ckpt)
    kept, dropped = sorted(dicts.medians)[:2]
    mapping = {kept: kept, "ENSG00000999999": kept}  # an older ID of `kept`; `dropped` is not in the mapping
    with (ckpt / "ensembl_mapping_dict_gc104M.pkl").open("wb") as handle:
        pickle.dump(mapping, handle)
    genes = pd.DataFrame({"symbol": "", "ensembl": [kept, "ENSG00000999999.3", dropped]}, index=["a", "b", "c"])
    mapped = gf.map_genes(genes, gf.load_dictionaries(ckpt))
    assert mapped.token.tolist() == [dicts.tokens[kept], dicts.tokens[kept], -1]
    (ckpt / "ensembl_mapping_dict_gc104M.pkl").unlink()  # optional file: without it IDs are used as they are
    assert gf.map_genes(genes, gf.load_dictionaries(ckpt)).token.tolist() == [
        dicts.tokens[kept], -1, dicts.tokens[dropped]]


def test_empty_cells_and_mismatched_counts_are_rejected(genes, counts, v2):
    empty = counts.tolil()
    empty[3, :] = 0
    with pytest.raises(InputError, match="1 cells have no counts"):
        gf.embed_cells(empty.tocsr(), genes, v2, OPTIONS)
    with pytest.raises(InputError, match="columns"):
        gf.embed_cells(counts[:, :10], genes, v2, OPTIONS)


# ------------------------------------------------------------------ strict loading and files


def test_removed_or_renamed_tensor_is_an_input_error(tmp_path, counts, genes, v2):
    ckpt = copy_of(v2, tmp_path)
    state = load_file(ckpt / "model.safetensors")
    del state["bert.encoder.layer.0.attention.self.query.weight"]
    save_file(state, ckpt / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(InputError, match="missing.*query.weight"):
        gf.embed_cells(counts, genes, ckpt, OPTIONS)
    state["bert.encoder.layer.0.attention.self.renamed.weight"] = load_file(v2 / "model.safetensors")[
        "bert.encoder.layer.0.attention.self.query.weight"]
    save_file(state, ckpt / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(InputError, match="unexpected.*renamed.weight"):
        gf.embed_genes(genes, ckpt, OPTIONS)


def test_reshaped_or_truncated_weights_are_input_errors(tmp_path, counts, genes, v2):
    ckpt = copy_of(v2, tmp_path)
    state = load_file(ckpt / "model.safetensors")
    state["bert.encoder.layer.0.attention.self.query.weight"] = torch.zeros(32, 16)
    save_file(state, ckpt / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(InputError, match="weights"):
        gf.embed_cells(counts, genes, ckpt, OPTIONS)
    data = (v2 / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="model.safetensors.*cannot be read"):
        gf.embed_cells(counts, genes, ckpt, OPTIONS)


def test_pytorch_bin_weights_accepted_and_truncation_caught(tmp_path, counts, genes, v2):
    ckpt = copy_of(v2, tmp_path)
    state = load_file(ckpt / "model.safetensors")
    (ckpt / "model.safetensors").unlink()
    torch.save(state, ckpt / "pytorch_model.bin")
    expected = gf.embed_cells(counts, genes, v2, OPTIONS).values
    got = gf.embed_cells(counts, genes, ckpt, OPTIONS)
    np.testing.assert_allclose(got.values, expected, atol=1e-6)
    assert got.load.n_tensors == len(state)
    data = (ckpt / "pytorch_model.bin").read_bytes()
    (ckpt / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="pytorch_model.bin"):
        gf.embed_cells(counts, genes, ckpt, OPTIONS)


@pytest.mark.parametrize("name, message", [
    ("config.json", "config.json.*required file is missing"),
    ("model.safetensors", "model.safetensors, pytorch_model.bin"),
    ("token_dictionary_gc104M.pkl", "token_dictionary_gc104M.pkl, token_dictionary_gc95M.pkl"),
    ("gene_median_dictionary_gc104M.pkl", "gene_median_dictionary_gc104M.pkl.*missing"),
    ("gene_name_id_dict_gc104M.pkl", "gene_name_id_dict_gc104M.pkl.*missing"),
])
def test_missing_files_name_the_file(tmp_path, counts, genes, v2, name, message):
    ckpt = copy_of(v2, tmp_path)
    (ckpt / name).unlink()
    with pytest.raises(InputError, match=message):
        gf.embed_cells(counts, genes, ckpt, OPTIONS)


def test_damaged_or_foreign_dictionaries(tmp_path, counts, genes, v2):
    ckpt = copy_of(v2, tmp_path)
    (ckpt / "token_dictionary_gc30M.pkl").write_bytes((ckpt / "token_dictionary_gc104M.pkl").read_bytes())
    with pytest.raises(InputError, match="several token dictionaries"):
        gf.embed_cells(counts, genes, ckpt, OPTIONS)
    (ckpt / "token_dictionary_gc30M.pkl").unlink()
    with (ckpt / "gene_median_dictionary_gc104M.pkl").open("wb") as handle:
        pickle.dump(pd.Series([1.0]), handle)  # a pickle that would need to import pandas classes
    with pytest.raises(InputError, match="refusing to load"):
        gf.embed_cells(counts, genes, ckpt, OPTIONS)
    (ckpt / "gene_median_dictionary_gc104M.pkl").write_bytes(b"\x80\x04")
    with pytest.raises(InputError, match="gene median dictionary.*cannot be read"):
        gf.embed_cells(counts, genes, ckpt, OPTIONS)


# ------------------------------------------------------------------ gene embeddings


def test_token_gene_embeddings_are_word_embedding_rows(genes, v2):
    emb = gf.embed_genes(genes, v2, OPTIONS)
    assert emb.values.shape == (N_GENES, 32) and emb.index == list(genes.index)
    table = load_file(v2 / "model.safetensors")["bert.embeddings.word_embeddings.weight"].numpy()
    mapped = gf.map_genes(genes, gf.load_dictionaries(v2))
    np.testing.assert_array_equal(emb.values, table[mapped.token])
    assert emb.values.tobytes() == gf.embed_genes(genes, v2, OPTIONS).values.tobytes()


def test_contextual_gene_embeddings(counts, genes, v2):
    with pytest.raises(InputError, match="no counts"):
        gf.embed_genes(genes, v2, OPTIONS, kind="contextual")
    with pytest.raises(InputError, match="kind"):
        gf.embed_genes(genes, v2, OPTIONS, kind="static")
    sparse = counts.toarray()
    sparse[:, 5] = 0  # never expressed: no contextual state
    emb = gf.embed_genes(genes, v2, OPTIONS, counts=sp.csr_matrix(sparse), kind="contextual")
    assert emb.values.shape == (N_GENES - 1, 32) and "GENE5" not in emb.index and np.isfinite(emb.values).all()
    assert emb.params["n_covered_not_expressed"] == 1 and emb.params["kind"] == "contextual"
    again = gf.embed_genes(genes, v2, OPTIONS, counts=sp.csr_matrix(sparse), kind="contextual")
    assert emb.values.tobytes() == again.values.tobytes()
    # the mean over cells of the gene's hidden state: one cell alone gives that cell's state
    from transformers import BertForMaskedLM

    dicts = gf.load_dictionaries(v2)
    mapped = gf.map_genes(genes, dicts)
    one = sp.csr_matrix(sparse[:1])
    cell = gf.rank_value_encode(one, mapped.token, mapped.median, 4094)[0]
    single = gf.embed_genes(genes, v2, OPTIONS, counts=one, kind="contextual")
    model = BertForMaskedLM.from_pretrained(str(v2), local_files_only=True).eval()
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor([[dicts.tokens["<cls>"], *cell, dicts.tokens["<eos>"]]]),
                       output_hidden_states=True).hidden_states[1][0, 1:-1].numpy()
    first_gene = genes.index[list(mapped.token).index(cell[0])]
    np.testing.assert_allclose(single.values[single.index.index(first_gene)], hidden[0], atol=1e-5)
