"""Checkpoint plumbing shared by the adapters: required files, content hash, strict loading, device."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from ..progress import Progress
from .gene_ids import Coverage

if TYPE_CHECKING:
    import torch

# Adapters never fall back to a model hub: set before transformers / huggingface_hub import.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def go_offline() -> None:
    """Forbid Hugging Face hub access for this process (adapters load local directories only)."""
    os.environ.update(OFFLINE_ENV)


@dataclass(frozen=True)
class RunOptions:
    """How to run a model: device ('auto', 'cpu', 'cuda', 'cuda:N'), batch size, seed, precision."""

    device: str = "auto"
    batch_size: int = 32
    seed: int = 0
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast on CUDA only)
    min_coverage: float = 0.5


@dataclass
class LoadReport:
    """What a strict load did: tensors loaded and keys renamed on the way."""

    n_tensors: int
    renamed: dict[str, str] = field(default_factory=dict)


@dataclass
class ModelEmbedding:
    """What an adapter returns: rows x d values (cells, or the covered genes named in `index`)."""

    values: np.ndarray
    params: dict[str, Any]
    load: LoadReport
    coverage: Coverage
    checkpoint_hash: str
    index: list[str] | None = None

    def metadata(self, model: str) -> dict[str, Any]:
        """The embedding-contract metadata (uns['embedding'] / parquet key-value metadata)."""
        return {"model": model, "checkpoint_hash": self.checkpoint_hash, "n_dims": int(self.values.shape[1]),
                "params": self.params, "n_tensors_loaded": self.load.n_tensors,
                "gene_coverage": self.coverage.as_dict()}


def require_files(directory: str | Path, names: Sequence[str], model: str) -> Path:
    """Return `directory` as a Path; raise `InputError` naming the first missing file."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(directory, f"{model} checkpoint", "is not a directory",
                         f"pass the local directory that holds the {model} files ({', '.join(names)})")
    for name in names:
        if not (directory / name).exists():
            raise InputError(directory / name, f"{model} checkpoint", "required file is missing",
                             f"the {model} directory needs {', '.join(names)} (the model's released layout)")
    return directory


def first_existing(directory: Path, names: Sequence[str], model: str) -> Path:
    """The first of `names` present in `directory` (alternatives such as safetensors / .bin)."""
    for name in names:
        if (directory / name).exists():
            return directory / name
    raise InputError(directory, f"{model} checkpoint", f"none of {', '.join(names)} found",
                     f"put the {model} weights in the directory under one of these names")


def directory_hash(directory: str | Path) -> str:
    """sha256 over every file's relative path and bytes, in sorted order (hidden files skipped)."""
    directory = Path(directory)
    digest = hashlib.sha256()
    files = sorted(p for p in directory.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(directory).parts))
    for path in files:
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        _update(digest, path)
        digest.update(b"\0")
    return "sha256:" + digest.hexdigest()


def _update(digest: Any, path: Path) -> None:
    """Feed a file's bytes to `digest` in 1 MiB blocks."""
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def file_hash(path: str | Path) -> str:
    """sha256 of one file's bytes (side inputs such as a FASTA or a descriptions table)."""
    digest = hashlib.sha256()
    _update(digest, Path(path))
    return "sha256:" + digest.hexdigest()


def require_counts_per_cell(counts: Any, n_genes: int, model: str, fix: str) -> None:
    """Raise `InputError` when a cell has no positive count in the `n_genes` genes `model` can use."""
    empty = np.flatnonzero(np.asarray((counts > 0).sum(axis=1)).ravel() == 0)
    if empty.size:
        raise InputError("input counts", "cells", f"{empty.size} cells have no counts in the {n_genes} genes {model} "
                         f"can use (first: cell #{empty[0]})", fix)


def load_torch_file(path: Path, model: str) -> Any:
    """torch.load on CPU with weights_only; a truncated or foreign file becomes an `InputError`."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a damaged file
        raise InputError(path, f"{model} weights", f"cannot be read ({type(err).__name__}: {err})",
                         "re-copy the released checkpoint file; it is truncated or not a torch state dict") from err


def load_strict(module: torch.nn.Module, state_dict: Mapping[str, Any], path: Path, model: str) -> LoadReport:
    """Load `state_dict` into `module` with strict key and shape matching; report tensors loaded."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    shapes = sorted(k for k in set(expected) & set(state_dict)
                    if tuple(expected[k].shape) != tuple(state_dict[k].shape))
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if shapes:
            parts.append(f"{len(shapes)} with other shapes (e.g. {shapes[0]})")
        raise InputError(path, f"{model} weights", "do not match the model built from the checkpoint's "
                         f"configuration: {'; '.join(parts)}",
                         "use the configuration file released with these weights (same model size and version)")
    module.load_state_dict(state_dict, strict=True)
    return LoadReport(n_tensors=len(state_dict))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) and ask torch for deterministic kernels."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def resolve_device(device: str) -> torch.device:
    """'auto' is the first CUDA device when one is visible, else the CPU."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device", "device", f"'{device}' requested but no CUDA device is visible",
                         "run on a GPU node (process_gpu label, -profile gpu) or pass --device cpu")
    return torch.device(device)


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """bf16/fp16 autocast on CUDA; fp32 (and any CPU run) leaves precision alone."""
    import torch

    if precision == "fp32" or device.type != "cuda":
        yield
        return
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    with torch.autocast(device_type="cuda", dtype=dtype):
        yield


def batches(n: int, batch_size: int, what: str | None = None, unit: str = "cells") -> Iterator[slice]:
    """Consecutive slices of at most `batch_size` over range(n), in order; with `what`, progress is
    logged as the slices are consumed (every 30 s and at the end)."""
    progress = Progress(what, n, unit) if what else None
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))
        if progress:
            progress.update(min(start + batch_size, n))
