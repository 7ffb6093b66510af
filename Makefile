# pertprobe: set-up, pipeline run, tests and benchmarks from a clean clone.
#   make run    venv + Nextflow (if none on PATH) + the pipeline on the bundled test data
#   make test   venv + Nextflow + the whole test suite (CI)
#   make test-fast  the quick tier: unit tests not marked slow
#   make bench  benchmarks in tests/benchmarks/
#   make registry  regenerate assets/registry.json, docs/registry.md and the schema's choices
SHELL      := /bin/bash
PYTHON     ?= python3
VENV       ?= .venv
NXF_DIST   ?= .nextflow-dist
OUTDIR     ?= results
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.installed
NEXTFLOW   := $(CURDIR)/$(NXF_DIST)/bin/nextflow
PYTEST_ARGS ?=

export NXF_OFFLINE ?= true
export PERTPROBE_NEXTFLOW := $(NEXTFLOW)

.PHONY: venv lock nextflow run test test-fast bench test-data test-models registry clean

# Every package the venv installs is pinned in requirements/lock.txt (generated from pyproject.toml's
# ranges by `make lock`), so a fresh clone installs the same versions today and in six months.
# torch (with its ~3 GB of CUDA wheels) is installed on its own first, so that its downloaded wheels
# are deleted before the rest is fetched: ~8 GB of free disk at the peak instead of ~11.
LOCK       := requirements/lock.txt
PIP        := $(PY) -m pip install --quiet --no-cache-dir
UV_VERSION := 0.13.9

$(STAMP): $(LOCK) pyproject.toml containers/cellplm-requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) -c $(LOCK) pip
	$(PIP) -c $(LOCK) torch
	$(PIP) -r $(LOCK)
	$(PIP) --no-deps --no-build-isolation -e .
	$(PIP) --no-deps -r containers/cellplm-requirements.txt
	touch $(STAMP)

venv: $(STAMP)

$(NEXTFLOW): scripts/install_nextflow.sh
	bash scripts/install_nextflow.sh $(NXF_DIST)

nextflow: $(NEXTFLOW)

run: venv nextflow
	$(NEXTFLOW) run . -profile test --outdir $(OUTDIR) -ansi-log false

test: venv nextflow
	$(PY) -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

# The quick tier: unit tests without the slow-marked ones and without pipeline runs.
test-fast: venv
	$(PY) -m pytest -n 2 -m "not slow and not pipeline" $(PYTEST_ARGS)

bench: venv
	$(PIP) -r requirements/bench-lock.txt
	$(PY) tests/benchmarks/run.py

# Regenerate the bundled test dataset (deterministic; tests check it matches).
test-data: venv
	$(PY) bin/simulate.py --seed 0 --out assets/test_data/sim_crispri.h5ad --truth assets/test_data/sim_crispri.truth.h5ad --relationships assets/test_data/known_relationships.tsv

# Regenerate the tiny foundation-model checkpoints of the test profile (deterministic).
test-models: venv
	$(PY) scripts/make_test_models.py

# Regenerate what is generated from the registered implementations (a test checks it is current).
registry: venv
	$(PY) bin/registry.py

# Regenerate the lock from pyproject.toml's ranges and requirements/tools.in (all platforms,
# Python 3.11), with a pinned uv in a throw-away tool venv; the bench lock adds the bench extra on top.
lock:
	$(PYTHON) -m venv .uv-venv && .uv-venv/bin/python -m pip install --quiet "uv==$(UV_VERSION)"
	.uv-venv/bin/uv pip compile pyproject.toml requirements/tools.in --extra test --extra models \
	    --python-version 3.11 --universal --no-header --annotation-style line -o $(LOCK)
	.uv-venv/bin/uv pip compile pyproject.toml requirements/tools.in --extra test --extra models --extra bench \
	    -c $(LOCK) --python-version 3.11 --universal --no-header --annotation-style line -o requirements/bench-lock.txt
	rm -rf .uv-venv

clean:
	rm -rf work .nextflow .nextflow.log* $(OUTDIR)
