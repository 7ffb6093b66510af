"""UCE (Universal Cell Embeddings; Rosen et al. 2023, bioRxiv 10.1101/2023.11.28.568918) cell embeddings.

A state-dict-compatible re-implementation of snap-stanford/UCE `model.py::TransformerModel` and of the
evaluation path `evaluate.py::run_eval` + `eval_data.py::sample_cell_sentences` +
`data_proc/data_utils.py::adata_path_to_prot_chrom_starts` (`uce-model` 0.1.4 is not used). Every
dimension is read from the checkpoint's tensor shapes; only the number of attention heads is not
stored (model option `nhead`). Definitions, differences from the official code and the file layout:
docs/models/uce.md.
"""

from __future__ import annotations

import math
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import InputError
from .adapters import foundation_model
from .checkpoint import (
    ModelEmbedding,
    RunOptions,
    autocast,
    batches,
    directory_hash,
    load_strict,
    load_torch_file,
    require_counts_per_cell,
    require_files,
    resolve_device,
    seed_everything,
)
from .gene_ids import check_coverage

if TYPE_CHECKING:
    import torch

MODEL = "UCE"
TOKEN_FILE = "all_tokens.torch"
CHROM_FILE = "species_chrom.csv"
OFFSETS_FILE = "species_offsets.pkl"
PROTEIN_DIR = "protein_embeddings"
# Required names; the weights file (4layer_model.torch or 33l_8ep_1024t_1280.torch) is found by `_weights_path`.
FILES = (TOKEN_FILE, CHROM_FILE, OFFSETS_FILE, PROTEIN_DIR)
WEIGHTS_FILES = ("4layer_model.torch", "33l_8ep_1024t_1280.torch")
# What a released directory always holds (globs; 'a|b': either), checked before any task runs.
CHECKPOINT_FILES = (*FILES, "|".join(WEIGHTS_FILES))
# data_proc/data_utils.py::get_species_to_pe (files of the authors' protein_embeddings.tar.gz).
PROTEIN_EMBEDDING_FILES = {
    "human": "Homo_sapiens.GRCh38.gene_symbol_to_embedding_ESM2.pt",
    "mouse": "Mus_musculus.GRCm39.gene_symbol_to_embedding_ESM2.pt",
    "frog": "Xenopus_tropicalis.Xenopus_tropicalis_v9.1.gene_symbol_to_embedding_ESM2.pt",
    "zebrafish": "Danio_rerio.GRCz11.gene_symbol_to_embedding_ESM2.pt",
    "mouse_lemur": "Microcebus_murinus.Mmur_3.0.gene_symbol_to_embedding_ESM2.pt",
    "pig": "Sus_scrofa.Sscrofa11.1.gene_symbol_to_embedding_ESM2.pt",
    "macaca_fascicularis": "Macaca_fascicularis.Macaca_fascicularis_6.0.gene_symbol_to_embedding_ESM2.pt",
    "macaca_mulatta": "Macaca_mulatta.Mmul_10.gene_symbol_to_embedding_ESM2.pt",
}
# Special rows at the top of the token table (eval_single_anndata.py defaults). Row 1, the chromosome
# "left bracket", is never used: each chromosome opens with its own token (row chrom_token_offset + code).
PAD_TOKEN, CHROM_CLOSE_TOKEN, CLS_TOKEN = 0, 2, 3
N_SPECIAL_TOKENS = 4
# The released token table: 143574 protein/special rows followed by 1895 chromosome rows.
UPSTREAM_TOKEN_ROWS, UPSTREAM_CHROM_TOKEN_OFFSET = 145469, 143574
UPSTREAM_D_MODEL, UPSTREAM_NHEAD = 1280, 20
TINY_HEAD_WIDTH = 16  # write_tiny_checkpoint's default d_model / nhead
DROPOUT = 0.05  # upstream's value; inactive in eval mode
_LAYER_RE = re.compile(r"^transformer_encoder\.layers\.(\d+)\.")


@dataclass(frozen=True)
class Architecture:
    """Sizes of a UCE TransformerModel, all read from a state dict."""

    token_dim: int
    d_model: int
    d_hid: int
    nlayers: int
    output_dim: int
    decoder_hidden: int
    binary_widths: tuple[int, ...]  # binary-decoder input width, then its hidden widths
    max_len: int  # rows of the sinusoidal position table
    n_tokens: int  # rows of the checkpoint's token table (pe_embedding)

    def as_dict(self) -> dict[str, Any]:
        return {"token_dim": self.token_dim, "d_model": self.d_model, "d_hid": self.d_hid, "nlayers": self.nlayers,
                "output_dim": self.output_dim}


@dataclass(frozen=True)
class GeneTokens:
    """Per dataset gene: token row, chromosome code and genomic start (token -1 where not covered)."""

    token: np.ndarray  # int64
    chrom: np.ndarray  # int64, pandas category code of '<species>_<chromosome>' over the whole CSV
    start: np.ndarray  # float64
    n_chrom_codes: int  # chromosome categories in species_chrom.csv

    @property
    def covered(self) -> np.ndarray:
        return self.token >= 0


def default_nhead(d_model: int) -> int:
    """Heads assumed when `nhead` is not given: upstream's 20 at d_model 1280, else d_model / 16 (tiny models)."""
    return UPSTREAM_NHEAD if d_model == UPSTREAM_D_MODEL else max(1, d_model // TINY_HEAD_WIDTH)


# Checkpoint files ----------------------------------------------------------------------------------

class _PlainUnpickler(pickle.Unpickler):
    """Unpickles plain containers and NumPy scalars only (species_offsets.pkl is a dict of ints)."""

    ALLOWED = {("numpy", "dtype"), ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")


def _species_offset(path: Path, species: str) -> int:
    """Row of the species' first protein token in the token table (species_offsets.pkl)."""
    try:
        with path.open("rb") as handle:
            offsets = _PlainUnpickler(handle).load()
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a damaged or foreign file
        raise InputError(path, "species offsets", f"cannot be read ({type(err).__name__}: {err})",
                         "use the species_offsets.pkl released with the UCE model files") from err
    if not isinstance(offsets, Mapping) or species not in offsets:
        known = ", ".join(sorted(map(str, offsets))) if isinstance(offsets, Mapping) else "none"
        raise InputError(path, f"species '{species}'", f"has no token offset (species present: {known})",
                         "pass --model-option species=<one of those> or use the model files for your species")
    return int(offsets[species])


def _protein_symbols(path: Path) -> list[str]:
    """Gene symbols of a protein-embedding file, upper-cased, in the file's order (first one of a case-duplicate)."""
    table = load_torch_file(path, MODEL)
    if not isinstance(table, Mapping):
        raise InputError(path, "protein embeddings", "is not a gene symbol -> embedding dictionary",
                         "use the species' *.gene_symbol_to_embedding_ESM2.pt file of the UCE release")
    return list(dict.fromkeys(str(k).upper() for k in table))


def _chromosome_table(path: Path, species: str) -> tuple[pd.DataFrame, int]:
    """The species' rows of species_chrom.csv indexed by gene symbol (columns code, start) and the
    number of chromosome categories over all species (data_proc/data_utils.py::get_spec_chrom_csv)."""
    try:
        table = pd.read_csv(path, dtype={"gene_symbol": str, "species": str, "chromosome": str})
    except Exception as err:  # noqa: BLE001 - report any parse failure with the file name
        raise InputError(path, "file", f"cannot be read ({err})",
                         "use the species_chrom.csv released with the UCE model files") from err
    missing = [c for c in ("gene_symbol", "species", "chromosome", "start") if c not in table.columns]
    if missing:
        raise InputError(path, f"column '{missing[0]}'", "is missing",
                         "species_chrom.csv needs the columns gene_symbol, species, chromosome, start")
    spec_chrom = pd.Categorical(table["species"] + "_" + table["chromosome"])
    rows = pd.DataFrame({"code": spec_chrom.codes.astype(np.int64),
                         "start": pd.to_numeric(table["start"], errors="coerce").to_numpy(np.float64)},
                        index=table["gene_symbol"].to_numpy())
    rows = rows[(table["species"] == species).to_numpy() & (rows["code"] >= 0).to_numpy()
                & np.isfinite(rows["start"].to_numpy())]
    return rows[~rows.index.duplicated(keep="first")], len(spec_chrom.categories)


def gene_tokens(genes: pd.DataFrame, checkpoint: Path, species: str, protein_file: str) -> GeneTokens:
    """Token row, chromosome code and start of each dataset gene, matched by upper-cased symbol.

    Token row = position of the symbol in the species' protein-embedding file + the species offset
    (data_proc/data_utils.py::adata_path_to_prot_chrom_starts); a gene is covered when it has a
    protein embedding and a chromosome position for the species.
    """
    symbols_pe = _protein_symbols(checkpoint / PROTEIN_DIR / protein_file)
    offset = _species_offset(checkpoint / OFFSETS_FILE, species)
    chrom_rows, n_codes = _chromosome_table(checkpoint / CHROM_FILE, species)
    position = {s: i for i, s in enumerate(symbols_pe)}
    symbols = genes["symbol"].fillna("").astype(str).str.upper().to_numpy()
    found = np.array([bool(s) and s in position and s in chrom_rows.index for s in symbols], dtype=bool)
    token = np.full(len(symbols), -1, dtype=np.int64)
    chrom = np.full(len(symbols), -1, dtype=np.int64)
    start = np.zeros(len(symbols), dtype=np.float64)
    if found.any():
        hits = symbols[found]
        token[found] = [position[s] + offset for s in hits]
        chrom[found] = chrom_rows["code"].reindex(hits).to_numpy()
        start[found] = chrom_rows["start"].reindex(hits).to_numpy()
    return GeneTokens(token, chrom, start, n_codes)


def _weights_path(checkpoint: Path, weights: str | None) -> Path:
    """The model weights: the `weights` file, else the directory's only *.torch file besides all_tokens.torch."""
    if weights is not None:
        path = checkpoint / weights
        if not path.is_file():
            raise InputError(path, "UCE weights", "file not found",
                             f"pass --model-option weights=<file in {checkpoint}> (e.g. {WEIGHTS_FILES[0]})")
        return path
    found = sorted(p for p in checkpoint.glob("*.torch") if p.name != TOKEN_FILE)
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise InputError(checkpoint, "UCE weights",
                         f"expected one model *.torch file besides {TOKEN_FILE}, found {names}",
                         f"put {' or '.join(WEIGHTS_FILES)} in the directory, or choose one with "
                         "--model-option weights=<file name>")
    return found[0]


# Model ---------------------------------------------------------------------------------------------

def _shape(state: Mapping[str, Any], key: str, path: Path) -> tuple[int, ...]:
    if key not in state:
        raise InputError(path, "UCE weights", f"tensor '{key}' is missing",
                         "use an unmodified UCE checkpoint (4layer_model.torch or 33l_8ep_1024t_1280.torch)")
    return tuple(state[key].shape)


def infer_architecture(state: Mapping[str, Any], path: Path) -> Architecture:
    """Every TransformerModel size from the tensor shapes of a UCE state dict."""
    d_model, token_dim = _shape(state, "encoder.0.weight", path)
    layers = {int(m.group(1)) for k in state if (m := _LAYER_RE.match(k))}
    if not layers:
        raise InputError(path, "UCE weights", "has no transformer_encoder.layers.* tensors",
                         "use an unmodified UCE checkpoint (4layer_model.torch or 33l_8ep_1024t_1280.torch)")
    blocks = []  # (out, in) of each binary-decoder full block
    while f"binary_decoder.{len(blocks)}.0.weight" in state:
        blocks.append(_shape(state, f"binary_decoder.{len(blocks)}.0.weight", path))
    if not blocks:
        raise InputError(path, "UCE weights", "tensor 'binary_decoder.0.0.weight' is missing",
                         "use an unmodified UCE checkpoint (4layer_model.torch or 33l_8ep_1024t_1280.torch)")
    return Architecture(
        token_dim=token_dim, d_model=d_model,
        d_hid=_shape(state, "transformer_encoder.layers.0.linear1.weight", path)[0],
        nlayers=max(layers) + 1,
        output_dim=_shape(state, "decoder.3.weight", path)[0],
        decoder_hidden=_shape(state, "decoder.0.0.weight", path)[0],
        binary_widths=(blocks[0][1], *(out for out, _ in blocks)),
        max_len=_shape(state, "pos_encoder.pe", path)[0],
        n_tokens=_shape(state, "pe_embedding.weight", path)[0],
    )


def build_model(arch: Architecture, nhead: int) -> torch.nn.Module:
    """A module whose state-dict keys and shapes equal upstream TransformerModel's (pe_embedding set)."""
    from torch import nn

    def full_block(n_in: int, n_out: int) -> nn.Sequential:
        return nn.Sequential(nn.Linear(n_in, n_out), nn.LayerNorm(n_out), nn.GELU(), nn.Dropout(DROPOUT))

    model = nn.Module()
    model.pos_encoder = nn.Module()
    model.pos_encoder.register_buffer("pe", sinusoidal_positions(arch.max_len, arch.d_model))
    model.encoder = nn.Sequential(nn.Linear(arch.token_dim, arch.d_model), nn.GELU(), nn.LayerNorm(arch.d_model))
    layer = nn.TransformerEncoderLayer(arch.d_model, nhead, arch.d_hid, DROPOUT)
    model.transformer_encoder = nn.TransformerEncoder(layer, arch.nlayers, enable_nested_tensor=False)
    model.decoder = nn.Sequential(full_block(arch.d_model, arch.decoder_hidden),
                                  full_block(arch.decoder_hidden, arch.output_dim),
                                  full_block(arch.output_dim, arch.output_dim),
                                  nn.Linear(arch.output_dim, arch.output_dim))
    widths = arch.binary_widths
    model.binary_decoder = nn.Sequential(*(full_block(a, b) for a, b in zip(widths, widths[1:])),
                                         nn.Linear(widths[-1], 1))
    model.gene_embedding_layer = nn.Sequential(nn.Linear(arch.token_dim, arch.d_model), nn.GELU(),
                                               nn.LayerNorm(arch.d_model))
    model.pe_embedding = nn.Embedding(arch.n_tokens, arch.token_dim)
    model.pe_embedding.weight.requires_grad_(False)
    return model


def sinusoidal_positions(max_len: int, d_model: int) -> torch.Tensor:
    """model.py::PositionalEncoding's table, shape (max_len, 1, d_model)."""
    import torch

    position = torch.arange(max_len).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
    pe = torch.zeros(max_len, 1, d_model)
    pe[:, 0, 0::2] = torch.sin(position * div_term)
    pe[:, 0, 1::2] = torch.cos(position * div_term)
    return pe


def cell_embeddings(model: torch.nn.Module, tokens: torch.Tensor, lengths: torch.Tensor, d_model: int) -> torch.Tensor:
    """L2-normalised decoder output at the CLS position for token sentences (batch x length).

    As evaluate.py::run_eval + TransformerModel.forward: token vectors L2-normalised, encoder scaled
    by sqrt(d_model), sinusoidal positions added; positions at or after a cell's length are masked
    out of attention (boolean key-padding mask, see docs/models/uce.md).
    """
    import torch
    from torch.nn import functional as F

    x = F.normalize(model.pe_embedding(tokens), dim=2).transpose(0, 1)  # length x batch x token_dim
    x = model.encoder(x) * math.sqrt(d_model)
    x = x + model.pos_encoder.pe[: x.shape[0]]
    padding = torch.arange(tokens.shape[1], device=tokens.device)[None, :] >= lengths[:, None]
    hidden = model.transformer_encoder(x, src_key_padding_mask=padding)
    return F.normalize(model.decoder(hidden[0]).float(), dim=1)


# Cell sentences ------------------------------------------------------------------------------------

def build_sentence(tokens: np.ndarray, chroms: np.ndarray, starts: np.ndarray, chrom_order: np.ndarray,
                   chrom_token_offset: int) -> np.ndarray:
    """[CLS] then, per chromosome in `chrom_order`: its token, its genes by genomic start, the close token.

    `tokens`, `chroms`, `starts` describe the sampled genes (repeats allowed); `chrom_order` lists each
    of their chromosome codes once. Genes with equal starts keep token order (upstream leaves it open).
    """
    sorter = np.argsort(chrom_order, kind="stable")
    rank = sorter[np.searchsorted(chrom_order, chroms, sorter=sorter)]
    ordered = tokens[np.lexsort((tokens, starts, rank))]
    pieces = [np.array([CLS_TOKEN])]
    per_chrom = np.split(ordered, np.cumsum(np.bincount(rank, minlength=len(chrom_order)))[:-1])
    for chrom, genes in zip(chrom_order, per_chrom, strict=True):
        pieces += [np.array([chrom + chrom_token_offset]), genes, np.array([CHROM_CLOSE_TOKEN])]
    return np.concatenate(pieces).astype(np.int64)


def sample_sentence(counts: np.ndarray, tokens: np.ndarray, chroms: np.ndarray, starts: np.ndarray,
                    rng: np.random.Generator, sample_size: int, chrom_token_offset: int) -> np.ndarray:
    """One cell's sentence (eval_data.py::sample_cell_sentences): `sample_size` genes drawn with
    replacement with probability log1p(count) / sum, chromosomes in a random order.

    The arrays describe the cell's genes with a positive count.
    """
    weights = np.log1p(counts.astype(np.float64))
    picked = rng.choice(len(weights), size=sample_size, replace=True, p=weights / weights.sum())
    order = np.unique(chroms[picked])
    rng.shuffle(order)
    return build_sentence(tokens[picked], chroms[picked], starts[picked], order, chrom_token_offset)


def cell_rng(seed: int, cell: int) -> np.random.Generator:
    """The sampling stream of one cell: depends on the seed and the cell's index only."""
    return np.random.default_rng([seed % 2**64, cell])


def sentences(counts: sp.csr_matrix, vocab: GeneTokens, cells: slice, seed: int, sample_size: int,
              length: int, chrom_token_offset: int) -> tuple[np.ndarray, np.ndarray]:
    """Token sentences (padded with PAD to `length`) and their lengths for the cells in `cells`.

    `counts` and `vocab` cover the same genes, all of them covered.
    """
    out = np.full((cells.stop - cells.start, length), PAD_TOKEN, dtype=np.int64)
    lengths = np.zeros(len(out), dtype=np.int64)
    for row, cell in enumerate(range(cells.start, cells.stop)):
        lo, hi = counts.indptr[cell], counts.indptr[cell + 1]
        idx, values = counts.indices[lo:hi], counts.data[lo:hi]
        keep = values > 0
        idx, values = idx[keep], values[keep]
        sentence = sample_sentence(values, vocab.token[idx], vocab.chrom[idx], vocab.start[idx],
                                   cell_rng(seed, cell), sample_size, chrom_token_offset)
        out[row, : len(sentence)] = sentence
        lengths[row] = len(sentence)
    return out, lengths


# Embedding -----------------------------------------------------------------------------------------

def _positive(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"--model-option {name}", name, f"must be an integer >= {minimum}, got {value!r}",
                         f"pass --model-option {name}=<integer >= {minimum}>")
    return value


def _token_table(state: Mapping[str, Any], arch: Architecture, token_path: Path) -> tuple[Any, str]:
    """The token table used (evaluate.py::get_eval_model): the checkpoint's own pe_embedding unless
    all_tokens.torch has another number of rows (another species' token file), then all_tokens.torch."""
    import torch

    table = load_torch_file(token_path, MODEL)
    if not isinstance(table, torch.Tensor) or table.ndim != 2 or table.shape[1] != arch.token_dim:
        raise InputError(token_path, "token embeddings", f"is not a rows x {arch.token_dim} tensor",
                         "use the all_tokens.torch released with these UCE weights")
    same = table.shape[0] == arch.n_tokens or (
        arch.n_tokens == UPSTREAM_TOKEN_ROWS and table.shape[0] == UPSTREAM_CHROM_TOKEN_OFFSET)
    return (state["pe_embedding.weight"], "checkpoint") if same else (table.float(), TOKEN_FILE)


@foundation_model("cells", "uce", "Rosen et al. 2023, Universal Cell Embeddings",
                  "CLS state of chromosome-ordered gene sentences",
                  checkpoint_files=CHECKPOINT_FILES)
def embed_cells(counts: sp.csr_matrix, genes: pd.DataFrame, checkpoint: Path, options: RunOptions, *,
                weights: str | None = None, species: str = "human", nhead: int | None = None,
                sample_size: int = 1024, pad_length: int = 1536, filter_min_cells: int = 10,
                chrom_token_offset: int | None = None, protein_embedding_file: str | None = None) -> ModelEmbedding:
    """UCE cell embeddings (CLS decoder output, L2-normalised), one row per cell in the input order.

    Model options: `weights` (file name; default the only model *.torch file), `species` (human),
    `nhead` (20 at d_model 1280, else d_model / 16), `sample_size` (1024 genes sampled per cell),
    `pad_length` (1536, longest allowed sentence), `filter_min_cells` (10: genes detected in fewer
    cells are not sampled, upstream's --filter; 0 turns it off), `chrom_token_offset` (first chromosome
    token row; 143574 for the released token table, else table rows - chromosome categories),
    `protein_embedding_file` (file in protein_embeddings/; default the species' released file).
    """
    import torch

    checkpoint = require_files(checkpoint, FILES, MODEL)
    sample_size = _positive(sample_size, "sample_size")
    pad_length = _positive(pad_length, "pad_length")
    filter_min_cells = _positive(filter_min_cells, "filter_min_cells", minimum=0)
    if protein_embedding_file is None:
        if species not in PROTEIN_EMBEDDING_FILES:
            raise InputError(f"--model-option species={species}", "species",
                             f"has no released protein-embedding file (known: {', '.join(PROTEIN_EMBEDDING_FILES)})",
                             "pass --model-option protein_embedding_file=<file in protein_embeddings/> as well")
        protein_embedding_file = PROTEIN_EMBEDDING_FILES[species]
    require_files(checkpoint / PROTEIN_DIR, [protein_embedding_file], MODEL)
    weights_path = _weights_path(checkpoint, weights)

    vocab = gene_tokens(genes, checkpoint, species, protein_embedding_file)
    coverage = check_coverage(MODEL, vocab.covered, options.min_coverage,
                              checkpoint / PROTEIN_DIR / protein_embedding_file)
    counts = sp.csr_matrix(counts, dtype=np.float32)
    used = vocab.covered & (np.asarray((counts > 0).sum(axis=0)).ravel() >= filter_min_cells)
    used_idx = np.flatnonzero(used)
    counts = counts[:, used_idx].tocsr()
    counts.sum_duplicates()  # canonical (sorted) rows: sampling must not depend on storage order
    vocab = GeneTokens(vocab.token[used_idx], vocab.chrom[used_idx], vocab.start[used_idx], vocab.n_chrom_codes)
    require_counts_per_cell(counts, used_idx.size, MODEL, "remove empty cells before embedding (quality control), "
                            "or lower --model-option filter_min_cells")
    n_chroms = np.unique(vocab.chrom).size
    length = 1 + sample_size + 2 * min(n_chroms, sample_size)
    if length > pad_length:
        raise InputError("--model-option sample_size", "sample_size",
                         f"sentences of {sample_size} genes on up to {n_chroms} chromosomes need {length} tokens, "
                         f"more than pad_length {pad_length}", "lower sample_size or raise pad_length")

    seed_everything(options.seed)
    state = load_torch_file(weights_path, MODEL)
    if not isinstance(state, Mapping):
        raise InputError(weights_path, "UCE weights", "is not a state dict",
                         "use the released model file (a TransformerModel state dict)")
    arch = infer_architecture(state, weights_path)
    if pad_length > arch.max_len:
        raise InputError("--model-option pad_length", "pad_length",
                         f"{pad_length} exceeds the checkpoint's {arch.max_len} positions",
                         f"use pad_length <= {arch.max_len}")
    nhead = default_nhead(arch.d_model) if nhead is None else _positive(nhead, "nhead")
    if arch.d_model % nhead:
        raise InputError("--model-option nhead", "nhead", f"{nhead} does not divide d_model {arch.d_model}",
                         "pass the number of attention heads the checkpoint was trained with")
    with torch.device("meta"):
        model = build_model(arch, nhead)
    model = model.to_empty(device="cpu")
    report = load_strict(model, state, weights_path, MODEL)
    table, table_source = _token_table(state, arch, checkpoint / TOKEN_FILE)
    del state
    model.pe_embedding = torch.nn.Embedding.from_pretrained(table, freeze=True)
    if chrom_token_offset is None:
        chrom_token_offset = (UPSTREAM_CHROM_TOKEN_OFFSET if table.shape[0] == UPSTREAM_TOKEN_ROWS
                              else table.shape[0] - vocab.n_chrom_codes)
    chrom_token_offset = _positive(chrom_token_offset, "chrom_token_offset", minimum=N_SPECIAL_TOKENS)
    top = max(int(vocab.token.max()), chrom_token_offset + int(vocab.chrom.max()))
    if top >= table.shape[0] or int(vocab.token.max()) >= chrom_token_offset:
        raise InputError(checkpoint / OFFSETS_FILE, "token rows",
                         f"gene / chromosome tokens (up to row {top}, chromosome rows from {chrom_token_offset}) do "
                         f"not fit the {table.shape[0]}-row token table ({table_source})",
                         "use all_tokens.torch, species_offsets.pkl, species_chrom.csv and protein embeddings from "
                         "the same UCE release (or set --model-option chrom_token_offset)")

    device = resolve_device(options.device)
    model = model.eval().to(device)
    out = np.empty((counts.shape[0], arch.output_dim), dtype=np.float32)
    with torch.inference_mode(), autocast(device, options.precision):
        for cells in batches(counts.shape[0], options.batch_size, "uce: cells embedded"):
            tokens, lengths = sentences(counts, vocab, cells, options.seed, sample_size, length, chrom_token_offset)
            emb = cell_embeddings(model, torch.from_numpy(tokens).to(device), torch.from_numpy(lengths).to(device),
                                  arch.d_model)
            out[cells] = emb.cpu().numpy()
    if not np.isfinite(out).all():
        raise InputError(weights_path, "UCE weights", "produced non-finite embeddings",
                         "re-copy the checkpoint; with --precision fp16 try bf16 or fp32")
    params = {"weights": weights_path.name, "species": species, "protein_embedding_file": protein_embedding_file,
              **arch.as_dict(), "nhead": nhead, "sample_size": sample_size, "pad_length": pad_length,
              "sentence_length": length, "filter_min_cells": filter_min_cells,
              "chrom_token_offset": chrom_token_offset, "token_table": table_source, "pooling": "cls",
              "normalized": True, "seed": options.seed, "precision": options.precision}
    return ModelEmbedding(values=out, params=params, load=report, coverage=coverage,
                          checkpoint_hash=directory_hash(checkpoint))


# Tiny checkpoints ----------------------------------------------------------------------------------
