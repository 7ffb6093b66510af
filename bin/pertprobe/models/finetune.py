"""Fine-tuning a foundation model as a response predictor, with the controls that show what
pretraining adds (the 'simple controls' study, Wong, Hill & Moccia; docs/models/finetune.md).

Model-agnostic: an adapter (`FinetuneAdapter`, e.g. models/scgpt_finetune.py) builds the network
for a `Variant` (which checkpoint groups are loaded, which core sits between the input encoders
and the expression decoder, LoRA or full training) and turns control cells plus perturbation
flags into its inputs. This module owns what every adapter shares, so every variant sees exactly
the same data: the cells of the split's training perturbations, the pairs (a perturbed cell with
a control cell of the same batch), the validation perturbations, the batches and gene subsets
(all drawn from one generator seeded by split seed and fold only), the training loop (Adam, a
per-epoch step decay, gradient clipping, selection on the validation perturbations' pseudobulk
Pearson) and the prediction of a perturbation as the mean over a fixed pool of control cells.
"""

from __future__ import annotations

import copy
import hashlib
import os
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import InputError
from ..registry import PROFILES, entries, register

if TYPE_CHECKING:
    import torch

DOCS = "docs/models/finetune.md"
SIMPLE_CONTROLS = "Wong, Hill & Moccia, 'simple controls' (bioRxiv; pfizer-opensource/perturb_seq)"
GROUPS = ("input_encoder", "transformer")  # checkpoint tensor groups a variant may load
CORES = ("transformer", "none", "mlp")
NOT_PERTURBED, PERTURBED = 1, 2  # flag ids (0 is the padding row), as the study's scGPT runs
PRECISIONS = ("fp32", "bf16", "fp16")  # autocast on CUDA; fp16 with a gradient scaler (upstream)
# Measurements of the machine, not of the model: in training.csv only, so predictions are byte-stable.
TIMING = ("train_seconds", "seconds_per_epoch", "seconds_total", "peak_memory_mb", "cells_per_second",
          "tokens_per_second", "device", "threads")


@dataclass(frozen=True)
class Variant:
    """One weight-loading / architecture control of a fine-tuned predictor."""

    name: str
    loads: frozenset[str]  # checkpoint groups copied into the model (the rest keeps its seeded init)
    core: str = "transformer"  # transformer | none (input encoders straight to the decoder) | mlp
    lora: bool = False  # freeze every loaded tensor; train low-rank adapters + the new modules


def _variant(name: str, description: str, *, loads: tuple[str, ...] = (), core: str = "transformer",
             lora: bool = False) -> Variant:
    spec = Variant(name, frozenset(loads), core, lora)
    register("finetune_variant", name, description=description, source=SIMPLE_CONTROLS, docs=DOCS,
             profiles=PROFILES)(spec)
    return spec


_variant("full", "every foundation weight loaded, every weight trained", loads=GROUPS)
_variant("no_pretraining", "same architecture, every weight randomly initialised")
_variant("no_input_encoder", "foundation weights except the gene-token embedding and value encoder",
         loads=("transformer",))
_variant("no_transformer", "foundation weights except the transformer blocks", loads=("input_encoder",))
_variant("lora", "foundation weights frozen; low-rank adapters on attention and feed-forward projections",
         loads=GROUPS, lora=True)
_variant("simple_affine", "the model without its transformer: input encoders straight to the decoder "
         "(random init, as the study)", core="none")
_variant("mlp", "the transformer replaced by a per-token MLP with as many layers (random init)", core="mlp")


def variant(name: str) -> Variant:
    """The registered variant `name` (ValueError listing the choices otherwise)."""
    from ..registry import get

    return get("finetune_variant", name).func


def variant_names() -> list[str]:
    return [e.name for e in entries("finetune_variant")]


@dataclass(frozen=True)
class FinetuneConfig:
    """Hyper-parameters (defaults: the study's scGPT runs = upstream's perturbation tutorial)."""

    epochs: int = 15
    max_steps: int = 0  # optimiser steps over the whole run (0: no cap; the test profile uses a few)
    learning_rate: float = 1e-4
    lr_decay: float = 0.9  # StepLR gamma, one step per epoch
    batch_size: int = 64
    eval_batch_size: int = 16
    max_cells_per_perturbation: int = 0  # training cells per perturbation (seeded sample; 0: all)
    max_seq_len: int = 1536  # genes per training batch (one random subset per batch when more)
    keep_targets: bool = False  # force a batch's target genes into its gene subset (upstream: no)
    pool_size: int = 256  # control cells a perturbation is predicted from (averaged to pseudobulk)
    patience: int = 10  # epochs without a better validation Pearson before stopping
    validation_fraction: float = 0.15  # training perturbations held out to select the epoch
    clip_norm: float = 1.0
    lora_rank: int = 8
    lora_alpha: float = 32.0
    lora_dropout: float = 0.1
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast on CUDA; fp16 with a gradient scaler, as upstream)
    device: str = "auto"
    threads: int = 1
    value_input: str = "binned"  # binned (per-cell bins, as pretraining) | log (upstream's tutorial)

    def __post_init__(self) -> None:
        checks = {"epochs": self.epochs >= 1, "max_steps": self.max_steps >= 0, "batch_size": self.batch_size >= 1,
                  "eval_batch_size": self.eval_batch_size >= 1, "max_seq_len": self.max_seq_len >= 2,
                  "pool_size": self.pool_size >= 1, "learning_rate": self.learning_rate > 0,
                  "lr_decay": 0 < self.lr_decay <= 1, "validation_fraction": 0 <= self.validation_fraction < 1,
                  "max_cells_per_perturbation": self.max_cells_per_perturbation >= 0,
                  "lora_rank": self.lora_rank >= 1, "precision": self.precision in PRECISIONS,
                  "value_input": self.value_input in ("binned", "log"), "threads": self.threads >= 1}
        for name, ok in checks.items():
            if not ok:
                raise InputError("fine-tuning options", name, f"has the invalid value {getattr(self, name)!r}",
                                 "see docs/models/finetune.md for the allowed range")


@dataclass
class Cells:
    """Log-normalised cells of one processed dataset, with what each perturbation targets."""

    X: sp.csr_matrix  # cells x genes, float32
    perturbation: np.ndarray
    batch: np.ndarray
    control_label: str
    genes: pd.Index
    targets: dict[str, list[int]]  # perturbation -> columns of its measured target genes

    @property
    def controls(self) -> np.ndarray:
        return np.flatnonzero(self.perturbation == self.control_label)

    def rows(self, X: np.ndarray | sp.spmatrix, idx: np.ndarray) -> np.ndarray:
        out = X[idx]
        return np.asarray(out.toarray() if sp.issparse(out) else out, dtype=np.float32)


def read_cells(h5ad_path: str, pseudobulk: Any) -> Cells:
    """The processed dataset's cells (log-normalised X) with the pseudobulk's measured targets."""
    import anndata as ad

    return cells_from_anndata(ad.read_h5ad(h5ad_path), pseudobulk, h5ad_path)


def cells_from_anndata(adata: Any, pseudobulk: Any, source: str = "processed h5ad") -> Cells:
    """`Cells` of a processed AnnData (obs perturbation, batch; the pseudobulk's genes and targets)."""
    for column in ("perturbation", "batch"):
        if column not in adata.obs:
            raise InputError(source, f"obs['{column}']", "is missing", "use the processed .h5ad PREPROCESS wrote")
    if not adata.var_names.equals(pseudobulk.genes):
        raise InputError(source, "var_names", "differ from the pseudobulk's genes",
                         "pass the processed .h5ad and pseudobulk of the same PREPROCESS run")
    column = {g: i for i, g in enumerate(adata.var_names)}
    return Cells(X=sp.csr_matrix(adata.X, dtype=np.float32), perturbation=adata.obs["perturbation"].astype(str).to_numpy(),
                 batch=adata.obs["batch"].astype(str).to_numpy(), control_label=pseudobulk.control_label,
                 genes=adata.var_names, targets={p: [column[g] for g in genes] for p, genes in pseudobulk.targets.items()})


@dataclass
class LoadInfo:
    """What building a variant's network did with the checkpoint."""

    n_tensors_loaded: int
    loaded_groups: list[str]
    withheld: list[str]  # model tensors that keep their seeded initialisation
    extra: dict[str, Any] = field(default_factory=dict)


class FinetuneAdapter(Protocol):
    """What a foundation model supplies to be fine-tuned here."""

    name: str
    new_modules: tuple[str, ...]  # modules the checkpoint never holds (always trained)
    lora_targets: str  # regex of the module names LoRA adapts (full match)

    def build(self, spec: Variant, seed: int) -> tuple[torch.nn.Module, LoadInfo]: ...

    def prepare(self, cells: Cells, config: FinetuneConfig) -> None: ...

    def inputs(self, control_rows: np.ndarray, flags: np.ndarray, genes: np.ndarray,
               device: torch.device) -> dict[str, torch.Tensor]: ...


# ---- data every variant shares ---------------------------------------------------------------

@dataclass
class Plan:
    """The split's training pairs, validation perturbations and prediction pool (variant-independent)."""

    fit: list[str]
    validation: list[str]
    cell: np.ndarray  # perturbed (or control) cell of each training pair
    control: np.ndarray  # its paired control cell
    pair_perturbation: np.ndarray  # the cell's perturbation label
    pool: np.ndarray  # control cells every prediction starts from
    same_batch_pairs: int
    n_cells_used: dict[str, int]


def data_rng(seed: int, fold: int) -> np.random.Generator:
    """The one generator of every data draw of a split (pairs, batches, gene subsets, pool)."""
    return np.random.default_rng([seed, fold, 101])


def plan(cells: Cells, train: list[str], config: FinetuneConfig, rng: np.random.Generator) -> Plan:
    """Validation perturbations, pairs (each fitting cell with a random control of its batch, plus
    every control cell with itself, as GEARS-style datasets hold) and the prediction pool."""
    train = sorted(train)
    n_val = int(np.ceil(config.validation_fraction * len(train))) if len(train) >= 4 else 0
    validation = sorted(rng.choice(train, size=n_val, replace=False).tolist()) if n_val else []
    fit = [p for p in train if p not in set(validation)]
    controls = cells.controls
    by_batch = {b: controls[cells.batch[controls] == b] for b in np.unique(cells.batch[controls])}
    cell_rows, ctrl_rows, labels, used, same = [], [], [], {}, 0
    for pert in [*fit, cells.control_label]:
        idx = controls if pert == cells.control_label else np.flatnonzero(cells.perturbation == pert)
        if config.max_cells_per_perturbation and idx.size > config.max_cells_per_perturbation:
            idx = np.sort(rng.choice(idx, size=config.max_cells_per_perturbation, replace=False))
        used[pert] = int(idx.size)
        if pert == cells.control_label:
            partner = idx
        else:
            partner = np.empty(idx.size, dtype=np.int64)
            for i, c in enumerate(idx):
                pool = by_batch.get(cells.batch[c])
                same += pool is not None
                pool = controls if pool is None else pool
                partner[i] = pool[rng.integers(pool.size)]
        cell_rows.append(idx)
        ctrl_rows.append(partner)
        labels.append(np.full(idx.size, pert, dtype=object))
    pool = np.sort(rng.choice(controls, size=min(config.pool_size, controls.size), replace=False))
    return Plan(fit, validation, np.concatenate(cell_rows), np.concatenate(ctrl_rows), np.concatenate(labels),
                pool, same, used)


def flag_matrix(cells: Cells, perturbations: np.ndarray) -> np.ndarray:
    """NOT_PERTURBED everywhere, PERTURBED at each row's measured target genes."""
    flags = np.full((len(perturbations), len(cells.genes)), NOT_PERTURBED, dtype=np.int64)
    for row, pert in enumerate(perturbations):
        flags[row, cells.targets.get(pert, [])] = PERTURBED
    return flags


def gene_subset(n_genes: int, config: FinetuneConfig, rng: np.random.Generator,
                required: np.ndarray | None = None) -> np.ndarray:
    """All genes, or one random subset of max_seq_len for the batch (targets first with keep_targets)."""
    if n_genes <= config.max_seq_len:
        return np.arange(n_genes)
    order = rng.permutation(n_genes)
    if config.keep_targets and required is not None and required.size:
        required = np.unique(required)[: config.max_seq_len]
        order = np.concatenate([required, order[~np.isin(order, required)]])
    return np.sort(order[: config.max_seq_len])


# ---- network set-up -----------------------------------------------------------------------------

def apply_lora(model: torch.nn.Module, adapter: FinetuneAdapter, config: FinetuneConfig) -> torch.nn.Module:
    """PEFT LoRA on the adapter's target projections; everything else frozen except the new modules."""
    from peft import LoraConfig, inject_adapter_in_model

    lora = LoraConfig(target_modules=adapter.lora_targets, r=config.lora_rank, lora_alpha=config.lora_alpha,
                      lora_dropout=config.lora_dropout, bias="none")
    model = inject_adapter_in_model(lora, model)
    for name, param in model.named_parameters():
        param.requires_grad = "lora_" in name or name.split(".")[0] in adapter.new_modules
    return model


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    params = list(model.parameters())
    lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    return {"n_parameters": sum(p.numel() for p in params) - lora, "n_lora_parameters": lora,
            "n_trainable": sum(p.numel() for p in params if p.requires_grad)}


def torch_seed(seed: int, fold: int, salt: int) -> int:
    return int(np.random.SeedSequence([seed, fold, salt]).generate_state(1)[0])


# ---- training and prediction ------------------------------------------------------------------

def _peak_memory_mb(device: torch.device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def predict_profiles(model: torch.nn.Module, adapter: FinetuneAdapter, cells: Cells, pool_rows: np.ndarray,
                     perturbations: list[str], config: FinetuneConfig, device: torch.device) -> np.ndarray:
    """Mean prediction over the control pool for each perturbation (all genes in one sequence)."""
    import torch

    from .checkpoint import autocast

    genes = np.arange(len(cells.genes))
    out = np.zeros((len(perturbations), len(genes)), dtype=np.float64)
    model.eval()
    with torch.no_grad():
        for row, pert in enumerate(perturbations):
            total = np.zeros(len(genes), dtype=np.float64)
            for start in range(0, len(pool_rows), config.eval_batch_size):
                ctrl = pool_rows[start:start + config.eval_batch_size]
                flags = flag_matrix(cells, np.full(len(ctrl), pert, dtype=object))
                with autocast(device, config.precision):
                    pred = model(**adapter.inputs(ctrl, flags, genes, device))
                total += pred.float().sum(dim=0).double().cpu().numpy()
            out[row] = total / len(pool_rows)
    return out


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denom = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    r = np.divide((a * b).sum(axis=1), denom, out=np.full(len(a), np.nan), where=denom > 0)
    return float(np.nanmean(r)) if np.isfinite(r).any() else float("nan")


@dataclass
class FinetuneResult:
    """Predicted test pseudobulk plus the run's training record and per-epoch history."""

    profiles: np.ndarray
    record: dict[str, Any]
    history: list[dict[str, Any]]
    info: dict[str, Any]
    model: Any = field(default=None, repr=False)  # the selected network (tests inspect it)


def finetune(adapter: FinetuneAdapter, spec: Variant, cells: Cells, train: list[str], test: list[str],
             config: FinetuneConfig, seed: int, fold: int,
             on_epoch: Callable[[dict[str, Any]], None] | None = None) -> FinetuneResult:
    """Train variant `spec` on the split's training perturbations and predict `test` from controls."""
    import torch

    from .checkpoint import autocast, resolve_device

    overlap = sorted(set(train) & set(test))
    if overlap:
        raise ValueError(f"perturbations in both train and test: {overlap[:5]}")
    torch.set_num_threads(config.threads)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS (read at its first call)
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = resolve_device(config.device)
    precision = config.precision if device.type == "cuda" else "fp32"
    rng = data_rng(seed, fold)
    the_plan = plan(cells, train, config, rng)
    adapter.prepare(cells, config)
    model, load = adapter.build(spec, torch_seed(seed, fold, 1))
    if spec.lora:
        model = apply_lora(model, adapter, config)
    model = model.to(device)
    counts = parameter_counts(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    torch.manual_seed(torch_seed(seed, fold, 2))  # dropout (LoRA) draws
    optimiser = torch.optim.Adam(trainable, lr=config.learning_rate)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    scheduler = torch.optim.lr_scheduler.StepLR(optimiser, step_size=1, gamma=config.lr_decay)
    observed_val = (np.vstack([cells.rows(cells.X, np.flatnonzero(cells.perturbation == p)).mean(axis=0)
                               for p in the_plan.validation]) if the_plan.validation else None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    digest = hashlib.sha256()
    history: list[dict[str, Any]] = []
    best = (-np.inf, 0, None)
    steps, stale, n_genes = 0, 0, len(cells.genes)
    start_all = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        model.train()
        order = rng.permutation(the_plan.cell.size)
        loss_sum, n_seen, tokens = torch.zeros((), device=device), 0, 0  # summed on the device: no sync per step
        for first in range(0, order.size, config.batch_size):
            if config.max_steps and steps >= config.max_steps:
                break
            batch = order[first:first + config.batch_size]
            flags = flag_matrix(cells, the_plan.pair_perturbation[batch])
            genes = gene_subset(n_genes, config, rng, np.flatnonzero((flags == PERTURBED).any(axis=0)))
            digest.update(batch.tobytes() + genes.tobytes())
            target = torch.from_numpy(cells.rows(cells.X, the_plan.cell[batch])[:, genes]).to(device)
            with autocast(device, config.precision):
                pred = model(**adapter.inputs(the_plan.control[batch], flags, genes, device))
            loss = torch.nn.functional.mse_loss(pred.float(), target)
            optimiser.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimiser)
            torch.nn.utils.clip_grad_norm_(trainable, config.clip_norm)
            scaler.step(optimiser)
            scaler.update()
            steps += 1
            loss_sum += loss.detach() * batch.size
            n_seen += batch.size
            tokens += batch.size * genes.size
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_seconds = time.perf_counter() - start
        val_pearson = val_mse = float("nan")
        if observed_val is not None:
            predicted = predict_profiles(model, adapter, cells, the_plan.pool, the_plan.validation, config, device)
            val_pearson = _pearson_rows(predicted, observed_val)
            val_mse = float(np.mean((predicted - observed_val) ** 2))
        score = val_pearson if observed_val is not None else float(epoch)
        improved = np.isfinite(score) and score > best[0]
        if improved:
            best = (score, epoch, copy.deepcopy(model.state_dict()))
        stale = 0 if improved else stale + 1
        row = {"epoch": epoch, "learning_rate": optimiser.param_groups[0]["lr"], "steps": steps,
               "train_mse": float(loss_sum) / n_seen if n_seen else float("nan"), "val_mse": val_mse,
               "val_pearson": val_pearson, "selected": bool(improved), "train_seconds": train_seconds,
               "cells": n_seen, "tokens": tokens,
               "cells_per_second": n_seen / train_seconds if train_seconds > 0 else float("nan"),
               "tokens_per_second": tokens / train_seconds if train_seconds > 0 else float("nan")}
        history.append(row)
        if on_epoch:
            on_epoch(row)
        scheduler.step()
        if (config.max_steps and steps >= config.max_steps) or stale >= config.patience or n_seen == 0:
            break
    total_seconds = time.perf_counter() - start_all
    if best[2] is not None:
        model.load_state_dict(best[2])
    profiles = predict_profiles(model, adapter, cells, the_plan.pool, list(test), config, device)
    last = history[-1]
    train_total = sum(h["train_seconds"] for h in history)
    unflagged = {p: len(cells.targets.get(p, [])) for p in test}
    record = {"variant": spec.name, "seed": seed, "fold": fold, **counts,
              "n_tensors_loaded": load.n_tensors_loaded, "loaded_groups": ";".join(load.loaded_groups),
              "epochs": len(history), "best_epoch": best[1], "steps": steps,
              "seconds_per_epoch": train_total / len(history),
              "seconds_total": total_seconds, "peak_memory_mb": _peak_memory_mb(device),
              "final_train_mse": last["train_mse"], "final_val_mse": last["val_mse"],
              "best_val_pearson": best[0] if observed_val is not None else float("nan"),
              # totals over training time (first epoch's warm-up and host-side batch assembly included)
              "cells_per_second": sum(h["cells"] for h in history) / max(train_total, 1e-12),
              "tokens_per_second": sum(h["tokens"] for h in history) / max(train_total, 1e-12),
              "n_train_pairs": int(the_plan.cell.size), "n_validation": len(the_plan.validation),
              "pool_size": int(the_plan.pool.size), "device": str(device), "precision": precision,
              "threads": config.threads, "batch_digest": digest.hexdigest()[:16]}
    info = {**{k: v for k, v in record.items() if k not in TIMING},
            "history": [{k: v for k, v in h.items() if k not in TIMING} for h in history],
            "config": {k: v for k, v in asdict(config).items() if k not in ("device", "threads")},
            "validation": the_plan.validation, "load": asdict(load),
            "same_batch_pairs": the_plan.same_batch_pairs,
            "n_unflagged": sum(v == 0 for v in unflagged.values()),
            "unflagged": [p for p, v in unflagged.items() if v == 0]}
    return FinetuneResult(profiles, record, history, info, model)
