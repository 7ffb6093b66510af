"""Tiny randomly initialised scgpt checkpoints in the released layout, for tests and the bundled
test data (`make test-models`); never used by a run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..models.scgpt import ARGS, VOCAB, WEIGHTS, build_encoder, read_config_dict


def write_tiny_checkpoint(directory: Path, genes: pd.DataFrame, seed: int = 0, *, embsize: int = 32, nheads: int = 2,
                          d_hid: int = 64, nlayers: int = 2, n_bins: int = 51, flash_attention_keys: bool = False,
                          coverage: float = 1.0) -> Path:
    """A random checkpoint in the released layout (args.json, vocab.json, best_model.pt) whose vocabulary
    holds the symbols of an evenly spread `coverage` fraction of `genes`; best_model.pt also carries
    expression-decoder, classifier and MVC heads as released checkpoints do."""
    import torch
    from torch import nn

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    symbols = [s for s in genes["symbol"] if s]
    keep = np.unique(np.linspace(0, len(symbols) - 1, int(np.floor(len(symbols) * coverage))).astype(int)) \
        if coverage < 1 else np.arange(len(symbols))
    tokens = ["<pad>", "<cls>", "<eoc>", *sorted({symbols[i] for i in keep})]
    vocab = {t: i for i, t in enumerate(tokens)}
    config = {"embsize": embsize, "nheads": nheads, "d_hid": d_hid, "nlayers": nlayers, "n_layers_cls": 3,
              "dropout": 0.2, "pad_token": "<pad>", "pad_value": -2, "mask_value": -1, "n_bins": n_bins,
              "input_emb_style": "continuous", "max_seq_len": 1200, "fast_transformer": flash_attention_keys}
    torch.manual_seed(seed)
    model = build_encoder(read_config_dict(config), len(vocab), vocab["<pad>"])
    heads = nn.ModuleDict({
        "decoder": nn.ModuleDict({"fc": nn.Sequential(nn.Linear(embsize, embsize), nn.LeakyReLU(),
                                                      nn.Linear(embsize, embsize), nn.LeakyReLU(),
                                                      nn.Linear(embsize, 1))}),
        "cls_decoder": nn.ModuleDict({"_decoder": nn.Sequential(nn.Linear(embsize, embsize), nn.ReLU(),
                                                                nn.LayerNorm(embsize)),
                                      "out_layer": nn.Linear(embsize, 1)}),
        "mvc_decoder": nn.ModuleDict({"gene2query": nn.Linear(embsize, embsize),
                                      "W": nn.Linear(embsize, embsize, bias=False)}),
    })
    state = {**model.state_dict(), **heads.state_dict()}
    if flash_attention_keys:
        state = {k.replace("self_attn.in_proj_weight", "self_attn.Wqkv.weight")
                 .replace("self_attn.in_proj_bias", "self_attn.Wqkv.bias"): v for k, v in state.items()}
    state = {k: v.clone().contiguous() for k, v in sorted(state.items())}
    (directory / ARGS).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (directory / VOCAB).write_text(json.dumps(vocab, indent=0) + "\n")
    torch.save(state, directory / WEIGHTS)
    return directory
