# Think2Seg: the targets README.md shows. Every install step lives here or in scripts/.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BPY := $(VENV)/bin/python
TINY := .cache/tiny-models

.PHONY: backend test test-fast test-backend bench tiny-models gpu-wheels gpu-check clean

## The backend venv: torch + torchvision pinned as a pair (docs/environment.md), sam2 built
## without its CUDA extension (it must see the venv's torch, hence --no-build-isolation).
$(VENV)/.installed: backend/pyproject.toml
	$(PY) -m venv $(VENV)
	$(BPY) -m pip install -q --upgrade pip
	$(BPY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BPY) -m pip install -q -e 'backend[dev]'
	SAM2_BUILD_CUDA=0 $(BPY) -m pip install -q --no-build-isolation sam2==1.1.0
	touch $@

## The backend venv (.venv): torch, transformers, sam2 and this package, editable.
backend: $(VENV)/.installed

## Tiny randomly initialised models of the real classes, saved in the real formats (tests and bench load them).
$(TINY)/.built: $(VENV)/.installed backend/think2seg/testing/tiny_models.py
	$(BPY) -m think2seg.testing.tiny_models $(TINY)
	touch $@

## Builds the tiny real-class models the tests and the bench load (.cache/tiny-models).
tiny-models: $(TINY)/.built

## The backend suite alone (PYTEST_ARGS=... passes options to pytest).
test-backend: tiny-models
	$(BPY) -m pytest tests/backend -q $(PYTEST_ARGS)

## Everything CI runs: the backend suite, the publish check, then the plugin under a real QGIS against a real service:
## the distribution's QGIS (3.22) and the 3.44 LTR (a Debian sid chroot, mk/qgis.mk).
test: qgis-chroot-prefetch test-backend check-publish test-plugin test-plugin-3.44

## The inner loop: skips the slow model checks (CI runs them).
test-fast: tiny-models
	$(BPY) -m pytest tests/backend -q -m "not slow"

## CPU benchmark tables with the tiny models (per stage, the non-model path, big rasters).
bench: tiny-models
	$(BPY) -m think2seg.testing.bench --tiny $(TINY)

## The GPU check (README, Speed): `make gpu-wheels` here once, then `make gpu-check` on the GPU machine with
## .cache/gpu-wheels carried (GPU_CHECK_ARGS="--json out.json"; "--tiny" runs it on the CPU with tiny shapes).
## Here, once: the wheels the GPU machine lacks, in .cache/gpu-wheels (carried to it).
gpu-wheels:
	bash scripts/gpu_wheels.sh

## The GPU check on a GPU machine (README, Speed).
gpu-check:
	bash scripts/gpu_check.sh $(GPU_CHECK_ARGS)

-include mk/*.mk

## Removes the venvs and everything built (.venv, .venv-qgis, .cache, build, dist).
clean:
	rm -rf $(VENV) .venv-qgis .cache build dist
