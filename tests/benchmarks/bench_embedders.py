#!/usr/bin/env python3
"""Embedding throughput of every foundation-model adapter at its released architecture size.

For each adapter, writes a randomly-initialised checkpoint with the published dimensions of a
released model (the weights' values do not change the cost), simulates raw counts with a
Perturb-seq-like depth (cells x genes, ~`--genes-per-cell` detected genes per cell) and times the
adapter's real loading + embedding code: cells/s (genes/s for gene models) after one warm-up batch.
Runs on every visible device (CPU always; CUDA in fp32 and bf16 autocast when a GPU is present).
Throughput only: there is no reference implementation to compare in the same run (the upstream
packages do not install alongside current torch), so no ratio is printed.

Run: python tests/benchmarks/bench_embedders.py [--cells N] [--genes G] [--models geneformer,scgpt,...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "bin") not in sys.path:
    sys.path.insert(0, str(ROOT / "bin"))

from pertprobe.models import genept  # noqa: E402
from pertprobe.models.checkpoint import RunOptions  # noqa: E402
from pertprobe.registry import get, names  # noqa: E402
from pertprobe.testing import esm2 as tiny_esm2  # noqa: E402
from pertprobe.testing import genept as tiny_genept  # noqa: E402
from pertprobe.testing import writer  # noqa: E402
from pertprobe.testing.geneformer import synthetic_ensembl  # noqa: E402

# Released sizes (architecture only). CellPLM 20231027_85M (docs/models/cellplm.md), Geneformer V1-10M,
# scGPT whole-human, UCE 4-layer (token table restricted to the benchmark's genes), ESM2 t6-8M; GenePT uses
# the real MiniLM shipped on PyPI.
ARCHITECTURES = {
    "geneformer": dict(version=1, hidden_size=256, num_hidden_layers=6, num_attention_heads=4, intermediate_size=512),
    "scgpt": dict(embsize=512, nheads=8, d_hid=512, nlayers=12),
    "uce": dict(token_dim=5120, d_model=1280, nhead=20, d_hid=5120, nlayers=4, output_dim=1280, decoder_hidden=1024,
                binary_hidden=(2048, 512, 128)),
    "cellplm": dict(enc_hid=1024, enc_layers=4, post_latent_dim=512, enc_head=8),
    "esm2": dict(hidden_size=320, num_hidden_layers=6, num_attention_heads=20, intermediate_size=1280),
}
LABELS = {"cellplm": "CellPLM 20231027_85M-size (4x1024 Flowformer, VAE latent)",
          "geneformer": "Geneformer V1-10M (6x256, 2048 tokens)", "scgpt": "scGPT whole-human (12x512, 1200 tokens)",
          "uce": "UCE 4-layer (4x1280, 1024 sampled genes)", "esm2": "ESM2 t6-8M (6x320), proteins of 300 aa",
          "genept": "GenePT text, all-MiniLM-L6-v2 (real weights)"}


def simulate_counts(n_cells: int, n_genes: int, genes_per_cell: int, seed: int) -> sp.csr_matrix:
    """Sparse raw counts: each cell detects ~genes_per_cell genes, with 1 + Poisson counts (skewed gene use)."""
    rng = np.random.default_rng(seed)
    gene_p = rng.dirichlet(np.full(n_genes, 0.3))
    rows, cols = [], []
    for cell in range(n_cells):
        chosen = np.unique(rng.choice(n_genes, size=genes_per_cell, p=gene_p))
        rows.append(np.full(chosen.size, cell))
        cols.append(chosen)
    r, c = np.concatenate(rows), np.concatenate(cols)
    values = 1 + rng.poisson(1.0, size=r.size)
    return sp.csr_matrix((values.astype(np.float32), (r, c)), shape=(n_cells, n_genes))


def devices() -> list[tuple[str, str]]:
    import torch

    out = [("cpu", "fp32")]
    if torch.cuda.is_available():
        out += [("cuda", "fp32"), ("cuda", "bf16")]
    return out


def time_run(func, n_items: int) -> tuple[float, float]:
    """(seconds, items per second) of one call."""
    start = time.perf_counter()
    func()
    seconds = time.perf_counter() - start
    return seconds, n_items / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=32, help="cells per cell model (CPU); x8 on a GPU")
    parser.add_argument("--genes", type=int, default=20000)
    parser.add_argument("--genes-per-cell", type=int, default=2500)
    parser.add_argument("--targets", type=int, default=64, help="genes embedded by the gene models")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--models", default="cellplm,geneformer,scgpt,uce,esm2,genept")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]

    import torch

    symbols = [f"GENE{i:05d}" for i in range(args.genes)]
    genes = pd.DataFrame({"symbol": symbols, "ensembl": [synthetic_ensembl(s) for s in symbols]},
                         index=symbols)
    targets = genes.iloc[: args.targets]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for model in models:
            directory = tmp / model
            if model == "genept":
                directory = genept.bundled_minilm_dir()
                side = {"descriptions": tiny_genept.write_tiny_descriptions(tmp / "descriptions.tsv", targets, seed=0)}
            elif model == "esm2":
                tiny_esm2.write_tiny_checkpoint(directory, targets, seed=0, **ARCHITECTURES[model])
                side = {"fasta": tiny_esm2.write_tiny_fasta(tmp / "proteins.fasta", targets, seed=0, length=(300, 300))}
            else:
                writer(model).write_tiny_checkpoint(directory, genes, seed=0, **ARCHITECTURES[model])
            for device, precision in devices():
                scale = 8 if device == "cuda" else 1
                options = RunOptions(device=device, batch_size=args.batch_size * scale, precision=precision,
                                     min_coverage=0.0)
                if model in names("cell_embedder", checkpoint=True):
                    embed_cells = get("cell_embedder", model).func
                    counts = simulate_counts(args.cells * scale, args.genes, args.genes_per_cell, seed=1)
                    warm = counts[: options.batch_size]
                    embed_cells(warm, genes, directory, options)  # warm-up (kernels, caches)
                    seconds, rate = time_run(lambda: embed_cells(counts, genes, directory, options),
                                             counts.shape[0])
                    unit, n = "cells/s", counts.shape[0]
                else:
                    embed_genes = get("gene_embedding", model).func
                    embed_genes(targets.iloc[:4], directory, options, **side)
                    seconds, rate = time_run(lambda: embed_genes(targets, directory, options, **side),
                                             len(targets))
                    unit, n = "genes/s", len(targets)
                rows.append({"model": LABELS[model], "device": device, "precision": precision,
                             "batch_size": options.batch_size, "n": n, "seconds": round(seconds, 2),
                             "throughput": f"{rate:.2f} {unit}"})
                print(rows[-1], flush=True)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"cuda {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
