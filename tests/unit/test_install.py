"""The locked install: one lock pins every package the venv, the containers and the benchmarks install."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version

import pytest
import tomllib
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ..conftest import ROOT

LOCK = ROOT / "requirements" / "lock.txt"
BENCH_LOCK = ROOT / "requirements" / "bench-lock.txt"
CONTAINERS = ROOT / "containers"


def pins(path) -> dict[str, tuple[str, Marker | None]]:
    """name -> (exact version, environment marker) of a uv/pip-compile lock file."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==", f"{path.name}: {line!r} is not an exact pin"
        out[canonicalize_name(req.name)] = (spec.version, req.marker)
    return out


def names(path) -> list[str]:
    """Package names listed in a requirements file (comments and blank lines skipped)."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [canonicalize_name(Requirement(line).name) for line in lines if line]


@pytest.fixture(scope="module")
def lock():
    return pins(LOCK)


@pytest.fixture(scope="module")
def project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_lock_pins_every_declared_dependency_within_its_range(lock, project):
    declared = project["dependencies"] + project["optional-dependencies"]["test"] + project["optional-dependencies"]["models"]
    for line in declared:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in lock, f"{name} ({line}) is not in {LOCK.name}: run `make lock`"
        assert req.specifier.contains(lock[name][0], prereleases=True), \
            f"{LOCK.name} pins {name}=={lock[name][0]}, outside pyproject.toml's {req.specifier}: run `make lock`"
    for name in names(ROOT / "requirements" / "tools.in"):
        assert name in lock, f"{name} (requirements/tools.in) is not in {LOCK.name}: run `make lock`"


def test_bench_lock_adds_to_the_lock_without_changing_it(lock):
    bench = pins(BENCH_LOCK)
    changed = {n: (v, bench[n][0]) for n, (v, _) in lock.items() if n in bench and bench[n][0] != v}
    assert not changed, f"bench-lock.txt moves pinned versions: {changed}: run `make lock`"
    assert "cell-eval" in bench


def test_installed_versions_are_the_locked_ones(lock):
    """`make venv` installed exactly the lock (the environment this test suite runs in)."""
    wrong = {}
    for name, (pinned, marker) in lock.items():
        if marker is not None and not marker.evaluate():
            continue
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = "missing"
        if installed != pinned:
            wrong[name] = (pinned, installed)
    assert not wrong, f"installed versions differ from {LOCK.name} (locked, installed): {wrong}; run `make venv`"


def test_container_requirements_take_their_versions_from_the_lock(lock, project):
    base = names(CONTAINERS / "base" / "requirements.txt")
    assert sorted(base) == sorted(canonicalize_name(Requirement(d).name) for d in project["dependencies"]), \
        "containers/base/requirements.txt must list pyproject.toml's dependencies"
    for path in [CONTAINERS / "base" / "requirements.txt", *CONTAINERS.glob("*-requirements.txt")]:
        if path.name == "cellplm-requirements.txt":  # the one --no-deps package, pinned there
            assert all("==" in line for line in path.read_text().splitlines() if line and not line.startswith("#"))
            continue
        unpinned = [n for n in names(path) if n not in lock]
        assert not unpinned, f"{path.relative_to(ROOT)}: {unpinned} not pinned in {LOCK.name}"
        assert "==" not in path.read_text(), f"{path.relative_to(ROOT)}: versions belong in {LOCK.name}"
    for dockerfile in CONTAINERS.glob("*/Dockerfile"):
        text = dockerfile.read_text()
        installs = re.findall(r"pip install [^\n]*-r /tmp/req/requirements\.txt", text)
        assert installs and all("-c /tmp/req/lock.txt" in cmd for cmd in installs), \
            f"{dockerfile.relative_to(ROOT)}: install with -c /tmp/req/lock.txt"
        assert "COPY requirements/lock.txt" in text
