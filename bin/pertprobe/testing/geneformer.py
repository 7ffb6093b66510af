"""Tiny randomly initialised geneformer checkpoints in the released layout, for tests and the bundled
test data (`make test-models`); never used by a run."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..models.checkpoint import go_offline
from ..models.geneformer import CLS, EOS, MAPPING_DICTIONARY, MASK, MEDIAN_DICTIONARY, NAME_DICTIONARY, PAD


def synthetic_ensembl(symbol: str) -> str:
    """A stable made-up human-style ID for a gene known only by symbol: ENSG9 + 10 digits of its sha256."""
    return f"ENSG9{int(hashlib.sha256(symbol.encode()).hexdigest(), 16) % 10**10:010d}"


def _dump(path: Path, mapping: dict[str, Any]) -> None:
    with path.open("wb") as handle:
        pickle.dump({k: mapping[k] for k in sorted(mapping)}, handle, protocol=4)


def write_tiny_checkpoint(directory: Path, genes: pd.DataFrame, seed: int = 0, *, version: int = 2,
                          hidden_size: int = 32, num_hidden_layers: int = 2, num_attention_heads: int = 2,
                          intermediate_size: int = 64, max_position_embeddings: int | None = None,
                          coverage: float = 1.0) -> Path:
    """A random Geneformer checkpoint in the released layout whose vocabulary holds `genes`.

    Genes without an Ensembl ID get `synthetic_ensembl(symbol)` (recorded in the gene name dictionary);
    genes with neither are left out. `coverage` < 1 leaves out an evenly spread, deterministic share of the
    genes (floor(n * coverage) kept). Medians are positive values drawn with `seed`; weights are a
    BertForMaskedLM initialised under torch.manual_seed(seed). V2 writes *_gc104M.pkl with `<cls>`/`<eos>`,
    V1 writes *_gc30M.pkl without them."""
    if version not in (1, 2):
        raise ValueError(f"version must be 1 or 2, not {version!r}")
    if not 0 < coverage <= 1:
        raise ValueError(f"coverage must be in (0, 1], not {coverage!r}")
    go_offline()
    import torch
    from transformers import BertConfig, BertForMaskedLM

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    names: dict[str, str] = {}
    ids: list[str] = []
    for i, (symbol, ensembl) in enumerate(zip(genes["symbol"].astype(str), genes["ensembl"].astype(str), strict=True)):
        if int((i + 1) * coverage) == int(i * coverage) or not (symbol or ensembl):
            continue
        gene_id = ensembl or synthetic_ensembl(symbol)
        ids.append(gene_id)
        if symbol:
            names.setdefault(symbol, gene_id)
    specials = [PAD, MASK, CLS, EOS] if version == 2 else [PAD, MASK]
    vocabulary = sorted(set(ids))
    tokens = {name: i for i, name in enumerate(specials + vocabulary)}
    rng = np.random.default_rng(seed)
    medians = dict(zip(vocabulary, (float(x) for x in rng.uniform(0.5, 4.0, len(vocabulary))), strict=True))
    release = "_gc104M" if version == 2 else "_gc30M"
    _dump(directory / f"token_dictionary{release}.pkl", tokens)
    _dump(directory / MEDIAN_DICTIONARY.format(release), medians)
    _dump(directory / NAME_DICTIONARY.format(release), names)
    _dump(directory / MAPPING_DICTIONARY.format(release), {g: g for g in vocabulary})
    config = BertConfig(vocab_size=len(tokens), hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
                        num_attention_heads=num_attention_heads, intermediate_size=intermediate_size,
                        max_position_embeddings=max_position_embeddings or (4096 if version == 2 else 2048),
                        hidden_act="relu", hidden_dropout_prob=0.02, attention_probs_dropout_prob=0.02,
                        layer_norm_eps=1e-12, pad_token_id=tokens[PAD], type_vocab_size=2)
    torch.manual_seed(seed)
    BertForMaskedLM(config).save_pretrained(str(directory), safe_serialization=True)
    return directory
