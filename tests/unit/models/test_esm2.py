"""ESM-2 adapter: FASTA parsing, isoform rule, residue-mean definition, strict loading, coverage."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pertprobe.errors import InputError
from pertprobe.models import esm2
from pertprobe.models.checkpoint import RunOptions, directory_hash
from pertprobe.testing import esm2 as tiny_esm2

CPU = RunOptions(device="cpu", batch_size=4, seed=0)


def gene_table(n_symbol: int = 50, n_ensembl_only: int = 10) -> pd.DataFrame:
    """Dataset genes: symbols for most, Ensembl IDs only for the last few."""
    symbols = [f"GENE{i}" for i in range(n_symbol)] + [""] * n_ensembl_only
    ensembl = [""] * n_symbol + [f"ENSG{i:011d}" for i in range(n_ensembl_only)]
    index = [s or e for s, e in zip(symbols, ensembl, strict=True)]
    return pd.DataFrame({"symbol": symbols, "ensembl": ensembl}, index=index)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_esm2.write_tiny_checkpoint(tmp_path_factory.mktemp("esm2") / "ckpt", gene_table())


@pytest.fixture(scope="module")
def fasta(tmp_path_factory) -> Path:
    return tiny_esm2.write_tiny_fasta(tmp_path_factory.mktemp("fasta") / "proteins.fa", gene_table(), length=(5, 40))


def copy_checkpoint(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_shapes_finite_deterministic(tiny: Path, fasta: Path) -> None:
    genes = gene_table()
    first = esm2.embed_genes(genes, tiny, CPU, fasta=fasta)
    second = esm2.embed_genes(genes, tiny, CPU, fasta=fasta)
    assert first.values.shape == (60, 16) and first.values.dtype == np.float32
    assert np.isfinite(first.values).all()
    assert first.index == list(genes.index)
    assert first.values.tobytes() == second.values.tobytes()
    assert first.load.n_tensors > 0 and first.checkpoint_hash == directory_hash(tiny)
    meta = first.metadata("esm2")
    assert meta["params"]["layer"] == 2 and meta["params"]["max_residues"] == 1022
    assert meta["gene_coverage"]["fraction"] == 1.0


def test_tiny_checkpoint_is_byte_identical_and_in_release_layout(tmp_path: Path, tiny: Path) -> None:
    again = tiny_esm2.write_tiny_checkpoint(tmp_path / "again", gene_table())
    assert directory_hash(again) == directory_hash(tiny)
    names = {p.name for p in tiny.iterdir()}
    assert {"config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json",
            "special_tokens_map.json"} <= names
    assert (tiny / "vocab.txt").read_text().split() == list(esm2.VOCAB) and len(esm2.VOCAB) == 33


def test_mean_over_residues_matches_the_hf_model_called_directly(tmp_path: Path, tiny: Path) -> None:
    import torch
    from transformers import EsmModel, EsmTokenizer

    sequences = {"A1": "MKTAYIAKQRQISFVKSHFSRQ", "A2": "MEEPQSDPSV", "A3": "GAVLIPFWMSTCYNQDEKRH" * 3, "A4": "MK"}
    path = tmp_path / "p.fa"
    path.write_text("".join(f">{g}\n{s}\n" for g, s in sequences.items()))
    genes = pd.DataFrame({"symbol": list(sequences), "ensembl": ""}, index=list(sequences))
    options = RunOptions(device="cpu", batch_size=3)  # batches of unequal lengths: padding must be excluded
    model = EsmModel.from_pretrained(str(tiny), add_pooling_layer=False).eval()
    tokenizer = EsmTokenizer.from_pretrained(str(tiny))
    for layer, max_residues in ((-1, 1022), (1, 1022), (0, 1022), (-1, 12)):
        got = esm2.embed_genes(genes, tiny, options, fasta=path, layer=layer, max_residues=max_residues)
        for row, seq in enumerate(sequences.values()):
            seq = seq[:max_residues]
            ids = tokenizer(seq, return_tensors="pt")["input_ids"]
            assert ids.shape[1] == len(seq) + 2  # <cls> residues <eos>
            with torch.no_grad():
                out = model(input_ids=ids, output_hidden_states=True)
            hidden = out.last_hidden_state if layer == -1 else out.hidden_states[layer]
            expected = hidden[0, 1:len(seq) + 1].mean(0).numpy()
            np.testing.assert_allclose(got.values[row], expected, rtol=1e-4, atol=1e-5)
        assert got.params["n_sequences_truncated"] == (2 if max_residues == 12 else 0)  # A1 and A3


def test_header_parsing() -> None:
    assert esm2.header_gene_keys("sp|P04637|P53_HUMAN Cellular tumor antigen p53 OS=Homo sapiens OX=9606 "
                                 "GN=TP53 PE=1 SV=4") == ("TP53",)
    assert esm2.header_gene_keys("ENSP00000269305.9 pep chromosome:GRCh38:17:7661779:7687538:-1 "
                                 "gene:ENSG00000141510.18 transcript:ENST00000269305.9 gene_biotype:protein_coding "
                                 "transcript_biotype:protein_coding gene_symbol:TP53 description:tumor protein p53") \
        == ("ENSG00000141510", "TP53")
    assert esm2.header_gene_keys("TP53") == ("TP53",)
    assert esm2.header_gene_keys("ENSG00000141510.3 some text") == ("ENSG00000141510",)


def test_isoform_rule_longest_then_first_and_ensembl_before_symbol(tmp_path: Path) -> None:
    path = tmp_path / "iso.fa"
    path.write_text(
        ">sp|P1|A_HUMAN short OS=Homo sapiens GN=GA\nMKT\n"
        ">sp|P2|A_HUMAN long OS=Homo sapiens GN=GA\nMKTAYIA\nKQ*\n"  # 9 residues after '*' is dropped
        ">GA\nMKTAYIAKQ\n"  # ties with the record above: the first in the file wins
        ">GB\nmkta\n"
        ">ENSP1 pep gene:ENSG00000000001.4 transcript:ENST1 gene_symbol:GC\nMEEP\n"
        ">GC\nMEEPQSDPSVEPPLSQ\n")
    records = esm2.read_fasta(path)
    assert [len(r.sequence) for r in records] == [3, 9, 9, 4, 4, 16] and records[3].sequence == "MKTA"
    genes = pd.DataFrame({"symbol": ["GA", "GB", "GC", "GC", "GD"],
                          "ensembl": ["", "", "ENSG00000000001", "", ""]}, index=list("abcde"))
    # GC by Ensembl ID takes the Ensembl record even though a longer one carries its symbol
    assert esm2.select_sequences(genes, records).tolist() == [1, 3, 4, 5, -1]


def test_esmmodel_and_masked_lm_checkpoints_give_the_same_embedding(tmp_path: Path, fasta: Path, tiny: Path) -> None:
    from transformers import EsmForMaskedLM

    base = tmp_path / "base"  # the encoder of the masked-LM checkpoint saved as an EsmModel (no esm. prefix)
    EsmForMaskedLM.from_pretrained(str(tiny)).esm.save_pretrained(str(base))
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(tiny / name, base / name)
    genes = gene_table()
    from_base = esm2.embed_genes(genes, base, CPU, fasta=fasta)
    from_mlm = esm2.embed_genes(genes, tiny, CPU, fasta=fasta)
    assert from_base.load.n_tensors == from_mlm.load.n_tensors  # lm_head tensors are not counted
    assert from_base.values.tobytes() == from_mlm.values.tobytes()
    with_pooler = tiny_esm2.write_tiny_checkpoint(tmp_path / "pooler", masked_lm=False)  # pooler tensors: ignored
    assert esm2.embed_genes(genes, with_pooler, CPU, fasta=fasta).values.shape == (60, 16)


def test_hub_legacy_key_layout_loads_to_the_same_embedding(tmp_path: Path, fasta: Path, tiny: Path) -> None:
    """facebook/esm2_* files keep per-layer rotary inv_freq, position_ids and the tied decoder (pytorch_model.bin)."""
    import torch
    from transformers import EsmForMaskedLM

    state = {k: v.clone() for k, v in EsmForMaskedLM.from_pretrained(str(tiny)).state_dict().items()}
    rotary = [k for k in state if k.endswith("rotary_embeddings.inv_freq")]
    inv_freq = state[rotary[0]]
    for key in rotary:
        del state[key]
    for i in range(2):
        state[f"esm.encoder.layer.{i}.attention.self.rotary_embeddings.inv_freq"] = inv_freq.clone()
    state["esm.embeddings.position_ids"] = torch.arange(1026)[None]
    assert "lm_head.decoder.weight" in state
    legacy = copy_checkpoint(tiny, tmp_path / "legacy")
    (legacy / "model.safetensors").unlink()
    torch.save(state, legacy / "pytorch_model.bin")
    genes = gene_table()
    assert esm2.embed_genes(genes, legacy, CPU, fasta=fasta).values.tobytes() == \
        esm2.embed_genes(genes, tiny, CPU, fasta=fasta).values.tobytes()


def rewrite_weights(directory: Path, edit) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(directory / "model.safetensors")
    edit(tensors)
    save_file(tensors, directory / "model.safetensors", metadata={"format": "pt"})


@pytest.mark.parametrize("damage", ["removed", "renamed", "foreign", "truncated"])
def test_strict_loading_failures(tmp_path: Path, tiny: Path, fasta: Path, damage: str) -> None:
    import torch

    ckpt = copy_checkpoint(tiny, tmp_path / "ckpt")
    key = "esm.encoder.layer.0.attention.self.query.weight"
    if damage == "removed":
        rewrite_weights(ckpt, lambda t: t.pop(key))
    elif damage == "renamed":
        rewrite_weights(ckpt, lambda t: t.__setitem__(key + "_v2", t.pop(key)))
    elif damage == "foreign":  # an extra tensor outside the documented allow-list (lm_head, pooler)
        rewrite_weights(ckpt, lambda t: t.__setitem__("esm.adapter.weight", torch.zeros(2)))
    else:
        data = (ckpt / "model.safetensors").read_bytes()
        (ckpt / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="ESM-2 weights") as err:
        esm2.embed_genes(gene_table(), ckpt, CPU, fasta=fasta)
    assert "model.safetensors" in err.value.file
    if damage in ("removed", "renamed"):
        assert "missing" in str(err.value)


def test_shape_mismatch_is_an_input_error(tmp_path: Path, tiny: Path, fasta: Path) -> None:
    import torch

    ckpt = copy_checkpoint(tiny, tmp_path / "ckpt")
    rewrite_weights(ckpt, lambda t: t.__setitem__("esm.encoder.layer.0.attention.self.key.weight", torch.zeros(16, 8)))
    with pytest.raises(InputError, match="ESM-2 weights"):
        esm2.embed_genes(gene_table(), ckpt, CPU, fasta=fasta)


@pytest.mark.parametrize("name", ["config.json", "vocab.txt", "model.safetensors"])
def test_missing_required_file(tmp_path: Path, tiny: Path, fasta: Path, name: str) -> None:
    ckpt = copy_checkpoint(tiny, tmp_path / "ckpt")
    (ckpt / name).unlink()
    with pytest.raises(InputError, match="checkpoint") as err:
        esm2.embed_genes(gene_table(), ckpt, CPU, fasta=fasta)
    assert name in str(err.value)


def test_coverage_reported_and_enforced(tmp_path: Path, tiny: Path) -> None:
    genes = gene_table()
    partial = tiny_esm2.write_tiny_fasta(tmp_path / "partial.fa", genes, seed=1, coverage=0.8)
    result = esm2.embed_genes(genes, tiny, CPU, fasta=partial)
    assert result.coverage.fraction == pytest.approx(0.8) and result.values.shape == (48, 16)
    headers = [line[1:] for line in partial.read_text().splitlines() if line.startswith(">")]
    assert len(headers) == 48 and sum("GN=" in h for h in headers) > 0 and sum("gene:" in h for h in headers) > 0
    assert result.index == [g for g in genes.index if any(g in esm2.header_gene_keys(h) for h in headers)]
    with pytest.raises(InputError, match="covers 48/60"):
        esm2.embed_genes(genes, tiny, RunOptions(device="cpu", min_coverage=0.9), fasta=partial)


@pytest.mark.parametrize("content, problem", [
    ("", "no FASTA record"),
    ("MKTAYIAK\n>A\nMK\n", "before the first"),
    (">GENE0\nMKT1AYI\n", "outside the ESM alphabet"),
    (">GENE0\nMKTJ\n", "outside the ESM alphabet"),
    (">GENE0\n>GENE1\nMK\n", "has no sequence"),
])
def test_bad_fasta(tmp_path: Path, tiny: Path, content: str, problem: str) -> None:
    path = tmp_path / "bad.fa"
    path.write_text(content)
    with pytest.raises(InputError, match=problem) as err:
        esm2.embed_genes(gene_table(), tiny, CPU, fasta=path)
    assert err.value.file == str(path)


def test_unreadable_fasta(tmp_path: Path, tiny: Path) -> None:
    path = tmp_path / "binary.fa"
    path.write_bytes(b"\xff\xfe\x00\x81" * 10)
    with pytest.raises(InputError, match="cannot be read"):
        esm2.embed_genes(gene_table(), tiny, CPU, fasta=path)
    with pytest.raises(InputError, match="cannot be read"):
        esm2.embed_genes(gene_table(), tiny, CPU, fasta=tmp_path / "absent.fa")


def test_gzipped_fasta_and_bad_options(tmp_path: Path, tiny: Path, fasta: Path) -> None:
    import gzip

    zipped = tmp_path / "proteins.fa.gz"
    zipped.write_bytes(gzip.compress(fasta.read_bytes()))
    genes = gene_table()
    assert esm2.embed_genes(genes, tiny, CPU, fasta=zipped).values.tobytes() == \
        esm2.embed_genes(genes, tiny, CPU, fasta=fasta).values.tobytes()
    with pytest.raises(InputError, match="layer"):
        esm2.embed_genes(genes, tiny, CPU, fasta=fasta, layer=3)
    with pytest.raises(InputError, match="max_residues"):
        esm2.embed_genes(genes, tiny, CPU, fasta=fasta, max_residues=0)
