"""The registry is the one list of names: generated files are current, every entry is complete, and
the library's layers import downwards only."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pertprobe import registry
from pertprobe.registry_docs import SCHEMA_PARAMS

from ..conftest import BIN, ROOT

PACKAGE = BIN / "pertprobe"


def test_generated_files_match_the_registered_implementations():
    result = subprocess.run([sys.executable, str(BIN / "registry.py"), "--check"], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr


def test_check_names_a_stale_file(tmp_path):
    stale = tmp_path / "registry.json"
    stale.write_text("{}\n")
    result = subprocess.run([sys.executable, str(BIN / "registry.py"), "--check", "--json", str(stale),
                             "--docs", str(ROOT / "docs" / "registry.md")], capture_output=True, text=True, check=False)
    assert result.returncode == 1 and str(stale) in result.stderr and "make registry" in result.stderr


def test_every_entry_cites_a_source_and_an_existing_page():
    for entry in registry.entries():
        assert entry.description and entry.source, entry
        assert (ROOT / entry.docs.split("#")[0]).is_file(), entry


def test_profiles_are_nested_and_the_small_ones_are_usable():
    for kind in registry.KINDS:
        minimal, paper, full = (set(registry.select(kind, p)) for p in registry.PROFILES)
        # full = everything except the entries chosen by name only (they need a user-supplied checkpoint)
        by_name = {e.name for e in registry.entries(kind) if not e.profiles}
        assert minimal <= paper <= full == set(registry.names(kind)) - by_name, kind
        assert all(e.model for e in registry.entries(kind) if not e.profiles), kind
    for kind in ("predictor", "metric", "alignment", "cell_task", "cell_embedder", "gene_embedding"):
        assert registry.select(kind, "minimal"), kind
    assert set(registry.select("predictor", "minimal")) & set(registry.names("predictor", floor=True))


def test_select_expands_profiles_and_refuses_unknown_names():
    assert registry.select("predictor", "mean,minimal,mean")[0] == "mean"
    chosen = registry.select("predictor", "mean,minimal,mean")
    assert len(set(chosen)) == len(chosen) and set(chosen) == {"mean"} | set(registry.select("predictor", "minimal"))
    with pytest.raises(ValueError, match="unknown predictor 'meen'; available: no_change"):
        registry.select("predictor", "meen")
    with pytest.raises(ValueError, match="profiles"):
        registry.register("metric", "x", docs="d", source="s", description="d", profiles=("minimal", "full"))


def test_foundation_models_have_parameter_container_writer_and_test_checkpoint():
    config = (ROOT / "nextflow.config").read_text()
    schema = json.loads((ROOT / "nextflow_schema.json").read_text())
    params = {name for group in schema["$defs"].values() for name in group.get("properties", {})}
    from pertprobe.testing import writer

    for entry in (e for e in registry.entries() if e.checkpoint):
        assert f"{entry.name}_model" in params and re.search(rf"^\s+{entry.name}_model\s+=", config, re.M), entry.name
        assert (ROOT / "containers" / entry.container / "Dockerfile").is_file(), entry.name
        assert hasattr(writer(entry.name), "write_tiny_checkpoint"), entry.name
        assert (ROOT / "assets" / "test_data" / "models" / entry.name).is_dir(), entry.name
        if entry.side_input:
            assert entry.side_input in params and entry.side_option, entry.name
    images = {p.parent.name for p in (ROOT / "containers").glob("*/Dockerfile")}
    assert images == {"base"} | {e.container for e in registry.entries()}


def _defaults() -> dict[str, str]:
    text = (ROOT / "nextflow.config").read_text()
    return {m.group(1): m.group(2) for m in re.finditer(r"^\s+(\w+)\s+=\s+'([^']*)'", text, re.M)}


def test_registry_backed_defaults_are_registered_names():
    defaults = _defaults()
    for param, (kind, where) in SCHEMA_PARAMS.items():
        allowed = set(registry.names(kind, **where))
        for item in filter(None, defaults[param].split(",")):
            assert item in allowed or item in registry.PROFILES, (param, item)


def test_no_pipeline_file_lists_predictor_metric_alignment_or_task_names():
    """Names are routed by the registry's fields, never written into Nextflow code."""
    names = {n for kind in ("predictor", "metric", "alignment", "cell_task") for n in registry.names(kind)}
    names -= {"none"}  # the alignment 'none' shares its name with the pipeline's "no gene embedding" label
    files = [*ROOT.glob("*.nf"), *ROOT.glob("workflows/*.nf"), *ROOT.glob("subworkflows/local/*/main.nf"),
             *ROOT.glob("modules/local/*/main.nf"), ROOT / "conf" / "modules.config", ROOT / "conf" / "base.config"]
    for path in files:
        literals = set(re.findall(r"""['"]([a-z_]+)['"]""", path.read_text()))
        assert not literals & names, (path, literals & names)


def _imports(path: Path) -> set[str]:
    """Absolute names of the pertprobe modules `path` imports (at any depth, TYPE_CHECKING included)."""
    module = ".".join(path.relative_to(BIN).with_suffix("").parts).removesuffix(".__init__")
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("pertprobe"):
                out.add(target)
                out.update(f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("pertprobe"))
    modules = {".".join(p.relative_to(BIN).with_suffix("").parts).removesuffix(".__init__") for p in PACKAGE.rglob("*.py")}
    return (out & modules) - {module}


# Layer of each part of the library: a module may import its own sub-package or a lower layer only.
# Core = the top-level modules (registry, errors, io); cli is the commands' plumbing, above everything.
LAYERS = {"core": 0, "data": 1, "response": 2, "cells": 2, "models": 2, "report": 3, "testing": 3, "cli": 4}


def _part(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and (PACKAGE / parts[1]).is_dir():
        return parts[1]
    return "cli" if parts[1:] == ["cli"] else "core"


def test_layers_import_downwards_and_there_are_no_cycles():
    graph = {".".join(p.relative_to(BIN).with_suffix("").parts).removesuffix(".__init__"): _imports(p)
             for p in PACKAGE.rglob("*.py")}
    assert {"pertprobe.registry", "pertprobe.response.training"} <= graph["pertprobe.response.predictors"]
    for module, targets in graph.items():
        for target in targets:
            a, b = _part(module), _part(target)
            assert a == b or LAYERS[b] < LAYERS[a], f"{module} imports {target}"
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            assert state.get(nxt) != 1, f"import cycle: {' -> '.join(path + [node, nxt])}"
            if nxt not in state:
                visit(nxt, path + [node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])


def test_every_entry_is_defined_on_its_page():
    """The page an entry points to names it (`name`), so a new entry cannot land without its definition."""
    for entry in registry.entries():
        page = (ROOT / entry.docs.split("#")[0]).read_text()
        named = (f"`{entry.name}`", f"**{entry.name}**", f"bin/pertprobe/models/{entry.name}.py")
        assert any(n in page for n in named), (entry.kind, entry.name, entry.docs)


def test_bundled_checkpoints_hold_every_file_the_registry_requires():
    """The pipeline refuses a checkpoint directory that lacks one of these globs before any task, so
    each must match the released layout the adapters read (the bundled tiny checkpoints)."""
    for entry in (e for e in registry.entries() if e.checkpoint):
        directory = ROOT / "assets" / "test_data" / "models" / entry.name
        assert entry.checkpoint_files, entry.name
        for pattern in entry.checkpoint_files:
            assert any(list(directory.glob(alt)) for alt in pattern.split("|")), (entry.name, pattern)
