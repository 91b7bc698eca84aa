SHELL := /bin/bash
# Every target installs what it needs into .venv first (one stamp per pyproject change).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: install run test lint compile serve predict bench bench-quality profile-serve clean

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
	$(PY) -m ruff check components pipelines tests containers
	$(PY) -m pytest $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check components pipelines tests containers

## compile: write the pipeline YAML(s) to build/ and validate them against KFP's proto
compile: $(STAMP)
	$(PY) -m pipelines.cli compile $(ARGS)

## serve: the local endpoint, serving the registry's champion
serve: $(STAMP)
	$(PY) -m pipelines.cli serve $(ARGS)

## predict: score a batch with the champion, business value, drift, retrain on drift (ARGS="--batch FILE")
predict: $(STAMP)
	$(PY) -m pipelines.cli predict $(ARGS)

## bench: speed figures (per-stage pipeline times, scoring throughput ratios)
bench: $(STAMP)
	$(PY) -m pipelines.cli bench $(ARGS)

## profile-serve: py-spy samples the endpoint under load: folded stacks in build/ and the top frames
## (ARGS="--instances 100", "--explain", "--registry DIR")
profile-serve: $(STAMP)
	$(PY) -m pipelines.bench.profile $(ARGS)

## bench-quality: the champion vs default HGB / logreg / XGBoost on 5 real tables x 3 seeds (issue #8)
bench-quality: $(STAMP)
	$(PY) -m pipelines.bench.quality $(ARGS)

clean:
	rm -rf build .propensity

## ---- infrastructure (issue #5): container images, pins, a local KFP cluster on kind ----------------
# Docker, kind and kubectl are needed by these targets only (not by run/test). infra/kind/README.md
# and infra/terraform/README.md document each path.
PIPELINE_IMAGE ?= propensity-pipeline:local
SERVING_IMAGE ?= propensity-serving:local
BUILD_PINS := setuptools==84.2.1 wheel==0.48.0

.PHONY: images test-containers bench-containers constraints kind-up kind-run kind-down

## images: docker build of both images, on the official Python base or, where no registry is
## reachable, a stand-in made from Debian packages (BASE_IMAGE=... forces one; DOCKER_PLATFORM=... too)
images:
	PIPELINE_IMAGE=$(PIPELINE_IMAGE) SERVING_IMAGE=$(SERVING_IMAGE) bash containers/build.sh

## test-containers: build both images, run both pipelines (--runner docker) and the serving container
## (needs a Docker engine; .ci/run starts one when none answers)
test-containers: $(STAMP)
	$(PY) -m pytest -m containers tests/containers --timeout 3600 $(ARGS)

## bench-containers: image sizes, build times, the default run in containers vs the venv, serving start
## (ARGS="--cold" adds a build without any cache)
bench-containers: $(STAMP)
	$(PY) -m pipelines.bench.containers $(ARGS)

## constraints: re-pin containers/constraints.txt (both images install with it) from the current .venv
constraints: $(STAMP)
	{ echo "# Exact pins for both container images (pip install -c). Regenerate with: make constraints"; \
	  echo "# (pip freeze --exclude-editable of the dev .venv, Python 3.11.7, linux x86_64, plus build tools)."; \
	  $(VENV)/bin/pip freeze --exclude-editable | grep -viE '^(setuptools|wheel|pip)=='; \
	  $(PY) containers/requirements.py substitute-pins; \
	  printf '%s\n' $(BUILD_PINS); } > containers/constraints.txt
	$(PY) containers/requirements.py write

## kind-up: kind cluster + Kubeflow Pipelines standalone (pinned), port-forwarded to localhost:8080
kind-up:
	bash infra/kind/up.sh

## kind-run: build and load the pipeline image, compile, submit the training pipeline to kind's KFP
kind-run: $(STAMP)
	PY=$(PY) PIPELINE_IMAGE=$(PIPELINE_IMAGE) bash infra/kind/run.sh $(ARGS)

## kind-down: stop the port-forward and delete the kind cluster (keeps .propensity/kind/shared)
kind-down:
	bash infra/kind/down.sh
