"""ESM-2 protein language model (Lin et al. 2023, Science): gene embeddings from protein sequences.

A gene's embedding is the mean, over its residues, of one layer's hidden states for the protein
sequence the user's FASTA gives for it (BOS/EOS/padding excluded), as `esm extract --include mean`
of facebookresearch/esm computes it. The checkpoint is a Hugging Face transformers ESM directory
(facebook/esm2_t6_8M_UR50D ... esm2_t48_15B_UR50D layout). See docs/models/esm2.md.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from .adapters import foundation_model
from .checkpoint import (
    LoadReport,
    ModelEmbedding,
    RunOptions,
    autocast,
    batches,
    directory_hash,
    file_hash,
    first_existing,
    go_offline,
    require_files,
    resolve_device,
    seed_everything,
)
from .gene_ids import check_coverage, strip_version

MODEL = "esm2"
FILES = ("config.json", "vocab.txt", "tokenizer_config.json")
WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
# What a released directory always holds (globs; 'a|b': either), checked before any task runs.
CHECKPOINT_FILES = (*FILES, "|".join(WEIGHTS))
# The ESM alphabet (esm.data.Alphabet "ESM-1b" / HF vocab.txt order): special tokens, residues, gaps, mask.
VOCAB = ("<cls>", "<pad>", "<eos>", "<unk>", "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K", "Q", "N",
         "F", "Y", "M", "H", "W", "C", "X", "B", "U", "Z", "O", ".", "-", "<null_1>", "<mask>")
RESIDUES = frozenset(t for t in VOCAB if len(t) == 1 and t.isalpha())
SPECIAL_TOKENS = {"cls_token": "<cls>", "eos_token": "<eos>", "mask_token": "<mask>", "pad_token": "<pad>",
                  "unk_token": "<unk>"}
# Checkpoint tensors that hidden states never use: the masked-LM head of EsmForMaskedLM checkpoints and
# a pooler saved by EsmModel(add_pooling_layer=True) may be present; the contact head may be absent.
IGNORED_UNEXPECTED = ("lm_head.", "pooler.")
IGNORED_MISSING = ("contact_head.",)
DEFAULT_MAX_RESIDUES = 1022  # esm scripts/extract.py --truncation_seq_length default (1024 tokens with BOS/EOS)

_GN = re.compile(r"(?:^|\s)GN=(\S+)")
_ENSEMBL_GENE = re.compile(r"(?:^|\s)gene:(\S+)")
_ENSEMBL_SYMBOL = re.compile(r"(?:^|\s)gene_symbol:(\S+)")


@dataclass(frozen=True)
class ProteinRecord:
    """One FASTA record: its header (without '>'), its residues (upper case) and the gene keys it names."""

    header: str
    sequence: str
    keys: tuple[str, ...]


def header_gene_keys(header: str) -> tuple[str, ...]:
    """Gene symbols / Ensembl gene IDs a FASTA header names.

    UniProt (`... GN=TP53 ...`) and Ensembl peptide (`... gene:ENSG00000141510.18 ... gene_symbol:TP53`)
    headers give their gene fields; any other header is read as `>NAME [free text]` and gives NAME.
    Ensembl versions are dropped.
    """
    keys = [m.group(1) for m in (_GN.search(header), _ENSEMBL_GENE.search(header), _ENSEMBL_SYMBOL.search(header))
            if m is not None]
    if not keys and header.split():
        keys = [header.split()[0]]
    return tuple(dict.fromkeys(strip_version(k) for k in keys))


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        return raw.decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise InputError(path, "file", f"cannot be read as FASTA text ({type(err).__name__}: {err})",
                         "pass a plain or gzipped protein FASTA file (UniProt or Ensembl pep download)") from err


def read_fasta(path: str | Path) -> list[ProteinRecord]:
    """Protein records of a FASTA (plain or gzipped) in file order; bad files raise `InputError`.

    Sequence lines are joined, upper-cased and a terminal stop '*' is dropped; any letter outside the
    ESM alphabet (20 amino acids + X B U Z O) is an error, as is a record without residues.
    """
    path = Path(path)
    records: list[tuple[str, list[str]]] = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith(";"):
            continue
        if line.startswith(">"):
            records.append((line[1:].strip(), []))
        elif not records:
            raise InputError(path, f"line {number}", "sequence before the first '>' header",
                             "pass a FASTA file: every record starts with a '>' header line")
        else:
            records[-1][1].append("".join(line.split()))
    if not records:
        raise InputError(path, "records", "no FASTA record found",
                         "pass a protein FASTA with '>header' lines followed by sequence lines")
    out = []
    for header, lines in records:
        sequence = "".join(lines).upper().removesuffix("*")
        if not sequence:
            raise InputError(path, f"record '>{header}'", "has no sequence", "remove the record or add its residues")
        bad = sorted(set(sequence) - RESIDUES)
        if bad:
            raise InputError(path, f"record '>{header}'", f"has residue letters outside the ESM alphabet "
                             f"({', '.join(repr(c) for c in bad[:5])})",
                             "give protein (not nucleotide) sequences using the 20 amino acids and X, B, U, Z, O")
        out.append(ProteinRecord(header, sequence, header_gene_keys(header)))
    return out


read_side_input = read_fasta  # the reader VALIDATE_SIDE_INPUTS checks --protein_fasta with


def select_sequences(genes: pd.DataFrame, records: Sequence[ProteinRecord]) -> np.ndarray:
    """Index into `records` of each dataset gene's sequence (-1 when none).

    A gene matches the records naming its Ensembl ID, or else its symbol (exact, case-sensitive). Of
    several matches (isoforms) the longest sequence wins; equal lengths go to the first in the file.
    """
    by_key: dict[str, int] = {}
    for i, record in enumerate(records):
        for key in record.keys:
            best = by_key.get(key)
            if best is None or len(record.sequence) > len(records[best].sequence):
                by_key[key] = i
    chosen = []
    for symbol, ensembl in zip(genes["symbol"].to_numpy(), genes["ensembl"].to_numpy(), strict=True):
        hit = by_key.get(ensembl) if ensembl else None
        if hit is None and symbol:
            hit = by_key.get(symbol)
        chosen.append(-1 if hit is None else hit)
    return np.asarray(chosen, dtype=np.int64)


def _check_int(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InputError("--model-option", name, f"must be an integer >= {low}, got {value!r}",
                         f"pass --model-option {name}=<integer>")
    return value


def _load(checkpoint: Path, weights: Path) -> tuple[Any, Any, LoadReport]:
    """EsmTokenizer and EsmModel (no pooler) from `checkpoint`, with only the documented keys left out."""
    go_offline()
    from transformers import EsmModel, EsmTokenizer

    try:
        config = json.loads((checkpoint / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise InputError(checkpoint / "config.json", "ESM-2 configuration", f"cannot be read ({err})",
                         "copy config.json of the released model unchanged") from err
    if config.get("model_type") != "esm" or config.get("is_folding_model"):
        raise InputError(checkpoint / "config.json", "model_type",
                         f"is {config.get('model_type')!r}{' (ESMFold)' if config.get('is_folding_model') else ''}, "
                         "not an ESM-2 language model", "pass a facebook/esm2_* model directory")
    try:
        model, info = EsmModel.from_pretrained(str(checkpoint), add_pooling_layer=False, output_loading_info=True,
                                               local_files_only=True)
    except Exception as err:  # noqa: BLE001 - truncated/foreign weights, shape mismatches
        raise InputError(weights, "ESM-2 weights", f"cannot be loaded ({type(err).__name__}: {err})",
                         "re-copy the released weights together with their config.json; the file is truncated "
                         "or belongs to another model size") from err
    missing = sorted(k for k in info["missing_keys"] if not k.removeprefix("esm.").startswith(IGNORED_MISSING))
    unexpected = sorted(k for k in info["unexpected_keys"] if not k.removeprefix("esm.").startswith(IGNORED_UNEXPECTED))
    mismatched = sorted(str(k[0] if isinstance(k, tuple) else k) for k in info.get("mismatched_keys", ()))
    if missing or unexpected or mismatched or info.get("error_msgs"):
        parts = [f"{len(v)} {name} (e.g. {', '.join(v[:3])})"
                 for name, v in (("missing", missing), ("unexpected", unexpected), ("with other shapes", mismatched),
                                 ("load errors", list(info.get("error_msgs", ())))) if v]
        raise InputError(weights, "ESM-2 weights", "do not match the model built from config.json: " + "; ".join(parts),
                         "use the weights and config.json of the same released ESM-2 model")
    n_loaded = len(model.state_dict()) - len(info["missing_keys"])
    try:
        tokenizer = EsmTokenizer.from_pretrained(str(checkpoint), local_files_only=True)
    except Exception as err:  # noqa: BLE001 - unreadable vocab.txt / tokenizer_config.json
        raise InputError(checkpoint / "vocab.txt", "ESM-2 tokenizer", f"cannot be loaded ({err})",
                         "copy vocab.txt and tokenizer_config.json of the released model") from err
    vocab = tokenizer.get_vocab()
    if len(vocab) != model.config.vocab_size or not RESIDUES <= set(vocab):
        raise InputError(checkpoint / "vocab.txt", "ESM-2 tokenizer",
                         f"has {len(vocab)} tokens (model: {model.config.vocab_size}) or lacks residue tokens",
                         "use the vocab.txt released with these weights (33 ESM tokens)")
    return tokenizer, model.float().eval(), LoadReport(n_tensors=n_loaded)


def _embed_sequences(sequences: Sequence[str], tokenizer: Any, model: Any, layer: int,
                     options: RunOptions) -> np.ndarray:
    """Mean over residue positions of hidden-state layer `layer` (0 = embeddings, L = final, normed)."""
    import torch

    device = resolve_device(options.device)
    model.to(device)
    n_layers = model.config.num_hidden_layers
    out = np.zeros((len(sequences), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode(), autocast(device, options.precision):
        for part in batches(len(sequences), options.batch_size, "esm2: proteins embedded", "sequences"):
            chunk = list(sequences[part])
            encoded = tokenizer(chunk, padding=True, return_tensors="pt")
            lengths = torch.tensor([len(s) for s in chunk])
            if not torch.equal(encoded["attention_mask"].sum(1), lengths + 2):
                raise RuntimeError("ESM tokenizer did not give one token per residue plus <cls>/<eos>")
            result = model(input_ids=encoded["input_ids"].to(device),
                           attention_mask=encoded["attention_mask"].to(device), output_hidden_states=layer != n_layers)
            hidden = (result.last_hidden_state if layer == n_layers else result.hidden_states[layer]).float()
            positions = torch.arange(hidden.shape[1], device=device)[None, :]
            lengths = lengths.to(device)[:, None]
            residue = ((positions >= 1) & (positions <= lengths)).float()  # <cls>, <eos> and padding left out
            out[part] = ((hidden * residue[..., None]).sum(1) / lengths).cpu().numpy()
    return out


@foundation_model("genes", "esm2", "Lin et al. 2023, ESM2",
                  "mean residue state of each target's longest protein isoform",
                  side_input="protein_fasta", side_option="fasta",
                  checkpoint_files=CHECKPOINT_FILES)
def embed_genes(genes: pd.DataFrame, checkpoint: Path, options: RunOptions, *, fasta: str | Path,
                max_residues: int = DEFAULT_MAX_RESIDUES, layer: int = -1) -> ModelEmbedding:
    """ESM-2 embedding of every dataset gene the FASTA has a protein sequence for.

    `fasta`: protein FASTA naming genes in its headers (see `header_gene_keys`); `max_residues`:
    longer sequences keep their first `max_residues` residues; `layer`: hidden-state layer, 0 (token
    embeddings) to L (final layer after its layer norm), negative counts from the end (-1 = L).
    """
    checkpoint = require_files(checkpoint, FILES, MODEL)
    weights = first_existing(checkpoint, WEIGHTS, MODEL)
    fasta = Path(fasta)
    max_residues = _check_int(max_residues, "max_residues", 1)
    records = read_fasta(fasta)
    chosen = select_sequences(genes, records)
    coverage = check_coverage(MODEL, chosen >= 0, options.min_coverage, fasta)
    seed_everything(options.seed)
    tokenizer, model, load = _load(checkpoint, weights)
    n_layers = model.config.num_hidden_layers
    if isinstance(layer, bool) or not isinstance(layer, int) or not -(n_layers + 1) <= layer <= n_layers:
        raise InputError("--model-option", "layer", f"must be an integer in [{-(n_layers + 1)}, {n_layers}] for this "
                         f"{n_layers}-layer model, got {layer!r}", "pass --model-option layer=-1 (final layer)")
    layer = layer % (n_layers + 1)
    used = list(dict.fromkeys(int(i) for i in chosen if i >= 0))
    sequences = [records[i].sequence[:max_residues] for i in used]
    values = _embed_sequences(sequences, tokenizer, model, layer, options)
    row = {record: r for r, record in enumerate(used)}
    covered = np.flatnonzero(chosen >= 0)
    return ModelEmbedding(
        values=values[[row[int(chosen[g])] for g in covered]],
        params={"layer": layer, "n_layers": n_layers, "pooling": "mean over residues (BOS/EOS excluded)",
                "max_residues": max_residues, "isoform": "longest (ties: first in file)",
                "precision": options.precision, "fasta_sha256": file_hash(fasta),
                "n_sequences_truncated": int(sum(len(records[i].sequence) > max_residues for i in used))},
        load=load, coverage=coverage, checkpoint_hash=directory_hash(checkpoint),
        index=[str(genes.index[g]) for g in covered])
