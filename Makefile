# pertprobe: set-up, pipeline run, tests and benchmarks from a clean clone.
#   make run    venv + Nextflow (if none on PATH) + the pipeline on the bundled test data
#   make test   venv + Nextflow + the whole test suite
#   make bench  benchmarks in tests/benchmarks/
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

.PHONY: venv nextflow run test bench test-data test-models clean

# torch (with its ~3 GB of CUDA wheels) is installed on its own first, so that its downloaded wheels
# are deleted before the rest is fetched: ~8 GB of free disk at the peak instead of ~11.
TORCH_REQ  := $(shell grep -o '"torch[<>=,.0-9]*"' pyproject.toml)
PIP        := $(PY) -m pip install --quiet --no-cache-dir

$(STAMP): pyproject.toml containers/cellplm-requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) $(TORCH_REQ)
	$(PIP) -e ".[test,models]"
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

bench: venv
	$(PIP) -e ".[bench]"
	$(PY) tests/benchmarks/run.py

# Regenerate the bundled test dataset (deterministic; tests check it matches).
test-data: venv
	$(PY) bin/simulate.py --seed 0 --out assets/test_data/sim_crispri.h5ad --truth assets/test_data/sim_crispri.truth.h5ad --relationships assets/test_data/known_relationships.tsv

# Regenerate the tiny foundation-model checkpoints of the test profile (deterministic).
test-models: venv
	$(PY) scripts/make_test_models.py

clean:
	rm -rf work .nextflow .nextflow.log* $(OUTDIR)
