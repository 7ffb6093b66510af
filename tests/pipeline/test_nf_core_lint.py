"""nf-core tools (PyPI `nf-core`, offline) lint the pipeline and its local modules without failures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import ROOT
from .test_pipeline import NEXTFLOW

pytestmark = pytest.mark.pipeline

STAND_IN = Path(__file__).parent / "nf_core_stand_in"
NF_CORE = Path(sys.executable).with_name("nf-core")


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=pertprobe", "-c", "user.email=ci@pertprobe", *args], cwd=cwd, check=True,
                   capture_output=True)


@pytest.fixture(scope="module")
def lint_env(tmp_path_factory):
    """A copy of the repository (lint may rewrite modules.json) and the environment nf-core tools need
    offline: the stand-in modules clone in XDG_CONFIG_HOME, and Nextflow on PATH."""
    root = tmp_path_factory.mktemp("nf_core")
    origin = root / "origin"
    shutil.copytree(STAND_IN, origin, ignore=shutil.ignore_patterns("README.md"))
    (origin / "modules" / "nf-core").mkdir()
    (origin / "subworkflows" / "nf-core").mkdir()
    (origin / ".nf-core.yml").write_text("repository_type: modules\norg_path: nf-core\n")
    git(origin, "init", "-q", "-b", "master")
    git(origin, "add", "-A")
    git(origin, "commit", "-qm", "stand-in")
    clone = root / "config" / "nfcore" / "nf-core" / "modules"
    clone.parent.mkdir(parents=True)
    git(root, "clone", "-q", str(origin), str(clone))

    pipeline = root / "pertprobe"
    tracked = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split("\n")
    for name in filter(None, tracked):
        if (ROOT / name).is_file():
            (pipeline / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, pipeline / name)
    git(pipeline, "init", "-q", "-b", "main")
    git(pipeline, "add", "-A")
    git(pipeline, "commit", "-qm", "copy")
    env = {**os.environ, "XDG_CONFIG_HOME": str(root / "config"), "XDG_CACHE_HOME": str(root / "cache"),
           "HIDE_PROGRESS": "1", "NXF_OFFLINE": "true", "PATH": f"{Path(NEXTFLOW).parent}:{os.environ['PATH']}"}
    return pipeline, env


def nf_core(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(NF_CORE), *args], capture_output=True, text=True, env=env, timeout=1200)


def test_nf_core_pipelines_lint_passes(lint_env, tmp_path):
    pipeline, env = lint_env
    report = tmp_path / "lint.json"
    result = nf_core(env, "pipelines", "lint", "--dir", str(pipeline), "--json", str(report))
    assert report.exists(), result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads(report.read_text())
    failed = results["tests_failed"]
    assert not failed, f"nf-core pipelines lint failures: {failed}"
    assert results["num_tests_pass"] > 100
    assert result.returncode == 0, result.stdout[-3000:]


def test_nf_core_modules_lint_has_no_failures(lint_env):
    """Local modules: no failure, and meta.yml valid and in step with main.nf (for local modules nf-core
    tools report these as warnings; the container, conda and version-topic warnings are expected)."""
    import re

    pipeline, env = lint_env
    result = nf_core({**env, "COLUMNS": "250"}, "modules", "lint", "--local", "--all", "--dir", str(pipeline))
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-2000:]
    assert re.search(r"\[✗\]\s+0 Tests Failed", out), out[-3000:]
    passed = int(re.search(r"\[✔\]\s+(\d+) Tests Passed", out).group(1))
    assert passed > 12 * 20
    meta_warnings = [line for line in out.splitlines()
                     if re.search(r"(meta_yml_valid|correct_meta_inputs|correct_meta_outputs|meta_name):", line)]
    assert not meta_warnings, "\n".join(meta_warnings)
