"""Fixtures for tests and the bundled test data: tiny checkpoints of every foundation model in its
released layout. Not imported by any pipeline step."""

from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np


def writer(model: str) -> ModuleType:
    """The module with `write_tiny_checkpoint` of foundation model `model` (pertprobe.testing.<model>)."""
    return importlib.import_module(f"{__package__}.{model}")


def tiny_subset(n: int, coverage: float, rng: np.random.Generator) -> list[int]:
    """round(coverage * n) of range(n), drawn by `rng`, in order (partial coverage of tiny test inputs)."""
    return sorted(int(i) for i in rng.choice(n, size=int(round(coverage * n)), replace=False))

