#!/usr/bin/env python3
"""Training throughput of scGPT fine-tuning per variant at the released whole-human size, against the FLOP bound.

For each fine-tuning variant (models/finetune.py) builds the perturbation generator of
models/scgpt_finetune.py at the whole-human model's size (vocabulary 60,697 tokens, 12 post-norm
blocks of width 512, 8 heads, feed-forward 512) with random weights (loading released weights or not
does not change the cost, so full / no_pretraining / no_input_encoder / no_transformer are the same
computation and their rows differ only by noise), applies LoRA (rank, alpha, dropout of
`FinetuneConfig`) for `lora`, and times the training step `finetune()` runs: forward, MSE loss,
backward, gradient clipping at `clip_norm`, Adam at `learning_rate`. One batch of B cells x L genes
is made once on the device (the same gene subset for every cell, as the adapter does), so the
host-side data pipeline of `finetune()` (flag matrix, gene subsets, sparse row gathers,
host-to-device copies) and validation are not timed.

The rate is compared with a FLOP bound: the model's training FLOPs per token, counted analytically
(see FORMULA), against a dense matmul rate measured in the same run and dtype on the same device
(the "achievable peak"); achieved / bound is the model FLOP utilisation (MFU). Speed numbers are
printed, never asserted.

Run: python tests/benchmarks/bench_finetune.py [--batch B] [--genes L] [--steps N] [--warmup N]
     [--variants full,lora,...] [--device cpu|cuda] [--precision fp32,bf16] [--threads T]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "bin") not in sys.path:
    sys.path.insert(0, str(ROOT / "bin"))

from pertprobe.models.finetune import (  # noqa: E402
    NOT_PERTURBED,
    PERTURBED,
    FinetuneConfig,
    apply_lora,
    parameter_counts,
    variant,
    variant_names,
)
from pertprobe.models.scgpt import read_config_dict  # noqa: E402
from pertprobe.models.scgpt_finetune import ScGPTFinetune, build_generator  # noqa: E402

# scGPT whole-human (scGPT_human): args.json embsize 512, nheads 8, d_hid 512, nlayers 12; vocab.json 60,697 tokens.
ARCHITECTURE = {"embsize": 512, "nheads": 8, "d_hid": 512, "nlayers": 12}
N_TOKENS = 60697
PAD_ID = 60694  # any id works for the cost; the released vocabulary's <pad> sits near its end
# (batch, steps, warmup, matmul size). On CPU the batch is reduced from 8 to 2 and the timed steps from 2 to 1
# so that the default run of all seven variants stays under ~3 min on 2 cores (one step of B=8 x 1,536 genes
# takes ~30 s there).
DEFAULTS = {"cpu": (2, 1, 1, 2048), "cuda": (64, 10, 3, 8192)}
FORMULA = """\
FLOPs per token (one token = one gene of one cell; L genes per cell, d = 512, n = 12 blocks):
  W       = sum over every nn.Linear applied per token of in_features x out_features
            (value encoder 1->d and d->d; per block q, k, v, out d x d and linear1/linear2 d x d_hid;
            decoder 2 x (d x d, d x d, d x 1); the MLP core 13 x d x d; LoRA's A and B, r x (in + out) each)
  A       = 4 L d per block (QK^T 2Ld + attention x V 2Ld), transformer core only
  forward = 2 W + n A          training = 3 x forward (backward = 2 x forward: input and weight gradients)
  Not counted: embedding lookups (gene token, perturbation flag; not matmuls), LayerNorm, activations,
  softmax, biases, the loss, Adam and clipping (elementwise, memory-bound), flash-attention recomputation.
  bound tokens/s = measured dense matmul FLOP/s / training FLOPs per token;  MFU = achieved / bound.
  exec/3x: FLOPs the step really executes / the 3x count; below 1 where frozen weights need no weight
  gradient (lora) and the frozen value encoder no input gradient."""


def linear_shapes(model) -> list[tuple[str, int, bool]]:
    """(name, in x out, weight trainable) of every nn.Linear of the model (LoRA's base, A and B included)."""
    from torch import nn

    return [(name, m.in_features * m.out_features, m.weight.requires_grad)
            for name, m in model.named_modules() if isinstance(m, nn.Linear)]


def flops_per_token(model, core: str, genes: int, config: dict) -> dict[str, float]:
    """Forward, training (3x convention) and executed-training FLOPs per token; see FORMULA."""
    linears = linear_shapes(model)
    weights = sum(w for _, w, _ in linears)
    attention = 4 * genes * config["embsize"] * config["nlayers"] if core == "transformer" else 0
    forward = 2 * weights + attention
    value_trainable = any(t for n, _, t in linears if n.startswith("value_encoder."))
    # pert_encoder (always trained) feeds the core, so gradients reach every core and decoder input; the
    # value encoder's first layer sees data only, its second needs an input gradient only if the first trains
    no_input_grad = {"value_encoder.linear1"} | (set() if value_trainable else {"value_encoder.linear2"})
    input_grads = 2 * sum(w for n, w, _ in linears if n not in no_input_grad)
    weight_grads = 2 * sum(w for _, w, t in linears if t)
    executed = forward + input_grads + weight_grads + 2 * attention
    return {"linear_weights": weights, "forward": forward, "train": 3 * forward, "executed": executed}


def matmul_rate(device, dtype, size: int, repeats: int = 3) -> float:
    """Best FLOP/s of a size x size x size torch.matmul (after one untimed call)."""
    import torch

    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    best = float("inf")
    for i in range(repeats + 1):
        sync(device)
        start = time.perf_counter()
        torch.matmul(a, b)
        sync(device)
        if i:
            best = min(best, time.perf_counter() - start)
    del a, b
    return 2 * size**3 / best


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device) -> str:
    """Reset the peak-memory counter; returns what peak_mb measures."""
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        return "CUDA max_memory_allocated per variant"
    try:  # glibc: hand freed heap pages back first, so the previous variant's memory is not counted
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:  # Linux >= 4.0: writing 5 resets the process's peak RSS (VmHWM)
        Path("/proc/self/clear_refs").write_text("5")
        return "peak RSS per variant (VmHWM reset before each; includes the process baseline: torch, the model)"
    except OSError:
        return "process peak RSS so far (ru_maxrss; cannot be reset here, so it only grows)"


def peak_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_batch(batch: int, genes: int, device, seed: int = 0) -> tuple[dict, object]:
    """Generator inputs and target for B cells x L genes: one gene subset for every cell (as the adapter),
    binned values with ~70% zeros, log-normalised raw values, a few flagged target genes."""
    import torch

    rng = np.random.default_rng(seed)
    tokens = np.sort(rng.choice(N_TOKENS - 3, size=genes, replace=False))
    expressed = rng.random((batch, genes)) < 0.3
    values = np.where(expressed, rng.integers(1, 51, size=(batch, genes)), 0).astype(np.float32)
    raw = np.where(expressed, rng.gamma(2.0, 0.7, size=(batch, genes)), 0).astype(np.float32)
    flags = np.full((batch, genes), NOT_PERTURBED, dtype=np.int64)
    flags[:, rng.choice(genes, size=min(2, genes), replace=False)] = PERTURBED
    target = np.maximum(raw + rng.normal(0, 0.2, size=raw.shape), 0).astype(np.float32)

    def put(a):
        return torch.from_numpy(np.ascontiguousarray(a)).to(device)

    inputs = {"tokens": put(np.tile(tokens, (batch, 1))), "values": put(values), "raw": put(raw),
              "flags": put(flags)}
    return inputs, put(target)


def time_variant(name: str, args, device, precision: str, inputs: dict, target, config: FinetuneConfig) -> dict:
    """Build variant `name` at the whole-human size and time `args.steps` training steps after `args.warmup`."""
    import torch

    from pertprobe.models.checkpoint import autocast

    spec = variant(name)
    arch = read_config_dict(ARCHITECTURE)
    model = build_generator(arch, N_TOKENS, PAD_ID, spec.core, seed=0)
    if spec.lora:  # as finetune(): PEFT LoRA on ScGPTFinetune.lora_targets, new_modules stay trainable
        model = apply_lora(model, ScGPTFinetune, config)
    model = model.to(device)
    counts = parameter_counts(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(trainable, lr=config.learning_rate)
    gc.collect()
    # the bound is measured next to each variant: on a shared machine the achievable rate changes over the run
    peak_flops = matmul_rate(device, torch.bfloat16 if precision == "bf16" else torch.float32, args.matmul_size)
    memory_kind = reset_peak(device)
    model.train()
    fwd_bwd, opt = [], []
    for step in range(args.warmup + args.steps):
        sync(device)
        start = time.perf_counter()
        with autocast(device, precision):
            pred = model(**inputs)
        loss = torch.nn.functional.mse_loss(pred.float(), target)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        sync(device)
        middle = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(trainable, config.clip_norm)
        optimiser.step()
        sync(device)
        if step >= args.warmup:
            fwd_bwd.append(middle - start)
            opt.append(time.perf_counter() - middle)
    if not np.isfinite(float(loss.detach())):
        print(f"warning: {name} loss is not finite", flush=True)
    flops = flops_per_token(model, spec.core, args.genes, arch)
    seconds = float(np.mean(np.add(fwd_bwd, opt)))
    tokens_per_s = args.batch * args.genes / seconds
    bound = peak_flops / flops["train"]
    row = {"variant": name, "core": spec.core, "params": counts["n_parameters"],
           "lora params": counts["n_lora_parameters"], "trainable": counts["n_trainable"], "s/step": seconds,
           "fwd+bwd s": float(np.mean(fwd_bwd)), "clip+adam s": float(np.mean(opt)), "cells/s": args.batch / seconds,
           "tokens/s": tokens_per_s,
           "GFLOP/token": flops["train"] / 1e9, "TFLOP/s": tokens_per_s * flops["train"] / 1e12,
           "peak TFLOP/s": peak_flops / 1e12,
           "bound tokens/s": bound, "MFU": tokens_per_s / bound, "exec/3x": flops["executed"] / flops["train"],
           "peak MB": peak_mb(device), "_memory": memory_kind}
    del model, optimiser, trainable, pred, loss
    gc.collect()
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=None, help="cells per step (default: 2 on CPU, 64 on CUDA)")
    parser.add_argument("--genes", type=int, default=1536, help="genes per cell (sequence length L; default 1536, "
                        "FinetuneConfig.max_seq_len)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 2 on CPU, 10 on CUDA)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 1 on CPU, 3 on CUDA)")
    parser.add_argument("--variants", default=",".join(variant_names()))
    parser.add_argument("--device", default="auto", help="auto (CUDA when visible), cpu, cuda[:i]")
    parser.add_argument("--precision", default="auto",
                        help="comma-separated fp32,bf16 (bf16: torch.autocast, CUDA only); auto: fp32 on CPU, "
                             "fp32,bf16 on CUDA")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--matmul-size", type=int, default=None,
                        help="n of the n x n x n matmul timed as the peak (default: 4096 on CPU, 8192 on CUDA)")
    parser.add_argument("--deterministic", action="store_true",
                        help="torch.use_deterministic_algorithms(True, warn_only=True), as finetune() sets")
    args = parser.parse_args(argv)

    import torch

    from pertprobe.models.checkpoint import resolve_device

    device = resolve_device(args.device)
    batch, steps, warmup, size = DEFAULTS["cuda" if device.type == "cuda" else "cpu"]
    reduced = device.type == "cpu" and args.batch is None
    args.batch = batch if args.batch is None else args.batch
    args.steps = steps if args.steps is None else args.steps
    args.warmup = warmup if args.warmup is None else args.warmup
    args.matmul_size = size if args.matmul_size is None else args.matmul_size
    precisions = (["fp32", "bf16"] if device.type == "cuda" else ["fp32"]) if args.precision == "auto" else \
        [p.strip() for p in args.precision.split(",") if p.strip()]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(variant_names()))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {variant_names()}")
    if any(p not in ("fp32", "bf16") for p in precisions):
        parser.error(f"--precision takes fp32 and/or bf16, not {args.precision!r}")
    if "bf16" in precisions and device.type != "cuda":
        parser.error("bf16 runs through torch.autocast on CUDA only (finetune() does the same); use fp32 on CPU")
    if min(args.batch, args.genes, args.steps, args.matmul_size) < 1 or args.warmup < 0:
        parser.error("--batch, --genes, --steps, --matmul-size must be >= 1 and --warmup >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    config = FinetuneConfig(batch_size=args.batch, max_seq_len=args.genes, device=str(device))

    cuda_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "none"
    print(f"scGPT whole-human-size generator ({ARCHITECTURE['nlayers']} x {ARCHITECTURE['embsize']}, "
          f"{ARCHITECTURE['nheads']} heads, d_hid {ARCHITECTURE['d_hid']}, vocabulary {N_TOKENS}), random weights; "
          f"batch {args.batch} cells x {args.genes} genes, {args.warmup} warm-up + {args.steps} timed steps; "
          f"Adam lr {config.learning_rate}, MSE, clip {config.clip_norm}; LoRA r={config.lora_rank} "
          f"alpha={config.lora_alpha} dropout={config.lora_dropout}")
    print(f"device {device} ({cuda_name}), torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"deterministic {args.deterministic}"
          + (f", TF32 matmul {torch.backends.cuda.matmul.allow_tf32}" if device.type == "cuda" else ""), flush=True)
    if reduced:
        print(f"note: CPU default batch reduced to {args.batch} (from 8) to keep the default run short on 2 cores; "
              "pass --batch 8 for the larger batch", flush=True)

    frames = []
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    for precision in precisions:
        inputs, target = make_batch(args.batch, args.genes, device)
        rows = []
        for name in variants:
            row = time_variant(name, args, device, precision, inputs, target, config)
            rows.append({"precision": precision, **row})
            print(f"  [{precision}] {name}: {row['s/step']:.3f} s/step, {row['cells/s']:.3g} cells/s, "
                  f"{row['tokens/s']:.4g} tokens/s, matmul peak {row['peak TFLOP/s']:.3f} TFLOP/s, "
                  f"MFU {row['MFU']:.1%}, peak {row['peak MB']:.0f} MB", flush=True)
        del inputs, target
        frames.append(pd.DataFrame(rows))
    table = pd.concat(frames, ignore_index=True)
    memory_kind = table.pop("_memory").iloc[0]
    shown = table.copy()
    for column, fmt in {"s/step": "{:.3f}", "fwd+bwd s": "{:.3f}", "clip+adam s": "{:.3f}", "cells/s": "{:.3g}",
                        "tokens/s": "{:.4g}", "GFLOP/token": "{:.4f}", "TFLOP/s": "{:.3f}", "peak TFLOP/s": "{:.3f}",
                        "bound tokens/s": "{:.4g}", "MFU": "{:.1%}", "exec/3x": "{:.2f}", "peak MB": "{:.0f}"}.items():
        shown[column] = shown[column].map(fmt.format)
    print()
    print(shown.to_string(index=False))
    print()
    print(FORMULA)
    tf32 = f"; TF32 matmul {torch.backends.cuda.matmul.allow_tf32}" if device.type == "cuda" else ""
    print(f"peak TFLOP/s: best of 3 {args.matmul_size}^3 matmuls in the run's dtype{tf32}, timed just before "
          "each variant.")
    if load is not None:
        print("load average (1 min) at start %.2f, at end %.2f (other processes on the machine slow both the "
              "steps and the matmul)" % (load[0], os.getloadavg()[0]))
    print(f"params: the generator's own (LoRA adapters in 'lora params'); trainable includes the adapters. "
          f"peak MB: {memory_kind}.")
    print("Timed: forward + loss + backward + clip + Adam on one fixed on-device batch; finetune()'s host-side "
          "batch assembly, host-to-device copies and validation are not included. One run, not repeated.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
