"""CellPLM (Wen et al., ICLR 2024; github.com/OmicsML/CellPLM) cell embeddings.

Runs the authors' model class (`CellPLM.model.OmicsFormer` from PyPI `cellplm` 0.1.0.post2, installed
without its unused dependencies) on the path of `CellPLM/pipeline/cell_embedding.py::
CellEmbeddingPipeline._inference`, with three changes: weights load strictly (upstream's
`load_pretrain` silently drops mismatched tensors), genes are matched by Ensembl ID from the dataset
or `--gene-id-map` (never the mygene web service), and chunks of cells have a fixed size. CellPLM
attends across the cells of a chunk, so the chunk size and the grouping are part of the result.
Definitions and the file layout: docs/models/cellplm.md.
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
from .checkpoint import (LoadReport, ModelEmbedding, RunOptions, batches, directory_hash, load_strict,
                         load_torch_file, require_files, resolve_device, seed_everything, tiny_subset)
from .gene_ids import check_coverage

if TYPE_CHECKING:
    import torch

MODEL = "CellPLM"
RELEASED_PREFIX = "20231027_85M"
# Tensors of the pre-training decoder: in released checkpoints, absent from the embedder
# (OmicsFormer with head_type='embedder' builds no decoder).
PRETRAINING_ONLY = ("decoder.",)
INSTALL_FIX = ("install it without its unused dependencies: pip install --no-deps -r "
               "containers/cellplm-requirements.txt (or run in the ghcr.io/pertprobe/cellplm image)")


def _omicsformer() -> Any:
    """The authors' model class; a clear error when the optional package is absent."""
    try:
        from CellPLM.model import OmicsFormer
    except ImportError as err:
        raise InputError("python environment", "cellplm package", f"cannot be imported ({err})", INSTALL_FIX) from err
    return OmicsFormer


def checkpoint_files(checkpoint: Path, prefix: str | None) -> tuple[Path, Path]:
    """`<prefix>.config.json` and `<prefix>.best.ckpt`; the prefix is found when the directory has one."""
    if prefix is None:
        configs = sorted(p.name[: -len(".config.json")] for p in Path(checkpoint).glob("*.config.json"))
        if len(configs) != 1:
            raise InputError(checkpoint, "CellPLM checkpoint",
                             f"has {len(configs)} '<prefix>.config.json' files ({', '.join(configs) or 'none'})",
                             f"put one released pair (e.g. {RELEASED_PREFIX}.config.json and "
                             f"{RELEASED_PREFIX}.best.ckpt) in the directory, or pass --model-option prefix=...")
        prefix = configs[0]
    names = (f"{prefix}.config.json", f"{prefix}.best.ckpt")
    directory = require_files(checkpoint, names, MODEL)
    return directory / names[0], directory / names[1]


def read_config(path: Path) -> dict[str, Any]:
    """The model configuration, with `gene_list` checked."""
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise InputError(path, "CellPLM config", f"is not readable JSON ({err})",
                         "use the config.json released with the checkpoint") from err
    if not isinstance(config, dict) or not isinstance(config.get("gene_list"), list) or not config["gene_list"]:
        raise InputError(path, "gene_list", "is missing or empty",
                         "use the config.json released with the checkpoint (it lists the model's Ensembl IDs)")
    return config


def load_model(config: dict[str, Any], ckpt_path: Path) -> tuple[torch.nn.Module, LoadReport, int]:
    """OmicsFormer built as CellEmbeddingPipeline builds it (head_type 'embedder'), loaded strictly.

    Returns the model, the load report and the number of pre-training decoder tensors set aside."""
    model = _omicsformer()(**{**config, "head_type": "embedder"})
    blob = load_torch_file(ckpt_path, MODEL)
    state = blob.get("model_state_dict") if isinstance(blob, Mapping) else None
    if not isinstance(state, Mapping):
        raise InputError(ckpt_path, "model_state_dict", "is not in the file",
                         "use the released <prefix>.best.ckpt (a dict with key 'model_state_dict')")
    kept = {k: v for k, v in state.items() if not k.startswith(PRETRAINING_ONLY)}
    report = load_strict(model, kept, ckpt_path, MODEL)
    return model, report, len(state) - len(kept)


def chunks(groups: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Cell indices per forward pass: each group (sorted labels) in cell order, cut into `batch_size` pieces."""
    order = []
    for label in np.unique(groups):
        members = np.flatnonzero(groups == label)
        order += [members[s] for s in batches(members.size, batch_size)]
    return order


def embed_cells(counts: sp.csr_matrix, genes: pd.DataFrame, checkpoint: Path, options: RunOptions, *,
                prefix: str | None = None, groups: Any = None) -> ModelEmbedding:
    """CellPLM cell embeddings (the latent mean of the embedder head), one row per cell in input order.

    Model option `prefix` (checkpoint file prefix; default the directory's only one). `groups`
    (one label per cell, e.g. the batch) keeps cells of different groups out of each other's chunks,
    as upstream does with `obs['batch']`; None puts all cells in one group.
    """
    import torch

    config_path, ckpt_path = checkpoint_files(Path(checkpoint), prefix)
    config = read_config(config_path)
    known = set(config["gene_list"])
    ensembl = genes["ensembl"].astype(str).to_numpy()
    covered = np.array([g in known for g in ensembl])
    coverage = check_coverage(MODEL, covered, options.min_coverage, config_path)
    used = np.flatnonzero(covered)
    counts = sp.csr_matrix(counts, dtype=np.float32)[:, used].tocsr()
    empty = np.flatnonzero(np.diff(counts.indptr) == 0)
    if empty.size:
        raise InputError("input counts", "cells", f"{empty.size} cell(s) have no counts in the {used.size} genes "
                         f"CellPLM knows (first: cell #{empty[0]})", "remove empty cells before embedding")
    groups = np.zeros(counts.shape[0], dtype=int) if groups is None else np.asarray(groups).astype(str)
    if groups.shape != (counts.shape[0],):
        raise ValueError(f"groups has {groups.shape} labels for {counts.shape[0]} cells")

    seed_everything(options.seed)
    model, report, n_pretraining = load_model(config, ckpt_path)
    device = resolve_device(options.device)
    model = model.eval().to(device)
    # The sparse counts x gene-embedding product (OmicsEmbedder) has no bf16/fp16 CUDA kernel
    # ("addmm_sparse_cuda" not implemented): CellPLM always runs in fp32; the metadata says so.
    precision = "fp32"
    if options.precision != precision:
        print(f"CellPLM: --precision {options.precision} is not supported by its sparse input layer; running fp32")
    input_genes = list(ensembl[used])
    out = None
    # The GMVAE latent draws Gumbel noise even in eval mode, so the generator state is part of the
    # result: seed it, then take the one draw upstream's DataLoader iterator takes (its base seed).
    torch.manual_seed(options.seed)
    torch.empty((), dtype=torch.int64).random_()
    with torch.inference_mode():
        for idx in chunks(groups, options.batch_size):
            block = counts[idx].tocoo()
            x = torch.sparse_coo_tensor(torch.from_numpy(np.vstack([block.row, block.col]).astype(np.int64)),
                                        torch.from_numpy(block.data), block.shape,
                                        check_invariants=True).coalesce().to(device)
            inputs = {"x_seq": x, "coord": torch.full((idx.size, 2), -1.0, device=device)}
            pred = model(_xdict(inputs), input_genes)[0]["pred"].float().cpu().numpy()
            if out is None:
                out = np.empty((counts.shape[0], pred.shape[1]), dtype=np.float32)
            out[idx] = pred
    if not np.isfinite(out).all():
        raise InputError(ckpt_path, "CellPLM weights", "produced non-finite embeddings",
                         "re-copy the released checkpoint (a damaged file can load with the right shapes)")
    params = {"prefix": config_path.name[: -len(".config.json")], "latent_mod": model.latent_mod,
              "n_genes_used": int(used.size), "batch_size": options.batch_size,
              "n_groups": int(np.unique(groups).size), "pretraining_tensors_ignored": n_pretraining,
              "seed": options.seed, "precision": precision, "precision_requested": options.precision}
    return ModelEmbedding(values=out, params=params, load=report, coverage=coverage,
                          checkpoint_hash=directory_hash(checkpoint))


def _xdict(inputs: dict[str, Any]) -> Any:
    from CellPLM.utils.data import XDict

    return XDict(inputs)


# Tiny checkpoints ----------------------------------------------------------------------------------

def tiny_config(gene_list: list[str], enc_hid: int = 32, enc_layers: int = 2, post_latent_dim: int = 16,
                enc_head: int = 4) -> dict[str, Any]:
    """The released 85M model's configuration keys (toy widths by default; see docs/models/cellplm.md)."""
    return {"gene_list": gene_list, "enc_mod": "flowformer", "enc_hid": enc_hid, "enc_layers": enc_layers,
            "post_latent_dim": post_latent_dim, "dec_mod": "nbmlp", "dec_hid": enc_hid, "dec_layers": 2,
            "out_dim": len(gene_list), "batch_num": 4, "dataset_num": 2, "platform_num": 3, "mask_type": "input",
            "model_dropout": 0.2, "activation": "gelu", "norm": "batchnorm", "enc_head": enc_head, "mask_node_rate": 0.75,
            "mask_feature_rate": 0.25, "max_batch_size": 70000, "pe_type": "sin", "cat_pe": False,
            "gene_emb": None, "latent_mod": "gmvae", "w_li": 1.0, "w_en": 1.0, "w_ce": 1.0, "num_clusters": 4,
            "dsbn": False, "ecs": False, "dar": False, "input_covariate": False, "head_type": None,
            "dae": True, "lamda": 0.5, "mask_beta": False}


def write_tiny_checkpoint(directory: Path, genes: pd.DataFrame, seed: int = 0, coverage: float = 0.9,
                          **widths: int) -> Path:
    """A randomly initialised pre-training OmicsFormer (decoder included) in the released layout.

    The gene list holds the Ensembl IDs of `coverage` of `genes` (column `ensembl`, which must be
    filled) plus two IDs the dataset lacks; `widths` go to `tiny_config`. Same arguments, same bytes."""
    import torch

    ids = genes["ensembl"].astype(str).to_numpy()
    if (ids == "").any():
        raise ValueError("write_tiny_checkpoint needs an Ensembl ID for every gene")
    rng = np.random.default_rng(seed)
    gene_list = [ids[i] for i in tiny_subset(ids.size, coverage, rng)] + ["ENSG00000000001", "ENSG00000000002"]
    config = tiny_config(gene_list, **widths)
    torch.manual_seed(seed)
    model = _omicsformer()(**config)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{RELEASED_PREFIX}.config.json").write_text(json.dumps(config, indent=1) + "\n")
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    torch.save({"model_state_dict": state}, directory / f"{RELEASED_PREFIX}.best.ckpt")
    return directory
