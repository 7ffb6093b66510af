"""scGPT (Cui et al. 2024, Nature Methods 21:1470) cell and gene embeddings.

A compact PyTorch encoder whose parameter names equal the embedding path of bowang-lab/scGPT
`scgpt/model/model.py::TransformerModel` (`encoder` = GeneEncoder, `value_encoder` =
ContinuousValueEncoder, `transformer_encoder`), so released checkpoints (`args.json`, `vocab.json`,
`best_model.pt`) load into it; the PyPI `scgpt` package is not used. Extraction follows
`scgpt/tasks/cell_emb.py::embed_data`: genes in the vocabulary by symbol, each cell's non-zero genes
with `<cls>` first (value = pad_value), per-cell value binning (`scgpt/preprocess.py::binning`),
random sampling down to `max_length` tokens, the `<cls>` output L2-normalised. Definitions and
differences: docs/models/scgpt.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import InputError
from .adapters import foundation_model
from .checkpoint import (
    LoadReport,
    ModelEmbedding,
    RunOptions,
    autocast,
    batches,
    directory_hash,
    load_strict,
    load_torch_file,
    require_files,
    resolve_device,
    seed_everything,
)
from .gene_ids import check_coverage, lookup

if TYPE_CHECKING:
    import torch

MODEL = "scGPT"
ARGS, VOCAB, WEIGHTS = "args.json", "vocab.json", "best_model.pt"
FILES = (ARGS, VOCAB, WEIGHTS)
# What a released directory always holds (globs; 'a|b': either), checked before any task runs.
CHECKPOINT_FILES = FILES
# Heads of the released checkpoints that the embedding path never runs (upstream's load_pretrained
# skips them too); their tensors are counted, every other unknown key is an error.
UNUSED_PREFIXES = ("decoder.", "cls_decoder.", "mvc_decoder.", "grad_reverse_discriminator.", "batch_encoder.",
                   "dsbn.", "bn.", "flag_encoder.", "pert_encoder.")
MAX_VALUE = 512.0  # ContinuousValueEncoder clamps inputs at this value


def read_config(checkpoint: Path) -> dict[str, Any]:
    """Hyper-parameters from args.json (upstream names), with the embedding task's defaults."""
    try:
        args = json.loads((checkpoint / ARGS).read_text())
    except ValueError as err:
        raise InputError(checkpoint / ARGS, "json", f"cannot be parsed ({err})", "restore the released args.json") from err
    missing = [k for k in ("embsize", "nheads", "d_hid", "nlayers") if k not in args]
    if missing:
        raise InputError(checkpoint / ARGS, missing[0], "is missing", "use the args.json released with the weights")
    style = args.get("input_emb_style", "continuous")
    if style != "continuous":
        raise InputError(checkpoint / ARGS, "input_emb_style", f"is {style!r}; only 'continuous' (the released "
                         "whole-body and organ checkpoints) is supported", "use a continuous-value checkpoint")
    return read_config_dict(args)


def read_vocab(checkpoint: Path, config: dict[str, Any]) -> dict[str, int]:
    try:
        vocab = {str(k): int(v) for k, v in json.loads((checkpoint / VOCAB).read_text()).items()}
    except (ValueError, AttributeError) as err:
        raise InputError(checkpoint / VOCAB, "json", f"is not a token -> id mapping ({err})",
                         "restore the released vocab.json") from err
    for token in (config["pad_token"], "<cls>"):
        if token not in vocab:
            raise InputError(checkpoint / VOCAB, token, "special token missing", "use the released vocab.json")
    return vocab


def input_encoders(config: dict[str, Any], n_tokens: int, padding_idx: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Upstream's GeneEncoder (token embedding + LayerNorm) and ContinuousValueEncoder, with its names."""
    import torch
    from torch import nn

    d = config["embsize"]

    class GeneEncoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = nn.Embedding(n_tokens, d, padding_idx=padding_idx)
            self.enc_norm = nn.LayerNorm(d)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return self.enc_norm(self.embedding(tokens))

    class ContinuousValueEncoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear1, self.linear2, self.norm = nn.Linear(1, d), nn.Linear(d, d), nn.LayerNorm(d)

        def forward(self, values: torch.Tensor) -> torch.Tensor:
            x = torch.clamp(values.unsqueeze(-1), max=MAX_VALUE)
            return self.norm(self.linear2(torch.relu(self.linear1(x))))

    return GeneEncoder(), ContinuousValueEncoder()


def build_encoder(config: dict[str, Any], n_tokens: int, padding_idx: int) -> torch.nn.Module:
    """GeneEncoder + ContinuousValueEncoder + nn.TransformerEncoder with upstream's parameter names."""
    import torch
    from torch import nn

    d = config["embsize"]

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder, self.value_encoder = input_encoders(config, n_tokens, padding_idx)
            layer = nn.TransformerEncoderLayer(d, config["nheads"], config["d_hid"], dropout=0.0, batch_first=True,
                                               norm_first=config["pre_norm"])
            self.transformer_encoder = nn.TransformerEncoder(layer, config["nlayers"], enable_nested_tensor=False)

        def forward(self, tokens: torch.Tensor, values: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
            hidden = self.encoder(tokens) + self.value_encoder(values)
            return self.transformer_encoder(hidden, src_key_padding_mask=padding)

    return Encoder()


def rename_flash_keys(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """flash-attn checkpoints store attention as `self_attn.Wqkv.{weight,bias}`: same q,k,v stacking as
    PyTorch's `in_proj_{weight,bias}`, so only the names change."""
    out, renamed = {}, {}
    for key, value in state.items():
        new = key.replace("self_attn.Wqkv.weight", "self_attn.in_proj_weight").replace(
            "self_attn.Wqkv.bias", "self_attn.in_proj_bias")
        if new != key:
            renamed[key] = new
        out[new] = value
    return out, renamed


def load_model(checkpoint: Path, config: dict[str, Any], vocab: dict[str, int],
               device: torch.device) -> tuple[torch.nn.Module, LoadReport, int]:
    """Strictly load the encoder; returns (model, report, tensors of unused heads)."""
    state = load_torch_file(checkpoint / WEIGHTS, MODEL)
    if not isinstance(state, dict):
        raise InputError(checkpoint / WEIGHTS, "weights", "is not a state dict", "use the released best_model.pt")
    state, renamed = rename_flash_keys({k.removeprefix("module."): v for k, v in state.items()})
    unused = [k for k in state if k.startswith(UNUSED_PREFIXES)]
    model = build_encoder(config, len(vocab), vocab[config["pad_token"]])
    report = load_strict(model, {k: v for k, v in state.items() if k not in set(unused)}, checkpoint / WEIGHTS, MODEL)
    report.renamed = renamed
    return model.to(device).eval(), report, len(unused)


def binning(values: np.ndarray, n_bins: int, rng: np.random.Generator) -> np.ndarray:
    """Per-cell value binning of non-zero values (upstream `binning`): edges are the quantiles
    0, 1/(n_bins-2), …, 1 of the cell's values; a value sitting on edges gets a bin drawn
    uniformly between its left and right `np.digitize` positions (upstream draws with unseeded
    `np.random.rand`; here with the cell's seeded generator). Results lie in 1 … n_bins-1."""
    if values.size == 0:
        return values.astype(np.float32)
    edges = np.quantile(values, np.linspace(0, 1, n_bins - 1))
    left, right = np.digitize(values, edges), np.digitize(values, edges, right=True)
    draws = rng.random(values.size)
    return np.ceil(draws * (left - right) + right).astype(np.float32)


def cell_tokens(counts: sp.csr_matrix, token: np.ndarray, cell: int, config: dict[str, Any], max_length: int,
                cls_id: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`<cls>` + the cell's expressed vocabulary genes (sampled without replacement to max_length), binned values."""
    rng = np.random.default_rng([seed, cell])
    start, end = counts.indptr[cell], counts.indptr[cell + 1]
    cols, vals = counts.indices[start:end], counts.data[start:end]
    keep = (token[cols] >= 0) & (vals > 0)
    ids, vals = token[cols[keep]], vals[keep]
    binned = binning(vals, config["n_bins"], rng)
    if ids.size > max_length - 1:
        chosen = np.sort(rng.choice(ids.size, size=max_length - 1, replace=False))
        ids, binned = ids[chosen], binned[chosen]
    return (np.concatenate([[cls_id], ids]).astype(np.int64),
            np.concatenate([[config["pad_value"]], binned]).astype(np.float32))


def _setup(checkpoint: Path, genes: pd.DataFrame, options: RunOptions):
    checkpoint = require_files(checkpoint, FILES, MODEL)
    config = read_config(checkpoint)
    vocab = read_vocab(checkpoint, config)
    token = lookup(genes, vocab, "symbol")
    coverage = check_coverage(MODEL, token >= 0, options.min_coverage, checkpoint / VOCAB)
    seed_everything(options.seed)
    device = resolve_device(options.device)
    model, report, n_unused = load_model(checkpoint, config, vocab, device)
    return checkpoint, config, vocab, token, coverage, device, model, report, n_unused


@foundation_model("cells", "scgpt", "Cui et al. 2024, scGPT",
                  "<cls> state over binned expression, L2-normalised",
                  checkpoint_files=CHECKPOINT_FILES)
def embed_cells(counts: sp.spmatrix, genes: pd.DataFrame, checkpoint: Path, options: RunOptions, *,
                max_length: int = 1200) -> ModelEmbedding:
    """One L2-normalised `<cls>` output per cell (cells in input order, fixed batches)."""
    import torch

    if int(max_length) < 2:
        raise InputError("--model-option", "max_length", f"is {max_length}", "use at least 2 (<cls> + one gene)")
    counts = sp.csr_matrix(counts, dtype=np.float32)
    if counts.shape[1] != len(genes):
        raise InputError("counts matrix", "genes", f"has {counts.shape[1]} columns for {len(genes)} genes",
                         "pass the counts of exactly the genes in the gene table, in the same order")
    checkpoint, config, vocab, token, coverage, device, model, report, n_unused = _setup(checkpoint, genes, options)
    pad_id, cls_id = vocab[config["pad_token"]], vocab["<cls>"]
    values = np.zeros((counts.shape[0], config["embsize"]), dtype=np.float32)
    with torch.inference_mode():
        for rows in batches(counts.shape[0], options.batch_size, "scgpt: cells embedded"):
            cells = [cell_tokens(counts, token, c, config, int(max_length), cls_id, options.seed)
                     for c in range(rows.start, rows.stop)]
            width = max(len(t) for t, _ in cells)
            tokens = np.full((len(cells), width), pad_id, dtype=np.int64)
            vals = np.full((len(cells), width), config["pad_value"], dtype=np.float32)
            for i, (t, v) in enumerate(cells):
                tokens[i, : len(t)], vals[i, : len(v)] = t, v
            tokens_t = torch.from_numpy(tokens).to(device)
            with autocast(device, options.precision):
                hidden = model(tokens_t, torch.from_numpy(vals).to(device), tokens_t.eq(pad_id))
            values[rows] = hidden[:, 0].float().cpu().numpy()
    values /= np.linalg.norm(values, axis=1, keepdims=True)
    params = {"max_length": int(max_length), "n_bins": config["n_bins"], "pad_value": config["pad_value"],
              "pooling": "cls", "seed": options.seed, "precision": options.precision,
              "unused_head_tensors": n_unused, "renamed_flash_keys": len(report.renamed)}
    return ModelEmbedding(values, params, report, coverage, directory_hash(checkpoint))


@foundation_model("genes", "scgpt", "Cui et al. 2024, scGPT",
                  "gene-encoder embeddings of the targets",
                  checkpoint_files=CHECKPOINT_FILES)
def embed_genes(genes: pd.DataFrame, checkpoint: Path, options: RunOptions) -> ModelEmbedding:
    """Gene-encoder output (token embedding + enc_norm) of each covered gene, in dataset order."""
    import torch

    checkpoint, config, vocab, token, coverage, device, model, report, n_unused = _setup(checkpoint, genes, options)
    covered = np.flatnonzero(token >= 0)
    with torch.inference_mode():
        values = model.encoder(torch.from_numpy(token[covered]).to(device)).float().cpu().numpy()
    params = {"kind": "gene_encoder", "unused_head_tensors": n_unused}
    return ModelEmbedding(values, params, report, coverage, directory_hash(checkpoint),
                          index=[str(g) for g in genes.index[covered]])


def read_config_dict(args: dict[str, Any]) -> dict[str, Any]:
    """`read_config` for an in-memory args dict (the same defaults)."""
    return {"embsize": int(args["embsize"]), "nheads": int(args["nheads"]), "d_hid": int(args["d_hid"]),
            "nlayers": int(args["nlayers"]),
            "pad_token": args.get("pad_token", "<pad>"), "pad_value": float(args.get("pad_value", -2)),
            "n_bins": int(args.get("n_bins", 51)), "pre_norm": bool(args.get("pre_norm", False))}
