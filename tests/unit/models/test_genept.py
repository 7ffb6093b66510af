"""GenePT-style adapter: real MiniLM semantics, pooling definition, strict loading, descriptions table, coverage."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pertprobe.errors import InputError
from pertprobe.models import genept
from pertprobe.models.checkpoint import RunOptions, directory_hash
from pertprobe.testing import genept as tiny_genept

CPU = RunOptions(device="cpu", batch_size=4, seed=0)
KINASE_A = ("Serine/threonine protein kinase that phosphorylates its substrates to relay mitogen-activated "
            "protein kinase signalling and control cell proliferation.")
KINASE_B = "Tyrosine kinase that phosphorylates target proteins to transmit growth factor receptor signals."
RIBOSOME = "Structural component of the large ribosomal subunit that takes part in the translation of messenger RNA."


def gene_table(n: int = 60, n_ensembl_only: int = 10) -> pd.DataFrame:
    """Dataset genes: symbols for most, Ensembl IDs only for the last few."""
    symbols = [f"GENE{i}" for i in range(n - n_ensembl_only)] + [""] * n_ensembl_only
    ensembl = [""] * (n - n_ensembl_only) + [f"ENSG{i:011d}" for i in range(n_ensembl_only)]
    index = [s or e for s, e in zip(symbols, ensembl, strict=True)]
    return pd.DataFrame({"symbol": symbols, "ensembl": ensembl}, index=index)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_genept.write_tiny_checkpoint(tmp_path_factory.mktemp("genept") / "ckpt", gene_table())


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    return tiny_genept.write_tiny_descriptions(tmp_path_factory.mktemp("text") / "descriptions.csv", gene_table())


def write_table(path: Path, rows: list[tuple[str, str]], sep: str = ",") -> Path:
    pd.DataFrame(rows, columns=["gene", "description"]).to_csv(path, sep=sep, index=False)
    return path


def test_minilm_related_descriptions_are_closer(tmp_path: Path) -> None:
    path = write_table(tmp_path / "d.tsv", [("MAPK1", KINASE_A), ("EGFR", KINASE_B), ("RPL3", RIBOSOME)], sep="\t")
    genes = pd.DataFrame({"symbol": ["MAPK1", "EGFR", "RPL3"], "ensembl": ""}, index=["MAPK1", "EGFR", "RPL3"])
    minilm = genept.bundled_minilm_dir()
    first = genept.embed_genes(genes, minilm, CPU, descriptions=path)
    second = genept.embed_genes(genes, minilm, CPU, descriptions=path)
    values = first.values
    assert values.shape == (3, 384) and values.dtype == np.float32 and np.isfinite(values).all()
    np.testing.assert_allclose(np.linalg.norm(values, axis=1), 1.0, atol=1e-5)
    assert values.tobytes() == second.values.tobytes()
    cos = values @ values.T
    assert cos[0, 1] > cos[0, 2] + 0.1 and cos[0, 1] > cos[1, 2] + 0.1  # kinase-kinase above kinase-ribosome
    assert first.load.n_tensors == 103 and first.params["max_seq_length"] == 256


def test_pooling_definition_matches_a_manual_mean_of_token_states(tmp_path: Path, tiny: Path) -> None:
    """Mean of the last hidden states over all tokens ([CLS] and [SEP] included), then L2-normalised."""
    import torch
    from transformers import AutoTokenizer, BertModel

    texts = {"GENE0": "kinase  that\nphosphorylates", "GENE1": "a ribosomal protein of the large subunit"}
    path = write_table(tmp_path / "d.csv", list(texts.items()))
    genes = gene_table().iloc[:2]
    got = genept.embed_genes(genes, tiny, CPU, descriptions=path)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny))
    model = BertModel.from_pretrained(str(tiny)).eval()
    for row, text in enumerate(texts.values()):
        encoded = tokenizer(" ".join(text.split()), return_tensors="pt")
        with torch.no_grad():
            hidden = model(**encoded).last_hidden_state[0]
        mean = hidden.mean(0).numpy()
        np.testing.assert_allclose(got.values[row], mean / np.linalg.norm(mean), rtol=1e-4, atol=1e-5)


def test_tiny_checkpoint_shapes_determinism_and_layout(tmp_path: Path, tiny: Path, table: Path) -> None:
    genes = gene_table()
    first = genept.embed_genes(genes, tiny, CPU, descriptions=table)
    second = genept.embed_genes(genes, tiny, CPU, descriptions=table)
    assert first.values.shape == (60, 32) and np.isfinite(first.values).all()
    assert first.index == list(genes.index) and first.coverage.fraction == 1.0
    assert first.values.tobytes() == second.values.tobytes()
    assert first.checkpoint_hash == directory_hash(tiny)
    assert directory_hash(tiny_genept.write_tiny_checkpoint(tmp_path / "again")) == directory_hash(tiny)
    assert {"modules.json", "config.json", "model.safetensors", "vocab.txt", "tokenizer.json",
            "sentence_bert_config.json", "1_Pooling"} <= {p.name for p in tiny.iterdir()}
    assert first.metadata("genept")["params"]["modules"] == ["Transformer", "Pooling", "Normalize"]


def test_ensembl_matching_with_versions(tmp_path: Path, tiny: Path) -> None:
    genes = gene_table(4, n_ensembl_only=2)
    path = write_table(tmp_path / "d.csv", [("GENE0", "first"), ("ENSG00000000001.7", "second"), ("OTHER", "x")])
    result = genept.embed_genes(genes, tiny, RunOptions(device="cpu", min_coverage=0.0), descriptions=path)
    assert result.index == ["GENE0", "ENSG00000000001"] and result.coverage.n_covered == 2


def rewrite_weights(directory: Path, edit) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(directory / "model.safetensors")
    edit(tensors)
    save_file(tensors, directory / "model.safetensors", metadata={"format": "pt"})


@pytest.mark.parametrize("damage", ["removed", "renamed", "truncated"])
def test_strict_loading_failures(tmp_path: Path, tiny: Path, table: Path, damage: str) -> None:
    ckpt = Path(shutil.copytree(tiny, tmp_path / "ckpt"))
    key = "encoder.layer.1.output.dense.weight"
    if damage == "removed":
        rewrite_weights(ckpt, lambda t: t.pop(key))
    elif damage == "renamed":
        rewrite_weights(ckpt, lambda t: t.__setitem__(key.replace("dense", "dense_v2"), t.pop(key)))
    else:
        data = (ckpt / "model.safetensors").read_bytes()
        (ckpt / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as err:
        genept.embed_genes(gene_table(), ckpt, CPU, descriptions=table)
    message = str(err.value)
    assert "model.safetensors" in message
    if damage != "truncated":
        assert "missing" in message and key in message


@pytest.mark.parametrize("name", ["modules.json", "config.json", "model.safetensors"])
def test_missing_required_file(tmp_path: Path, tiny: Path, table: Path, name: str) -> None:
    ckpt = Path(shutil.copytree(tiny, tmp_path / "ckpt"))
    (ckpt / name).unlink()
    with pytest.raises(InputError, match="genept checkpoint") as err:
        genept.embed_genes(gene_table(), ckpt, CPU, descriptions=table)
    assert name in str(err.value)


def test_coverage_reported_and_enforced(tmp_path: Path, tiny: Path) -> None:
    genes = gene_table()
    partial = tiny_genept.write_tiny_descriptions(tmp_path / "partial.tsv", genes, seed=2, coverage=0.8)
    described = set(pd.read_csv(partial, sep="\t")["gene"])
    result = genept.embed_genes(genes, tiny, CPU, descriptions=partial)
    assert result.coverage.fraction == pytest.approx(0.8) and result.values.shape == (48, 32)
    assert result.index == [g for g in genes.index if g in described]
    with pytest.raises(InputError, match="covers 48/60"):
        genept.embed_genes(genes, tiny, RunOptions(device="cpu", min_coverage=0.9), descriptions=partial)


@pytest.mark.parametrize("text, name, problem", [
    ("gene,summary\nGENE0,kinase\n", "d.csv", "column 'description'"),
    ("symbol,description\nGENE0,kinase\n", "d.csv", "column 'gene'"),
    ("gene,description\nGENE0,kinase\nGENE1,   \n", "d.csv", "empty for 1 gene"),
    ("gene,description\nGENE0,kinase\nGENE0,ligase\n", "d.csv", "repeated genes"),
    ("gene,description\nENSG00000000001.1,kinase\nENSG00000000001.2,ligase\n", "d.csv", "repeated genes"),
    ("gene,description\n", "d.csv", "no genes"),
    ("gene\tdescription\nGENE0\tkinase\n", "d.json", "unsupported"),
])
def test_bad_descriptions_table(tmp_path: Path, tiny: Path, text: str, name: str, problem: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError, match=problem) as err:
        genept.embed_genes(gene_table(), tiny, CPU, descriptions=path)
    assert err.value.file == str(path)


def test_normalize_option_must_be_boolean(tiny: Path, table: Path) -> None:
    with pytest.raises(InputError, match="normalize"):
        genept.embed_genes(gene_table(), tiny, CPU, descriptions=table, normalize="yes")
