"""Tiny randomly initialised genept checkpoints in the released layout, for tests and the bundled
test data (`make test-models`); never used by a run."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.dataset import looks_like_ensembl
from ..models.checkpoint import go_offline
from ..models.gene_ids import strip_version
from ..models.genept import COLUMNS, TOKENIZER_FILES, bundled_minilm_dir
from . import tiny_subset


def write_tiny_checkpoint(directory: str | Path, genes: pd.DataFrame | None = None, seed: int = 0,
                          hidden_size: int = 32, num_hidden_layers: int = 2, num_attention_heads: int = 2,
                          intermediate_size: int = 64, max_position_embeddings: int = 128,
                          max_seq_length: int = 128) -> Path:
    """A randomly initialised BERT sentence-transformer (mean pooling + Normalize) in the release layout.

    Tokenizer files are copied from the bundled all-MiniLM-L6-v2 (`bundled_minilm_dir`); `genes` is
    accepted for the adapter interface: a text model's vocabulary does not depend on it.
    """
    go_offline()
    import torch
    from transformers import BertConfig, BertModel

    directory = Path(directory)
    (directory / "1_Pooling").mkdir(parents=True, exist_ok=True)
    source = bundled_minilm_dir()
    for name in TOKENIZER_FILES:
        shutil.copyfile(source / name, directory / name)
    vocab_size = sum(1 for _ in (source / "vocab.txt").open(encoding="utf-8"))
    config = BertConfig(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
                        num_attention_heads=num_attention_heads, intermediate_size=intermediate_size,
                        max_position_embeddings=max_position_embeddings, pad_token_id=0)
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(str(directory))
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]
    pooling = {"word_embedding_dimension": hidden_size, "pooling_mode_cls_token": False,
               "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
               "pooling_mode_mean_sqrt_len_tokens": False}
    for name, content in (("modules.json", modules), ("1_Pooling/config.json", pooling),
                          ("sentence_bert_config.json", {"max_seq_length": max_seq_length, "do_lower_case": False})):
        (directory / name).write_text(json.dumps(content, indent=2) + "\n")
    return directory


_FUNCTIONS = ("serine/threonine kinase", "tyrosine phosphatase", "zinc-finger transcription factor",
              "ubiquitin E3 ligase", "voltage-gated ion channel", "solute carrier transporter",
              "ribosomal protein", "DEAD-box RNA helicase", "G-protein coupled receptor", "heat shock chaperone")


_LOCATIONS = ("nucleus", "cytoplasm", "mitochondrion", "plasma membrane", "endoplasmic reticulum", "Golgi apparatus")


_PROCESSES = ("cell cycle progression", "DNA repair", "mRNA splicing", "apoptosis", "lipid metabolism",
              "immune signalling", "protein folding", "chromatin remodelling", "translation", "autophagy")


def write_tiny_descriptions(path: str | Path, genes: pd.DataFrame | Sequence[str], seed: int = 0,
                            coverage: float = 1.0) -> Path:
    """Synthetic descriptions for round(coverage * n) of `genes` (drawn with `seed`): gene,description table.

    Genes are written by symbol (Ensembl ID when they have none); .tsv paths get tabs, others commas.
    """
    path = Path(path)
    rng = np.random.default_rng(seed)
    if isinstance(genes, pd.DataFrame):
        names = [s or e for s, e in zip(genes["symbol"].astype(str), genes["ensembl"].astype(str), strict=True)]
    else:
        names = [strip_version(g) if looks_like_ensembl(g) else g for g in map(str, genes)]
    keep = tiny_subset(len(names), coverage, rng)
    rows = [(names[i], f"{names[i]} encodes a {rng.choice(_FUNCTIONS)} that localises to the {rng.choice(_LOCATIONS)} "
                       f"and takes part in {rng.choice(_PROCESSES)}.") for i in keep]
    pd.DataFrame(rows, columns=list(COLUMNS)).to_csv(path, sep="\t" if path.suffix == ".tsv" else ",", index=False)
    return path
