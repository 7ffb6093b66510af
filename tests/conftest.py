"""Shared fixtures: small simulated datasets written as input files."""

from __future__ import annotations

from pathlib import Path

import pytest
from pertprobe.data.dataset import DatasetSpec
from pertprobe.data.simulate import SimulationConfig, simulate

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / "bin"
TEST_DATA = ROOT / "assets" / "test_data"

SMALL = dict(n_genes=200, n_programs=6, program_size=15, n_single=16, n_double=4, n_nonexpressed=2,
             cells_per_perturbation=40, n_control=200, n_batches=2)


def small_config(**overrides) -> SimulationConfig:
    """A quick simulator configuration (~1,100 cells x 200 genes, 22 perturbations)."""
    return SimulationConfig(**{**SMALL, **overrides})


@pytest.fixture(scope="session")
def small_sim():
    return simulate(small_config(seed=3))


@pytest.fixture
def small_h5ad(tmp_path: Path, small_sim) -> Path:
    path = tmp_path / "small.h5ad"
    small_sim.to_anndata().write_h5ad(path)
    return path


@pytest.fixture
def spec() -> DatasetSpec:
    return DatasetSpec(batch_col="batch")
