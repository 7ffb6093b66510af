"""Tiny randomly initialised uce checkpoints in the released layout, for tests and the bundled
test data (`make test-models`); never used by a run."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd

from ..models.uce import (
    CHROM_FILE,
    N_SPECIAL_TOKENS,
    OFFSETS_FILE,
    PROTEIN_DIR,
    PROTEIN_EMBEDDING_FILES,
    TOKEN_FILE,
    WEIGHTS_FILES,
    Architecture,
    build_model,
)


def write_tiny_checkpoint(directory: Path, genes: pd.DataFrame, seed: int = 0, token_dim: int = 16, d_model: int = 32,
                          nhead: int = 2, d_hid: int = 64, nlayers: int = 2, output_dim: int = 16,
                          decoder_hidden: int = 32, binary_hidden: tuple[int, ...] = (32, 16, 8),
                          n_chromosomes: int = 3, coverage: float = 1.0) -> Path:
    """A randomly initialised UCE model directory (the released model_files layout) for species 'human'.

    The protein-embedding table holds the first round(coverage x n) distinct upper-cased symbols of
    `genes` (sorted), each placed on a random chromosome '1'..'n_chromosomes' at a random start.
    Token table = 4 special rows, the proteins, one row per chromosome; all_tokens.torch and the
    weights' pe_embedding hold the same table (as released). `nhead` is not stored (UCE files have no
    configuration): embed_cells assumes default_nhead(d_model), else pass the nhead option.
    """
    import torch

    if d_model % nhead:
        raise ValueError(f"nhead {nhead} must divide d_model {d_model}")
    directory = Path(directory)
    (directory / PROTEIN_DIR).mkdir(parents=True, exist_ok=True)
    symbols = list(dict.fromkeys(s for s in genes["symbol"].fillna("").astype(str).str.upper() if s))
    symbols = sorted(symbols[: int(round(coverage * len(symbols)))])
    rng = np.random.default_rng(seed)
    chromosomes = [str(c) for c in rng.integers(1, n_chromosomes + 1, size=len(symbols))]
    starts = rng.choice(10**8, size=len(symbols), replace=False) + 1
    n_codes = len(set(chromosomes))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        table = torch.randn(N_SPECIAL_TOKENS + len(symbols) + n_codes, token_dim)
        arch = Architecture(token_dim=token_dim, d_model=d_model, d_hid=d_hid, nlayers=nlayers, output_dim=output_dim,
                            decoder_hidden=decoder_hidden, binary_widths=(output_dim + d_model, *binary_hidden),
                            max_len=1536, n_tokens=table.shape[0])
        model = build_model(arch, nhead)
    model.pe_embedding.weight.copy_(table)
    pd.DataFrame({"gene_symbol": symbols, "chromosome": chromosomes, "start": starts, "species": "human"}).sort_values(
        ["chromosome", "start"]).to_csv(directory / CHROM_FILE, index=False)
    with (directory / OFFSETS_FILE).open("wb") as handle:
        pickle.dump({"human": N_SPECIAL_TOKENS}, handle, protocol=4)
    proteins = {s: table[N_SPECIAL_TOKENS + i].clone() for i, s in enumerate(symbols)}
    torch.save(proteins, directory / PROTEIN_DIR / PROTEIN_EMBEDDING_FILES["human"])
    torch.save(table.clone(), directory / TOKEN_FILE)
    torch.save(model.state_dict(), directory / WEIGHTS_FILES[0])
    return directory
