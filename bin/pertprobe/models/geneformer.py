"""Geneformer (Theodoris et al. 2023): rank-value encoding, BERT forward pass, cell and gene embeddings.

Each cell becomes the Ensembl token ids of its expressed vocabulary genes ordered by
count / cell total * 10,000 / gene's non-zero corpus median (descending), truncated to the model's
input size; V2 models add `<cls>` in front and `<eos>` at the end. A cell embedding is the mean of the
gene tokens' hidden states at the chosen layer (or the `<cls>` state on V2). See docs/models/geneformer.md.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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
    first_existing,
    go_offline,
    load_torch_file,
    require_counts_per_cell,
    require_files,
    resolve_device,
    seed_everything,
)
from .gene_ids import Coverage, GeneIdMap, check_coverage, fill_missing, lookup, strip_version

if TYPE_CHECKING:
    import torch
    from transformers import BertForMaskedLM

MODEL = "geneformer"
CONFIG = "config.json"
WEIGHTS = ("model.safetensors", "pytorch_model.bin")
# Dictionary file-name suffixes of the authors' releases, newest first: V2 (~104M cells; an
# intermediate V2 release used gc95M), V1 (~30M cells), and the unsuffixed V1 names of the first release.
RELEASES = ("_gc104M", "_gc95M", "_gc30M", "")
TOKEN_DICTIONARIES = tuple(f"token_dictionary{r}.pkl" for r in RELEASES)
MEDIAN_DICTIONARY = "gene_median_dictionary{}.pkl"
NAME_DICTIONARY = "gene_name_id_dict{}.pkl"
MAPPING_DICTIONARY = "ensembl_mapping_dict{}.pkl"  # optional: Ensembl ID -> vocabulary ID (collapsing)
# The released V2 layout (V1: the same names with _gc30M, or no suffix; pytorch_model.bin also accepted).
FILES = (CONFIG, WEIGHTS[0], TOKEN_DICTIONARIES[0], MEDIAN_DICTIONARY.format(RELEASES[0]),
         NAME_DICTIONARY.format(RELEASES[0]))
# What a released directory always holds (globs; 'a|b': either), checked before any task runs.
CHECKPOINT_FILES = (CONFIG, "|".join(WEIGHTS), "token_dictionary*.pkl", "gene_median_dictionary*.pkl")
TARGET_SUM = 10_000  # counts per cell after normalisation, as the official tokenizer
POOLINGS = ("mean", "cls")
KINDS = ("token", "contextual")
PAD, MASK, CLS, EOS = "<pad>", "<mask>", "<cls>", "<eos>"


# ---------------------------------------------------------------------------------------- dictionaries


class _PlainUnpickler(pickle.Unpickler):
    """Unpickle plain dicts of str / int / float (NumPy scalars allowed); refuse any other class."""

    ALLOWED = {("numpy", "dtype"), ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_dictionary(path: Path, what: str) -> dict[Any, Any]:
    """A pickled dict, loaded without running code from the file."""
    try:
        with path.open("rb") as handle:
            value = _PlainUnpickler(io.BytesIO(handle.read())).load()
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a damaged or foreign file
        raise InputError(path, f"{MODEL} {what}", f"cannot be read ({type(err).__name__}: {err})",
                         "re-copy the dictionary from the Geneformer release (a pickled dict of plain values)") from err
    if not isinstance(value, dict) or not value:
        raise InputError(path, f"{MODEL} {what}", f"holds {type(value).__name__}, not a non-empty dict",
                         "use the dictionary file released with the model")
    return value


@dataclass(frozen=True)
class Dictionaries:
    """The tokenizer's dictionaries: Ensembl ID -> token, Ensembl ID -> median, symbol -> Ensembl ID."""

    tokens: dict[str, int]
    medians: dict[str, float]
    name_to_id: dict[str, str]
    id_mapping: dict[str, str] | None
    token_file: Path
    median_file: Path

    @property
    def version(self) -> int:
        """2 when the token dictionary has `<cls>` and `<eos>` (V2 models), else 1."""
        return 2 if CLS in self.tokens else 1


def load_dictionaries(checkpoint: Path) -> Dictionaries:
    """Read the token, median, gene-name and (optional) Ensembl-mapping dictionaries of one release."""
    present = [name for name in TOKEN_DICTIONARIES if (checkpoint / name).is_file()]
    if not present:
        raise InputError(checkpoint, f"{MODEL} token dictionary", f"none of {', '.join(TOKEN_DICTIONARIES)} found",
                         "copy the token, gene median and gene name dictionaries released with the model (V2: "
                         "geneformer/*_gc104M.pkl; V1: geneformer/gene_dictionaries_30m/*_gc30M.pkl) into the "
                         "directory")
    if len(present) > 1:
        raise InputError(checkpoint, f"{MODEL} token dictionary", f"several token dictionaries ({', '.join(present)})",
                         "keep only the dictionaries released with these weights")
    token_file = checkpoint / present[0]
    release = RELEASES[TOKEN_DICTIONARIES.index(present[0])]
    median_file = checkpoint / MEDIAN_DICTIONARY.format(release)
    name_file = checkpoint / NAME_DICTIONARY.format(release)
    for path, what in ((median_file, "gene median dictionary"), (name_file, "gene name dictionary")):
        if not path.is_file():
            raise InputError(path, f"{MODEL} {what}", f"is missing (the token dictionary is {token_file.name})",
                             f"copy {path.name} from the same Geneformer release as {token_file.name}")
    tokens = {str(k): int(v) for k, v in _read_dictionary(token_file, "token dictionary").items()}
    if PAD not in tokens:
        raise InputError(token_file, f"{MODEL} token dictionary", f"has no '{PAD}' token",
                         "use the token dictionary released with the model")
    if (CLS in tokens) != (EOS in tokens):
        raise InputError(token_file, f"{MODEL} token dictionary", f"has only one of '{CLS}' and '{EOS}'",
                         "use the token dictionary released with the model (V2 has both, V1 neither)")
    medians = {str(k): float(v) for k, v in _read_dictionary(median_file, "gene median dictionary").items()}
    names = {str(k): str(v) for k, v in _read_dictionary(name_file, "gene name dictionary").items()}
    mapping_file = checkpoint / MAPPING_DICTIONARY.format(release)
    mapping = ({str(k): str(v) for k, v in _read_dictionary(mapping_file, "Ensembl mapping dictionary").items()}
               if mapping_file.is_file() else None)
    return Dictionaries(tokens, medians, names, mapping, token_file, median_file)


# ---------------------------------------------------------------------------------------- genes -> tokens


@dataclass(frozen=True)
class GeneTokens:
    """Each dataset gene's vocabulary token (-1: not covered) and median (NaN: not covered)."""

    genes: pd.DataFrame  # symbol / ensembl, gaps filled from the checkpoint's gene name dictionary
    token: np.ndarray
    median: np.ndarray

    @property
    def covered(self) -> np.ndarray:
        return self.token >= 0


def map_genes(genes: pd.DataFrame, dicts: Dictionaries) -> GeneTokens:
    """Dataset genes -> tokens: symbols to Ensembl IDs via the gene name dictionary where the dataset
    has none, then (when the release ships one) the Ensembl mapping dictionary, as the official tokenizer."""
    filled = fill_missing(genes, GeneIdMap.from_pairs(dicts.name_to_id.items()))
    ensembl = filled["ensembl"].astype(str).map(strip_version).str.upper()
    if dicts.id_mapping is not None:  # official collapse step: IDs absent from the mapping are not tokenized
        in_vocab = {k: v for k, v in dicts.id_mapping.items() if v in dicts.tokens}
        ensembl = ensembl.map(lambda e: in_vocab.get(e, ""))
    specials = {PAD, MASK, CLS, EOS}
    vocabulary = {k: v for k, v in dicts.tokens.items() if k not in specials}
    token = lookup(pd.DataFrame({"ensembl": ensembl.to_numpy()}), vocabulary, "ensembl")
    no_median = sorted({e for e, t in zip(ensembl, token, strict=True) if t >= 0 and e not in dicts.medians})
    if no_median:
        raise InputError(dicts.median_file, f"{MODEL} gene median dictionary",
                         f"has no median for {len(no_median)} vocabulary genes (e.g. {', '.join(no_median[:3])})",
                         f"use the median dictionary released with {dicts.token_file.name}")
    median = np.array([dicts.medians[e] if t >= 0 else np.nan for e, t in zip(ensembl, token, strict=True)])
    if np.any(~(median[token >= 0] > 0)) or not np.all(np.isfinite(median[token >= 0])):
        raise InputError(dicts.median_file, f"{MODEL} gene median dictionary", "has non-positive or non-finite medians",
                         f"use the median dictionary released with {dicts.token_file.name}")
    return GeneTokens(filled, token, median)


# ---------------------------------------------------------------------------------------- rank-value encoding


@dataclass(frozen=True)
class Normalised:
    """cells x vocabulary genes: count / cell total * target_sum / median (stored entries > 0 only).

    Columns are the distinct covered tokens in order of their first dataset gene; dataset genes that map
    to the same token are summed first (the official tokenizer's collapse of duplicate Ensembl IDs)."""

    values: sp.csr_matrix
    tokens: np.ndarray

    def encode(self, rows: Sequence[int] | np.ndarray, n_genes: int) -> list[np.ndarray]:
        """Rank-value encoding of `rows`: tokens by descending value (ties: dataset gene order), <= n_genes."""
        out = []
        for row in rows:
            start, stop = self.values.indptr[row], self.values.indptr[row + 1]
            order = np.argsort(-self.values.data[start:stop], kind="stable")[:n_genes]
            out.append(self.tokens[self.values.indices[start:stop][order]])
        return out

    def lengths(self, n_genes: int) -> np.ndarray:
        """Gene tokens per cell after truncation to `n_genes`."""
        return np.minimum(np.diff(self.values.indptr), n_genes)


def normalise(counts: sp.spmatrix, gene_tokens: np.ndarray, gene_medians: np.ndarray,
              target_sum: float = TARGET_SUM) -> Normalised:
    """Official tokenizer normalisation: each cell's counts / its total over ALL genes * target_sum,
    divided by the gene's non-zero median; only genes with a token (gene_tokens >= 0) are kept."""
    counts = sp.csr_matrix(counts)
    covered = np.flatnonzero(gene_tokens >= 0)
    distinct, first, inverse = np.unique(gene_tokens[covered], return_index=True, return_inverse=True)
    by_first = np.argsort(first, kind="stable")
    column = np.empty_like(by_first)
    column[by_first] = np.arange(by_first.size)
    collapse = sp.csr_matrix((np.ones(covered.size, dtype=np.float64), (covered, column[inverse])),
                             shape=(counts.shape[1], distinct.size))
    summed = (counts @ collapse).tocsr()
    summed.sum_duplicates()
    summed.eliminate_zeros()
    summed.sort_indices()
    n_counts = np.asarray(counts.sum(axis=1, dtype=np.float64)).ravel()
    rows = np.repeat(np.arange(summed.shape[0]), np.diff(summed.indptr))
    medians = gene_medians[covered[first[by_first]]].astype(np.float64)
    summed.data = summed.data / n_counts[rows] * target_sum / medians[summed.indices]
    return Normalised(summed, distinct[by_first])


def rank_value_encode(counts: sp.spmatrix, gene_tokens: np.ndarray, gene_medians: np.ndarray, n_genes: int,
                      target_sum: float = TARGET_SUM) -> list[np.ndarray]:
    """Each cell's gene tokens (no special tokens) in rank-value order, at most `n_genes` of them."""
    norm = normalise(counts, gene_tokens, gene_medians, target_sum)
    return norm.encode(range(norm.values.shape[0]), n_genes)


# ---------------------------------------------------------------------------------------- model


def _weights_tensor_count(path: Path) -> int:
    """Tensors stored in the weights file (also the first check that the file is whole)."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                return len(list(handle.keys()))
        except Exception as err:  # noqa: BLE001 - a truncated or foreign file
            raise InputError(path, f"{MODEL} weights", f"cannot be read ({type(err).__name__}: {err})",
                             "re-copy the released model.safetensors; it is truncated or not safetensors") from err
    return len(load_torch_file(path, MODEL))


def load_model(checkpoint: Path, device: torch.device) -> tuple[BertForMaskedLM, LoadReport]:
    """BertForMaskedLM from the directory (local files only); any missing, unexpected or reshaped
    weight is an `InputError`. Returned in eval mode, float32, on `device`."""
    go_offline()
    from transformers import BertForMaskedLM

    weights = first_existing(checkpoint, WEIGHTS, MODEL)
    n_tensors = _weights_tensor_count(weights)
    try:
        model, info = BertForMaskedLM.from_pretrained(str(checkpoint), local_files_only=True, output_loading_info=True)
    except Exception as err:  # noqa: BLE001 - transformers raises many types for bad files
        raise InputError(weights, f"{MODEL} weights", f"cannot be loaded with {CONFIG} ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''})",
                         f"use the {CONFIG} and weights released together (same model size and version)") from err
    problems = []
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        names = sorted(str(k) for k in info.get(key, ()))
        if names:
            problems.append(f"{len(names)} {key.split('_')[0]} (e.g. {', '.join(names[:3])})")
    if problems:
        raise InputError(weights, f"{MODEL} weights", "do not match the BertForMaskedLM built from "
                         f"{CONFIG}: {'; '.join(problems)}",
                         f"use a pretrained Geneformer checkpoint (not a fine-tuned classifier) with its own {CONFIG}")
    return model.float().to(device).eval(), LoadReport(n_tensors=n_tensors)


@dataclass(frozen=True)
class Encoder:
    """The model cut after the chosen layer, with the input size and special tokens of its version."""

    model: BertForMaskedLM
    version: int
    hidden_index: int  # index into transformers' hidden_states (0 = embeddings output)
    max_length: int
    pad: int
    cls: int | None
    eos: int | None

    @property
    def n_genes(self) -> int:
        """Gene tokens that fit: the input size, less `<cls>` and `<eos>` on V2."""
        return self.max_length - (2 if self.version == 2 else 0)

    def inputs(self, cells: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Input ids padded with `<pad>` to the longest cell (V2: `<cls>` genes `<eos>`), the attention
        mask, and the mask of gene positions (what mean pooling averages)."""
        lead = 1 if self.version == 2 else 0
        width = max(len(c) for c in cells) + 2 * lead
        ids = np.full((len(cells), width), self.pad, dtype=np.int64)
        attention = np.zeros((len(cells), width), dtype=np.int64)
        genes = np.zeros((len(cells), width), dtype=bool)
        for i, cell in enumerate(cells):
            ids[i, lead:lead + len(cell)] = cell
            genes[i, lead:lead + len(cell)] = True
            attention[i, :len(cell) + 2 * lead] = 1
            if lead:
                ids[i, 0], ids[i, len(cell) + 1] = self.cls, self.eos
        return ids, attention, genes

    def params(self, emb_layer: int) -> dict[str, Any]:
        return {"version": f"V{self.version}", "emb_layer": emb_layer, "hidden_state_index": self.hidden_index,
                "max_length": self.max_length, "target_sum": TARGET_SUM}


def build_encoder(model: BertForMaskedLM, dicts: Dictionaries, emb_layer: Any, max_length: Any,
                  config_path: Path) -> Encoder:
    """Check `emb_layer` / `max_length` against the model, and drop the layers after the chosen one
    (hidden_states[k] of the full model equals the output of its first k layers)."""
    config = model.config
    n_layers = int(config.num_hidden_layers)
    if isinstance(emb_layer, bool) or not isinstance(emb_layer, int) or not -n_layers <= emb_layer <= 0:
        raise InputError("--model-option", "emb_layer", f"is {emb_layer!r}; this model has {n_layers} layers",
                         f"use an integer from {-n_layers} to 0 (upstream EmbExtractor: -1 = second-to-last layer, "
                         "0 = last layer)")
    limit = int(config.max_position_embeddings)
    max_length = limit if max_length is None else max_length
    floor = 3 if dicts.version == 2 else 1
    if isinstance(max_length, bool) or not isinstance(max_length, int) or not floor <= max_length <= limit:
        raise InputError("--model-option", "max_length", f"is {max_length!r}; the model takes {floor} to {limit} "
                         f"tokens (max_position_embeddings in {config_path.name})",
                         "leave max_length unset for the model's input size, or give an integer in that range")
    vocab_top = max(dicts.tokens.values())
    if vocab_top >= int(config.vocab_size):
        raise InputError(dicts.token_file, f"{MODEL} token dictionary", f"has token id {vocab_top} but the model's "
                         f"vocabulary has {config.vocab_size} entries",
                         f"use the token dictionary of the release these weights belong to ({CONFIG}: vocab_size)")
    hidden_index = n_layers + emb_layer
    model.bert.encoder.layer = model.bert.encoder.layer[:hidden_index]
    v2 = dicts.version == 2
    return Encoder(model, dicts.version, hidden_index, max_length, dicts.tokens[PAD],
                   dicts.tokens[CLS] if v2 else None, dicts.tokens[EOS] if v2 else None)


def _hidden_states(encoder: Encoder, cells: list[np.ndarray], device: torch.device,
                   precision: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hidden states (cells x positions x d, float32) of the cells' inputs, the gene-position mask and the ids."""
    import torch

    ids, attention, genes = encoder.inputs(cells)
    input_ids = torch.from_numpy(ids).to(device)
    with autocast(device, precision):
        out = encoder.model.bert(input_ids=input_ids, attention_mask=torch.from_numpy(attention).to(device))
    return out.last_hidden_state.float(), torch.from_numpy(genes).to(device), input_ids


def _by_length(norm: Normalised, n_genes: int, batch_size: int) -> Iterator[np.ndarray]:
    """Cell indices in batches, longest cells first (ties: dataset order) so padding stays small."""
    order = np.argsort(-norm.lengths(n_genes), kind="stable")
    for part in batches(order.size, batch_size, "geneformer: cells encoded"):
        yield order[part]


@dataclass(frozen=True)
class _CountsRun:
    """What the counts-based paths share: checked inputs, loaded model, normalised counts."""

    checkpoint: Path
    dicts: Dictionaries
    mapped: GeneTokens
    coverage: Coverage
    encoder: Encoder
    report: LoadReport
    norm: Normalised
    device: torch.device


def _prepare(counts: Any, genes: pd.DataFrame, checkpoint: str | Path, options: RunOptions,
             emb_layer: Any, max_length: Any) -> _CountsRun:
    """Files, dictionaries, coverage, model and normalised counts; cells without vocabulary genes raise."""
    checkpoint = require_files(checkpoint, (CONFIG,), MODEL)
    dicts = load_dictionaries(checkpoint)
    mapped = map_genes(genes, dicts)
    counts = sp.csr_matrix(counts)
    if counts.shape[1] != len(genes):
        raise InputError("counts matrix", "genes", f"has {counts.shape[1]} columns for {len(genes)} genes",
                         "pass the counts of exactly the genes in the gene table, in the same order")
    coverage = check_coverage(MODEL, mapped.covered, options.min_coverage, dicts.token_file)
    seed_everything(options.seed)
    device = resolve_device(options.device)
    model, report = load_model(checkpoint, device)
    encoder = build_encoder(model, dicts, emb_layer, max_length, checkpoint / CONFIG)
    norm = normalise(counts, mapped.token, mapped.median)
    require_counts_per_cell(norm.values, int(mapped.covered.sum()), "Geneformer",
                            "remove empty cells before embedding (the official tokenizer drops them), or check the "
                            "gene identifiers")
    return _CountsRun(checkpoint, dicts, mapped, coverage, encoder, report, norm, device)


# ---------------------------------------------------------------------------------------- public entry points


@foundation_model("cells", "geneformer", "Theodoris et al. 2023, Geneformer",
                  "mean of gene-token states (rank-value encoding)",
                  checkpoint_files=CHECKPOINT_FILES)
def embed_cells(counts: sp.spmatrix, genes: pd.DataFrame, checkpoint: str | Path, options: RunOptions, *,
                emb_layer: int = -1, pooling: str = "mean", max_length: int | None = None) -> ModelEmbedding:
    """One row per cell: mean of the gene tokens' hidden states (pooling='mean') or the `<cls>` state
    (pooling='cls', V2 only) at layer `emb_layer` (upstream convention: -1 second-to-last, 0 last)."""
    import torch

    if pooling not in POOLINGS:
        raise InputError("--model-option", "pooling", f"is {pooling!r}", f"use one of {', '.join(POOLINGS)}")
    run = _prepare(counts, genes, checkpoint, options, emb_layer, max_length)
    encoder, norm = run.encoder, run.norm
    if pooling == "cls" and encoder.version != 2:
        raise InputError(run.dicts.token_file, "pooling", "is 'cls' but this V1 token dictionary has no <cls> token",
                         "use pooling=mean with V1 models")
    values = np.zeros((norm.values.shape[0], int(encoder.model.config.hidden_size)), dtype=np.float32)
    with torch.inference_mode():
        for rows in _by_length(norm, encoder.n_genes, options.batch_size):
            hidden, gene_mask, _ = _hidden_states(encoder, norm.encode(rows, encoder.n_genes), run.device,
                                                  options.precision)
            if pooling == "cls":
                pooled = hidden[:, 0]
            else:
                weights = gene_mask.unsqueeze(-1).float()
                pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1)
            values[rows] = pooled.cpu().numpy()
    params = {**encoder.params(emb_layer), "pooling": pooling, "precision": options.precision}
    return ModelEmbedding(values=values, params=params, load=run.report, coverage=run.coverage,
                          checkpoint_hash=directory_hash(run.checkpoint))


@foundation_model("genes", "geneformer", "Theodoris et al. 2023, Geneformer",
                  "token embeddings (or contextual states) of the targets",
                  checkpoint_files=CHECKPOINT_FILES)
def embed_genes(genes: pd.DataFrame, checkpoint: str | Path, options: RunOptions, counts: sp.spmatrix | None = None,
                *, kind: str = "token", emb_layer: int = -1, max_length: int | None = None) -> ModelEmbedding:
    """One row per covered gene (index: dataset gene names, dataset order).

    kind='token': the gene's row of the input word-embedding matrix. kind='contextual': the mean over
    cells of the gene's hidden state at `emb_layer` (needs `counts`, cells x `genes`); genes never
    expressed in any cell's (truncated) input get no row."""
    import torch

    if kind not in KINDS:
        raise InputError("--model-option", "kind", f"is {kind!r}", f"use one of {', '.join(KINDS)}")
    if kind == "token":
        checkpoint = require_files(checkpoint, (CONFIG,), MODEL)
        dicts = load_dictionaries(checkpoint)
        mapped = map_genes(genes, dicts)
        coverage = check_coverage(MODEL, mapped.covered, options.min_coverage, dicts.token_file)
        seed_everything(options.seed)
        model, report = load_model(checkpoint, torch.device("cpu"))
        table = model.bert.embeddings.word_embeddings.weight.detach().float().numpy()
        keep = np.flatnonzero(mapped.covered)
        return ModelEmbedding(values=np.ascontiguousarray(table[mapped.token[keep]], dtype=np.float32),
                              params={"kind": kind, "version": f"V{dicts.version}"}, load=report, coverage=coverage,
                              checkpoint_hash=directory_hash(checkpoint), index=[str(g) for g in genes.index[keep]])
    if counts is None:
        raise InputError("--model-option", "kind", "is 'contextual' but no counts were given",
                         "pass the cells x genes counts matrix (contextual states come from cells), or use kind=token")
    run = _prepare(counts, genes, checkpoint, options, emb_layer, max_length)
    encoder, norm, mapped = run.encoder, run.norm, run.mapped
    row_of = np.full(int(encoder.model.config.vocab_size), -1, dtype=np.int64)
    row_of[norm.tokens] = np.arange(norm.tokens.size)
    d = int(encoder.model.config.hidden_size)
    sums = torch.zeros((norm.tokens.size, d), dtype=torch.float64)
    seen = torch.zeros(norm.tokens.size, dtype=torch.float64)
    lookup_rows = torch.from_numpy(row_of)
    with torch.inference_mode():
        for rows in _by_length(norm, encoder.n_genes, options.batch_size):
            hidden, gene_mask, ids = _hidden_states(encoder, norm.encode(rows, encoder.n_genes), run.device,
                                                    options.precision)
            targets = lookup_rows[ids[gene_mask].cpu()]
            sums.index_add_(0, targets, hidden[gene_mask].double().cpu())
            seen.index_add_(0, targets, torch.ones(targets.numel(), dtype=torch.float64))
    token_row = np.where(mapped.covered, row_of[np.maximum(mapped.token, 0)], -1)
    keep = np.flatnonzero((token_row >= 0) & (seen.numpy()[np.maximum(token_row, 0)] > 0))
    means = (sums / seen.clamp(min=1).unsqueeze(1)).numpy()
    params = {"kind": kind, **encoder.params(emb_layer), "precision": options.precision,
              "n_covered_not_expressed": int(np.count_nonzero(mapped.covered)) - int(keep.size)}
    return ModelEmbedding(values=means[token_row[keep]].astype(np.float32), params=params, load=run.report,
                          coverage=run.coverage, checkpoint_hash=directory_hash(run.checkpoint),
                          index=[str(g) for g in genes.index[keep]])


# ---------------------------------------------------------------------------------------- tiny checkpoints
