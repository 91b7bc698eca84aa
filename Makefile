SHELL := /bin/bash
# Every target installs what it needs into .venv first (one stamp per pyproject change).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: install run test lint compile serve bench clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -m pip install --quiet -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" ; test $${PIPESTATUS[0]} -eq 0
	@touch $(STAMP)

install: $(STAMP)

## run: the training pipeline on the KFP local runner, on the default (synthetic) data
run: $(STAMP)
	$(PY) -m pipelines.cli run $(ARGS)

## test: unit and integration tests (the pipeline through the KFP local runner), then ruff
test: $(STAMP)
	$(PY) -m ruff check components pipelines tests
	$(PY) -m pytest $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check components pipelines tests

## compile: write the pipeline YAML(s) to build/ and validate them against KFP's proto
compile: $(STAMP)
	$(PY) -m pipelines.cli compile $(ARGS)

## serve: the local endpoint, serving the registry's champion
serve: $(STAMP)
	$(PY) -m pipelines.cli serve $(ARGS)

## bench: speed figures (per-stage pipeline times, scoring throughput ratios)
bench: $(STAMP)
	$(PY) -m pipelines.cli bench $(ARGS)

clean:
	rm -rf build .propensity
