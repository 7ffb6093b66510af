"""Tiny randomly initialised esm2 checkpoints in the released layout, for tests and the bundled
test data (`make test-models`); never used by a run."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.dataset import looks_like_ensembl
from ..models.checkpoint import go_offline
from ..models.esm2 import RESIDUES, SPECIAL_TOKENS, VOCAB
from ..models.gene_ids import strip_version
from . import tiny_subset


def _gene_labels(genes: pd.DataFrame | Sequence[str]) -> list[tuple[str, str]]:
    """(symbol, ensembl) of each gene of a gene table (columns symbol, ensembl) or of plain names."""
    if isinstance(genes, pd.DataFrame):
        return [(str(s), str(e)) for s, e in zip(genes["symbol"], genes["ensembl"], strict=True)]
    return [("", strip_version(g)) if looks_like_ensembl(g) else (g, "") for g in map(str, genes)]


def write_tiny_fasta(path: str | Path, genes: pd.DataFrame | Sequence[str], seed: int = 0, coverage: float = 1.0,
                     length: tuple[int, int] = (20, 60)) -> Path:
    """Random protein sequences for round(coverage * n) of `genes` (drawn with `seed`), one record each.

    Headers alternate between plain `>SYMBOL` and UniProt style (`... GN=SYMBOL ...`); a gene without a
    symbol gets an Ensembl peptide header (`... gene:ENSG...`). Lengths are uniform in `length`.
    """
    path = Path(path)
    rng = np.random.default_rng(seed)
    labels = _gene_labels(genes)
    letters = np.array(sorted(RESIDUES - set("XBUZO")))
    lines = []
    for i in tiny_subset(len(labels), coverage, rng):
        symbol, ensembl = labels[i]
        sequence = "".join(rng.choice(letters, size=int(rng.integers(length[0], length[1] + 1))))
        if not symbol:
            lines.append(f">ENSP{i:011d}.1 pep gene:{ensembl}.1 transcript:ENST{i:011d}.1 gene_biotype:protein_coding")
        elif i % 2:
            lines.append(f">sp|Q{i:05d}|{symbol}_HUMAN Synthetic protein OS=Homo sapiens OX=9606 GN={symbol} PE=1 SV=1")
        else:
            lines.append(f">{symbol}")
        lines.extend(sequence[k:k + 60] for k in range(0, len(sequence), 60))
    path.write_text("\n".join(lines) + "\n")
    return path


def write_tiny_checkpoint(directory: str | Path, genes: pd.DataFrame | None = None, seed: int = 0,
                          hidden_size: int = 16, num_hidden_layers: int = 2, num_attention_heads: int = 2,
                          intermediate_size: int = 32, max_position_embeddings: int = 1026,
                          masked_lm: bool = True) -> Path:
    """A randomly initialised ESM-2 in the Hugging Face release layout (ESM vocabulary, rotary positions).

    `masked_lm` writes an EsmForMaskedLM (as facebook/esm2_* are released); otherwise an EsmModel with
    a pooler. `genes` is accepted for the adapter interface: the protein vocabulary does not depend on it.
    """
    go_offline()
    import torch
    from transformers import EsmConfig, EsmForMaskedLM, EsmModel, EsmTokenizer

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    (directory / "special_tokens_map.json").write_text(json.dumps(SPECIAL_TOKENS, indent=2, sort_keys=True) + "\n")
    config = EsmConfig(vocab_size=len(VOCAB), mask_token_id=VOCAB.index("<mask>"), pad_token_id=VOCAB.index("<pad>"),
                       hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
                       num_attention_heads=num_attention_heads, intermediate_size=intermediate_size,
                       max_position_embeddings=max_position_embeddings, position_embedding_type="rotary",
                       hidden_act="gelu", layer_norm_eps=1e-5, hidden_dropout_prob=0.0,
                       attention_probs_dropout_prob=0.0, emb_layer_norm_before=False, token_dropout=True)
    torch.manual_seed(seed)
    model = EsmForMaskedLM(config) if masked_lm else EsmModel(config)
    model.save_pretrained(str(directory))
    EsmTokenizer(str(directory / "vocab.txt")).save_pretrained(str(directory))
    return directory
