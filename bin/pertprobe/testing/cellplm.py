"""Tiny randomly initialised cellplm checkpoints in the released layout, for tests and the bundled
test data (`make test-models`); never used by a run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..models.cellplm import CKPT_SUFFIX, CONFIG_SUFFIX, RELEASED_PREFIX, _omicsformer
from . import tiny_subset


def tiny_config(gene_list: list[str], enc_hid: int = 32, enc_layers: int = 2, post_latent_dim: int = 16,
                enc_head: int | None = None, latent_mod: str = "vae", num_clusters: int = 4) -> dict[str, Any]:
    """The keys of the released ckpt/20230926_85M.config.json at toy widths, with the 20231027_85M
    architecture (Flowformer, VAE latent, group norm, sinusoidal PE added, NB-MLP decoder); see
    docs/models/cellplm.md. `enc_head` None leaves OmicsFormer's default (8, as the released files)."""
    config = {"name": "tiny", "enc_mod": "flowformer", "enc_hid": enc_hid, "enc_layers": enc_layers,
              "latent_mod": latent_mod, "lamda": 5.0, "post_latent_dim": post_latent_dim, "dec_mod": "nbmlp",
              "dec_hid": enc_hid, "dec_layers": 2, "model_dropout": 0.2, "mask_node_rate": 0.75,
              "mask_feature_rate": 0.25, "drop_node_rate": 0.3, "norm": "groupnorm", "dataset": "tiny",
              "architecture": "OmicsFormer", "epochs": 0, "lr": 0.0002, "wd": 1e-08, "w_li": 5.0, "w_en": 5.0,
              "num_clusters": num_clusters, "out_dim": len(gene_list), "ddp": False, "cat_pe": False, "val_num": 10,
              "max_batch_size": 4000, "dar": False, "input_covariate": False, "beta": [2.0, 1.5],
              "batch_mixing": False, "ecs": False, "dsbn": False, "dae": True, "batch_flip": True, "mask_beta": True,
              "batch_num": 4, "dataset_num": 2, "gene_list": gene_list}
    if enc_head is not None:
        config["enc_head"] = enc_head
    return config


def write_tiny_checkpoint(directory: Path, genes: pd.DataFrame, seed: int = 0, coverage: float = 0.9,
                          extra_genes: int = 2, prefix: str = RELEASED_PREFIX, **config: Any) -> Path:
    """A randomly initialised pre-training OmicsFormer (head_type None: decoder included) in the released layout.

    gene_list = the Ensembl IDs (column `ensembl`, which must be filled) of `coverage` of `genes`,
    drawn with tiny_subset, then `extra_genes` made-up IDs the dataset lacks; `config` goes to
    `tiny_config`. Writes <prefix>.config.json and <prefix>.best.ckpt; same arguments, same bytes."""
    import torch

    ids = genes["ensembl"].fillna("").astype(str).to_numpy()
    if (ids == "").any():
        raise ValueError("write_tiny_checkpoint needs an Ensembl ID for every gene")
    rng = np.random.default_rng(seed)
    gene_list = [ids[i] for i in tiny_subset(ids.size, coverage, rng)]
    gene_list += [f"ENSG{i:011d}" for i in range(extra_genes)]  # ENSG00000000000, ...: no real gene
    settings = tiny_config(gene_list, **config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _omicsformer()(**settings)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{prefix}{CONFIG_SUFFIX}").write_text(json.dumps(settings) + "\n")
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    torch.save({"model_state_dict": state}, directory / f"{prefix}{CKPT_SUFFIX}")
    return directory
