"""CellPLM (Wen et al., ICLR 2024; github.com/OmicsML/CellPLM) cell embeddings.

Runs the authors' model class (`CellPLM/model/cellformer.py::OmicsFormer` from PyPI `cellplm`
0.1.0.post2, installed without its unused dependencies) on the path of
`CellPLM/pipeline/cell_embedding.py::CellEmbeddingPipeline._inference` (model built by
`CellPLM/pipeline/__init__.py::load_pretrain`, cells grouped as `CellPLM/utils/data.py::
TranscriptomicDataset`), with three changes: weights load strictly (upstream silently drops
mismatched tensors), genes are matched by Ensembl ID from the dataset or `--gene-id-map` (never the
mygene web service), and chunks of cells have a fixed size. CellPLM attends across the cells of a
chunk, so the chunk size and the grouping are part of the result. Definitions, differences and the
file layout: docs/models/cellplm.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import InputError
from ..progress import Progress
from .adapters import foundation_model
from .checkpoint import (
    LoadReport,
    ModelEmbedding,
    RunOptions,
    batches,
    directory_hash,
    load_strict,
    load_torch_file,
    require_counts_per_cell,
    require_files,
    resolve_device,
    seed_everything,
)
from .gene_ids import Coverage, check_coverage

if TYPE_CHECKING:
    import torch

MODEL = "CellPLM"
RELEASED_PREFIX = "20231027_85M"
# What a released directory always holds (globs; 'a|b': either), checked before any task runs.
CHECKPOINT_FILES = ("*.config.json", "*.best.ckpt")
CONFIG_SUFFIX, CKPT_SUFFIX = ".config.json", ".best.ckpt"
# State-dict prefixes of modules that only the pre-training model builds: OmicsFormer(head_type=None)
# minus OmicsFormer(head_type='embedder') is exactly the `decoder.*` tensors (the objectives and the
# embedder head hold none), for every enc/latent/dec/norm choice of the package.
PRETRAINING_ONLY = ("decoder.",)
GROUPINGS = ("batch", "none")
INSTALL_FIX = ("install it without its unused dependencies (pydance, mygene): pip install --no-deps "
               "cellplm==0.1.0.post2 einops (pinned in containers/cellplm-requirements.txt), or run in the "
               "ghcr.io/pertprobe/cellplm image")
CONFIG_FIX = "use the <prefix>.config.json released with the checkpoint (OmicsFormer keyword arguments)"


def _omicsformer() -> Any:
    """The authors' model class; a clear error when the optional package is absent."""
    try:
        from CellPLM.model import OmicsFormer
    except ImportError as err:
        raise InputError("python environment", "cellplm package", f"cannot be imported ({err})", INSTALL_FIX) from err
    return OmicsFormer


# Checkpoint files ----------------------------------------------------------------------------------

def checkpoint_files(checkpoint: Path, prefix: str | None) -> tuple[Path, Path]:
    """`<prefix>.config.json` and `<prefix>.best.ckpt`; the prefix is found when the directory has one."""
    if prefix is None:
        found = sorted({p.name[: -len(suffix)] for suffix in (CONFIG_SUFFIX, CKPT_SUFFIX)
                        for p in Path(checkpoint).glob(f"*{suffix}")})
        if len(found) != 1:
            raise InputError(checkpoint, "CellPLM checkpoint",
                             f"has {len(found)} checkpoint prefixes ({', '.join(found) or 'none'})",
                             f"put one released pair (e.g. {RELEASED_PREFIX}{CONFIG_SUFFIX} and "
                             f"{RELEASED_PREFIX}{CKPT_SUFFIX}) in the directory, or pass --model-option prefix=...")
        prefix = found[0]
    names = (f"{prefix}{CONFIG_SUFFIX}", f"{prefix}{CKPT_SUFFIX}")
    directory = require_files(checkpoint, names, MODEL)
    return directory / names[0], directory / names[1]


def read_config(path: Path) -> dict[str, Any]:
    """The model configuration (OmicsFormer keyword arguments), with `gene_list` checked."""
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise InputError(path, "CellPLM config", f"is not readable JSON ({err})", CONFIG_FIX) from err
    if not isinstance(config, dict):
        raise InputError(path, "CellPLM config", "is not a JSON object", CONFIG_FIX)
    genes = config.get("gene_list")
    if not isinstance(genes, list) or not genes or not all(isinstance(g, str) for g in genes):
        raise InputError(path, "gene_list", "is missing, empty or not a list of Ensembl IDs",
                         "use the config.json released with the checkpoint (it lists the model's Ensembl IDs)")
    return config


def latent_dim(config: Mapping[str, Any]) -> int:
    """Width of `out_dict['pred']`: post_latent_dim, or enc_hid without a latent layer (latent_mod 'none')."""
    return int(config["enc_hid"] if config.get("latent_mod", "vae") == "none" else config["post_latent_dim"])


def build_embedder(config: Mapping[str, Any], config_path: Path) -> torch.nn.Module:
    """OmicsFormer(**config) with head_type='embedder', as CellEmbeddingPipeline.__init__ builds it."""
    try:
        model = _omicsformer()(**{**config, "head_type": "embedder"})
        latent_dim(config)
    except (TypeError, KeyError, ValueError, NotImplementedError) as err:
        raise InputError(config_path, "CellPLM config", f"does not build an OmicsFormer ({type(err).__name__}: {err})",
                         CONFIG_FIX) from err
    return model


def load_model(config: Mapping[str, Any], config_path: Path,
               ckpt_path: Path) -> tuple[torch.nn.Module, LoadReport, int]:
    """The embedder loaded strictly from `model_state_dict`.

    Every model tensor must be in the file with its shape; checkpoint tensors the model lacks are
    allowed only under PRETRAINING_ONLY. Returns the model, the load report and how many
    pre-training tensors were set aside."""
    model = build_embedder(config, config_path)
    blob = load_torch_file(ckpt_path, MODEL)
    state = blob.get("model_state_dict") if isinstance(blob, Mapping) else None
    if not isinstance(state, Mapping):
        raise InputError(ckpt_path, "model_state_dict", "is not in the file",
                         f"use the released <prefix>{CKPT_SUFFIX} (a dict with key 'model_state_dict')")
    expected = model.state_dict()
    kept = {k: v for k, v in state.items() if k in expected or not k.startswith(PRETRAINING_ONLY)}
    report = load_strict(model, kept, ckpt_path, MODEL)
    return model, report, len(state) - len(kept)


# Cells -----------------------------------------------------------------------------------------------

def group_codes(groups: Any, n_cells: int, grouping: str) -> np.ndarray:
    """A code per cell, in sorted label order (TranscriptomicDataset's LabelEncoder); all 0 for one group."""
    if grouping not in GROUPINGS:
        raise InputError(f"--model-option grouping={grouping}", "grouping", f"is not one of {', '.join(GROUPINGS)}",
                         "pass grouping=batch (cells of different batches never share a chunk) or grouping=none")
    if groups is None or grouping == "none":
        return np.zeros(n_cells, dtype=np.int64)
    values = np.asarray(groups, dtype=object)
    if values.shape != (n_cells,):
        raise ValueError(f"groups has shape {values.shape} for {n_cells} cells")
    try:
        codes, _ = pd.factorize(values, sort=True)
    except TypeError:  # labels of mixed types: order them as text
        codes, _ = pd.factorize(values.astype(str), sort=True)
    if (codes < 0).any():
        raise InputError("processed dataset", "obs['batch']", f"{int((codes < 0).sum())} cell(s) have no batch label",
                         "give every cell a batch label, or pass --model-option grouping=none")
    return codes.astype(np.int64)


def chunks(codes: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Cell indices per forward pass: each group (code order) in cell order, cut into `batch_size` pieces
    (batch_size <= 0: whole groups, upstream's default)."""
    out = []
    for code in np.unique(codes):
        members = np.flatnonzero(codes == code)
        out += [members[s] for s in batches(members.size, batch_size if batch_size > 0 else members.size)]
    return out


def sparse_rows(counts: sp.csr_matrix, rows: np.ndarray, device: torch.device) -> torch.Tensor:
    """Rows of the counts as a coalesced sparse COO float32 tensor (TranscriptomicDataset's x_seq)."""
    import torch

    block = counts[rows].tocoo()
    index = torch.from_numpy(np.vstack([block.row, block.col]).astype(np.int64))
    values = torch.from_numpy(block.data.astype(np.float32))
    return torch.sparse_coo_tensor(index, values, block.shape, check_invariants=True).coalesce().to(device)


def covered_counts(counts: Any, genes: pd.DataFrame, gene_list: list[str], options: RunOptions,
                   where: Path) -> tuple[sp.csr_matrix, list[str], Coverage]:
    """Counts of the dataset genes whose Ensembl ID is in the model's gene list (dataset order, as
    Pipeline.common_preprocess), their IDs and the coverage; an empty cell is an error."""
    known = set(gene_list)
    ensembl = genes["ensembl"].fillna("").astype(str).to_numpy()
    covered = np.array([g in known for g in ensembl], dtype=bool)
    coverage = check_coverage(MODEL, covered, options.min_coverage, where)
    used = np.flatnonzero(covered)
    matrix = sp.csr_matrix(counts, dtype=np.float32)[:, used].tocsr()
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    require_counts_per_cell(matrix, used.size, MODEL, "remove empty cells before embedding")
    return matrix, list(ensembl[used]), coverage


# Embeddings ----------------------------------------------------------------------------------------

@foundation_model("cells", "cellplm", "Wen et al. 2024, CellPLM (ICLR)",
                  "CellPLM OmicsFormer cell embeddings (cells of a chunk attend to each other)",
                  checkpoint_files=CHECKPOINT_FILES)
def embed_cells(counts: sp.csr_matrix, genes: pd.DataFrame, checkpoint: Path, options: RunOptions, *,
                prefix: str | None = None, grouping: str = "batch", groups: Any = None) -> ModelEmbedding:
    """CellPLM cell embeddings (`out_dict['pred']` of the embedder head), one row per cell in input order.

    Model options: `prefix` (checkpoint file prefix; default the directory's only one), `grouping`
    ('batch': cells with different `groups` labels never share a chunk, as upstream with
    obs['batch']; 'none': one group). `groups` is one label per cell (the pipeline passes the
    processed dataset's batch); None is one group. Chunks hold options.batch_size cells (0: whole groups).
    """
    import torch

    config_path, ckpt_path = checkpoint_files(Path(checkpoint), prefix)
    config = read_config(config_path)
    counts, input_genes, coverage = covered_counts(counts, genes, config["gene_list"], options, config_path)
    codes = group_codes(groups, counts.shape[0], grouping)

    seed_everything(options.seed)
    model, report, n_pretraining = load_model(config, config_path, ckpt_path)
    device = resolve_device(options.device)
    model = model.eval().to(device)
    # The sparse counts x gene-embedding product (OmicsEmbedder) has no bf16/fp16 CUDA kernel
    # ("addmm_sparse_cuda" not implemented): CellPLM always runs in fp32; the metadata says so.
    precision = "fp32"
    if options.precision != precision:
        print(f"CellPLM: --precision {options.precision} is not supported by its sparse input layer; running fp32")
    out = np.empty((counts.shape[0], latent_dim(config)), dtype=np.float32)
    # Eval mode still draws random numbers: the VAE latent draws (and ignores) noise, the GMVAE latent
    # (20230926_85M) picks its cluster with Gumbel noise, which changes the output. Seed the
    # generator, then take the one draw upstream's DataLoader iterator takes (its base seed), so the
    # draws are those of CellEmbeddingPipeline run after torch.manual_seed(seed).
    from CellPLM.utils.data import XDict

    torch.manual_seed(options.seed)
    torch.empty((), dtype=torch.int64).random_()
    progress, done = Progress("cellplm: cells embedded", counts.shape[0], "cells"), 0
    with torch.inference_mode():
        for rows in chunks(codes, options.batch_size):
            inputs = XDict({"x_seq": sparse_rows(counts, rows, device),
                            "coord": torch.full((rows.size, 2), -1.0, device=device)})
            out[rows] = model(inputs, input_genes)[0]["pred"].float().cpu().numpy()
            done += rows.size
            progress.update(done)
    if not np.isfinite(out).all():
        raise InputError(ckpt_path, "CellPLM weights", "produced non-finite embeddings",
                         "re-copy the released checkpoint (a damaged file can load with the right shapes)")
    params = {"prefix": config_path.name[: -len(CONFIG_SUFFIX)], "enc_mod": str(config["enc_mod"]),
              "latent_mod": model.latent_mod, "latent_dim": out.shape[1], "n_genes_used": len(input_genes),
              "batch_size": options.batch_size, "grouping": grouping if groups is not None else "none",
              "n_groups": int(np.unique(codes).size), "pretraining_tensors_ignored": n_pretraining,
              "seed": options.seed, "precision": precision, "precision_requested": options.precision}
    return ModelEmbedding(values=out, params=params, load=report, coverage=coverage,
                          checkpoint_hash=directory_hash(checkpoint))


# Tiny checkpoints ----------------------------------------------------------------------------------
