"""scGPT's perturbation generator (Cui et al. 2024; bowang-lab/scGPT `TransformerGenerator` with its
`AffineExprDecoder`, as the 'simple controls' study ran it) fine-tuned as a response predictor.

Input per gene: token embedding + value encoding of the control cell's expression + a
perturbation-flag embedding (1 = not perturbed, 2 = a target of the perturbation); a core (12
post-norm transformer blocks for the released model; none for `simple_affine`; a per-token MLP with
as many layers for `mlp`); the affine decoder predicts coeff(h)·x + bias(h), x the control cell's
log-normalised value of that gene. Attention is written out with separate q/k/v projections and
`scaled_dot_product_attention` (no torch fused path), so LoRA adapters are always on the forward
path; the released `in_proj` (or flash `Wqkv`) tensors are split into q, k, v on load. Definitions
and every difference from upstream: docs/models/scgpt.md#fine-tuning.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..data.dataset import GENETIC_TYPES
from ..errors import InputError
from ..registry import register
from .checkpoint import directory_hash, load_strict, load_torch_file, require_files
from .finetune import DOCS, SIMPLE_CONTROLS, Cells, FinetuneConfig, LoadInfo, Variant
from .gene_ids import check_coverage, lookup
from .scgpt import (
    CHECKPOINT_FILES,
    FILES,
    MODEL,
    UNUSED_PREFIXES,
    VOCAB,
    WEIGHTS,
    binning,
    input_encoders,
    read_config,
    read_vocab,
    rename_flash_keys,
)

if TYPE_CHECKING:
    import torch

GROUP_PREFIXES = {"input_encoder": ("encoder.", "value_encoder."), "transformer": ("transformer_encoder.",)}
NEW_MODULES = ("pert_encoder", "decoder")
LORA_TARGETS = r"transformer_encoder\.layers\.\d+\.(self_attn\.(q|k|v|out)_proj|linear1|linear2)"


def split_attention(state: dict[str, Any]) -> dict[str, Any]:
    """`self_attn.in_proj_{weight,bias}` (q, k, v stacked, PyTorch's order) as q_proj/k_proj/v_proj."""
    out = {}
    for key, value in state.items():
        stem, sep, kind = key.rpartition(".self_attn.in_proj_")
        if sep:
            for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0), strict=True):
                out[f"{stem}.self_attn.{name}.{kind}"] = part.clone()
        else:
            out[key] = value
    return out


def checkpoint_state(path: Path) -> tuple[dict[str, Any], int, int]:
    """The released state in the generator's names; (state, unused head tensors, renamed flash keys).
    A key outside the input encoders, the transformer and the known heads is an `InputError`."""
    state = load_torch_file(path, MODEL)
    if not isinstance(state, dict):
        raise InputError(path, "weights", "is not a state dict", "use the released best_model.pt")
    state, renamed = rename_flash_keys({k.removeprefix("module."): v for k, v in state.items()})
    unused = [k for k in state if k.startswith(UNUSED_PREFIXES)]
    known = tuple(p for prefixes in GROUP_PREFIXES.values() for p in prefixes)
    unknown = sorted(k for k in state if k not in set(unused) and not k.startswith(known))
    if unknown:
        raise InputError(path, f"{MODEL} weights", f"hold {len(unknown)} tensors of no known module "
                         f"(e.g. {', '.join(unknown[:3])})", "use a released scGPT checkpoint (whole-body or organ)")
    return split_attention({k: v for k, v in state.items() if k not in set(unused)}), len(unused), len(renamed)


def build_generator(config: dict[str, Any], n_tokens: int, pad_id: int, core: str, seed: int) -> torch.nn.Module:
    """The generator for `core`; the input encoders, flag embedding and decoder are drawn from `seed`
    first and the core from `seed + 1`, so a withheld group has the same values in every variant."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    d, heads, hidden, n_layers = config["embsize"], config["nheads"], config["d_hid"], config["nlayers"]
    norm_first = config["pre_norm"]

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d, d) for _ in range(4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, n, _ = x.shape

            def split(t: torch.Tensor) -> torch.Tensor:
                return t.view(b, n, heads, d // heads).transpose(1, 2)

            out = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)))
            return self.out_proj(out.transpose(1, 2).reshape(b, n, d))

    class Layer(nn.Module):
        """nn.TransformerEncoderLayer's math (ReLU, dropout 0), with a real call to every projection."""

        def __init__(self) -> None:
            super().__init__()
            self.self_attn = Attention()
            self.linear1, self.linear2 = nn.Linear(d, hidden), nn.Linear(hidden, d)
            self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if norm_first:
                x = x + self.self_attn(self.norm1(x))
                return x + self.linear2(torch.relu(self.linear1(self.norm2(x))))
            x = self.norm1(x + self.self_attn(x))
            return self.norm2(x + self.linear2(torch.relu(self.linear1(x))))

    class Stack(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleList(Layer() for _ in range(n_layers))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for layer in self.layers:
                x = layer(x)
            return x

    def expr_decoder() -> nn.Module:
        module = nn.Module()
        module.fc = nn.Sequential(nn.Linear(d, d), nn.LeakyReLU(), nn.Linear(d, d), nn.LeakyReLU(), nn.Linear(d, 1))
        return module

    class AffineDecoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.coeff_decoder, self.bias_decoder = expr_decoder(), expr_decoder()

        def forward(self, h: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
            return self.coeff_decoder.fc(h).squeeze(-1) * values + self.bias_decoder.fc(h).squeeze(-1)

    class Generator(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(seed)
            self.encoder, self.value_encoder = input_encoders(config, n_tokens, pad_id)
            self.encoder.embedding.weight.data.uniform_(-0.1, 0.1)  # upstream init_weights
            self.pert_encoder = nn.Embedding(3, d, padding_idx=0)
            self.decoder = AffineDecoder()
            torch.manual_seed(seed + 1)
            if core == "transformer":
                self.transformer_encoder = Stack()
            elif core == "mlp":  # the study's MLP control: n_layers x (Linear + ReLU), then Linear
                self.mlp = nn.Sequential(*[m for _ in range(n_layers) for m in (nn.Linear(d, d), nn.ReLU())],
                                         nn.Linear(d, d))
            self.core = core

        def forward(self, tokens: torch.Tensor, values: torch.Tensor, raw: torch.Tensor,
                    flags: torch.Tensor) -> torch.Tensor:
            h = self.encoder(tokens) + self.value_encoder(values) + self.pert_encoder(flags)
            if self.core == "transformer":
                h = self.transformer_encoder(h)
            elif self.core == "mlp":
                h = self.mlp(h)
            return self.decoder(h, raw)

    return Generator()


class ScGPTFinetune:
    """The `FinetuneAdapter` of scGPT: a checkpoint directory, the dataset's genes as tokens."""

    name = MODEL
    new_modules = NEW_MODULES
    lora_targets = LORA_TARGETS

    def __init__(self, checkpoint: str | Path, genes: pd.DataFrame, min_coverage: float = 0.5) -> None:
        self.checkpoint = require_files(checkpoint, FILES, MODEL)
        self.config = read_config(self.checkpoint)
        self.vocab = read_vocab(self.checkpoint, self.config)
        token = lookup(genes, self.vocab, "symbol")
        self.coverage = check_coverage(MODEL, token >= 0, min_coverage, self.checkpoint / VOCAB)
        self.pad_id = self.vocab[self.config["pad_token"]]
        self.tokens = np.where(token >= 0, token, self.pad_id)  # genes outside the vocabulary: <pad>, as upstream
        self.state, self.n_unused, self.n_renamed = checkpoint_state(self.checkpoint / WEIGHTS)
        self.hash = directory_hash(self.checkpoint)
        self._values: np.ndarray | None = None
        self._raw: np.ndarray | None = None
        self._row: np.ndarray | None = None

    def build(self, spec: Variant, seed: int) -> tuple[torch.nn.Module, LoadInfo]:
        """The variant's generator: its groups copied from the checkpoint (strictly), the rest seeded."""
        from torch import nn

        model = build_generator(self.config, len(self.vocab), self.pad_id, spec.core, seed)
        loaded: list[str] = []
        n_tensors = 0
        for group in sorted(spec.loads):
            prefixes = GROUP_PREFIXES[group]
            modules = nn.ModuleDict({p.rstrip("."): getattr(model, p.rstrip(".")) for p in prefixes
                                     if hasattr(model, p.rstrip("."))})
            part = {k: v for k, v in self.state.items() if k.startswith(prefixes)}
            n_tensors += load_strict(modules, part, self.checkpoint / WEIGHTS, MODEL).n_tensors
            loaded.append(group)
        withheld = sorted(k for k in model.state_dict()
                          if not any(k.startswith(GROUP_PREFIXES[g]) for g in loaded))
        extra = {"unused_head_tensors": self.n_unused, "renamed_flash_keys": self.n_renamed,
                 "checkpoint_hash": self.hash, "gene_coverage": self.coverage.as_dict()}
        return model, LoadInfo(n_tensors, loaded, withheld, extra)

    def prepare(self, cells: Cells, config: FinetuneConfig) -> None:
        """Control cells' encoder inputs: per-cell bins of the non-zero values (binned) or the values (log)."""
        controls = cells.controls
        raw = cells.rows(cells.X, controls)
        values = raw.copy()
        if config.value_input == "binned":
            for i, cell in enumerate(controls):
                nz = np.flatnonzero(raw[i] > 0)
                values[i, nz] = binning(raw[i, nz], self.config["n_bins"], np.random.default_rng([int(cell)]))
        self._raw, self._values = raw, values
        self._row = np.full(cells.X.shape[0], -1, dtype=np.int64)
        self._row[controls] = np.arange(controls.size)

    def inputs(self, control_rows: np.ndarray, flags: np.ndarray, genes: np.ndarray,
               device: torch.device) -> dict[str, torch.Tensor]:
        import torch

        if self._row is None:
            raise RuntimeError("prepare() first")
        rows = self._row[control_rows]
        tokens = np.broadcast_to(self.tokens[genes], (rows.size, genes.size))
        return {"tokens": torch.from_numpy(np.ascontiguousarray(tokens)).to(device),
                "values": torch.from_numpy(self._values[np.ix_(rows, genes)]).to(device),
                "raw": torch.from_numpy(self._raw[np.ix_(rows, genes)]).to(device),
                "flags": torch.from_numpy(np.ascontiguousarray(flags[:, genes])).to(device)}


@register("predictor", "scgpt_finetune", model="scgpt", needs=("cells",), gpu=True, profiles=(),
          perturbation_types=GENETIC_TYPES,
          container="scgpt", checkpoint_files=CHECKPOINT_FILES, docs=DOCS,
          source="Cui et al. 2024 (scGPT perturbation generator); controls: " + SIMPLE_CONTROLS,
          description="scGPT fine-tuned on the training perturbations' cells (control cell + flags → perturbed cell); "
                      "one prediction per --finetune_variants control")
def scgpt_finetune(checkpoint: str | Path, genes: pd.DataFrame, min_coverage: float = 0.5) -> ScGPTFinetune:
    """The scGPT fine-tuning adapter for a checkpoint directory and the dataset's genes."""
    return ScGPTFinetune(checkpoint, genes, min_coverage)
