# ko-sts-serve: the everyday commands. Every target creates .venv on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 3000
CONFIG ?= training/configs/me5-small-ko.yaml
SPACE ?= training/configs/search/me5-small-ko.yaml
WORKERS ?= 1

.PHONY: install lock serve import-default test test-fast lint train tune tiny-model base-image image image-gpu check-image clean

$(BIN)/.installed: requirements/dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements/dev.txt
	touch $@

install: $(BIN)/.installed ## create .venv with the locked training/dev set (requirements/dev.txt)

lock: install ## re-resolve requirements/{dev,gpu,serving}.txt from the .in files (uv, PyPI)
	UV=$(BIN)/uv scripts/lock-requirements.sh

import-default: install ## put the shipped model (models/default) into the BentoML store if absent
	$(BIN)/python -m models.store models/default

serve: import-default ## serve the newest ko-sts model on http://localhost:$(PORT)
	$(BIN)/bentoml serve --port $(PORT)

test: install ## the whole test suite (what CI runs)
	$(BIN)/python -m pytest

test-fast: install ## skip the slow tests (service processes, full dev evaluation)
	$(BIN)/python -m pytest -m "not slow"

lint: install
	$(BIN)/ruff check .

train: install ## fine-tune, export and store: make train CONFIG=training/configs/me5-small-ko.yaml
	$(BIN)/python -m training.train --config $(CONFIG)

tune: install ## hyperparameter search: make tune CONFIG=... SPACE=... WORKERS=4
	$(BIN)/python -m training.tune --config $(CONFIG) --space $(SPACE) --workers $(WORKERS)

tiny-model: install ## the random smoke-test encoder used by training/configs/tiny.yaml
	$(BIN)/python -m training.tiny_model outputs/tiny-electra

.PHONY: bench
bench: import-default ## compare servers under load: make bench [MODEL=tag|dir] [BACKEND=torch] [DEVICE=cuda] [HOST=addr] [BENCH_CONFIG=load_tests/configs/gpu.yaml] [BENCH_ARGS=...]
	$(BIN)/python -m load_tests.bench --config $(or $(BENCH_CONFIG),load_tests/configs/cpu.yaml) \
		$(if $(MODEL),--model $(MODEL)) $(if $(BACKEND),--backend $(BACKEND)) $(if $(DEVICE),--device $(DEVICE)) \
		$(if $(HOST),--host $(HOST)) $(BENCH_ARGS)

# Containers (README, "Containers"). BASE_IMAGE empty: the bentofile's public python:3.11-slim,
# pinned by digest; without a registry: make base-image, then BASE_IMAGE=$(LOCAL_BASE).
LOCAL_BASE := localhost/ko-sts-base:bookworm-py3.11
BASE_IMAGE ?=

base-image: ## a local Debian bookworm + Python 3.11 base image, no registry needed (root, debootstrap, podman)
	container/build-base.sh $(LOCAL_BASE)

image: install ## CPU/ONNX image ko-sts:cpu (podman or buildah: BENTOML_CONTAINERIZE_BACKEND)
	BASE_IMAGE="$(BASE_IMAGE)" scripts/build-image.sh cpu

image-gpu: install ## CUDA/PyTorch image ko-sts:gpu
	BASE_IMAGE="$(BASE_IMAGE)" scripts/build-image.sh gpu

check-image: install ## run ko-sts:cpu and check it end to end (readiness, dev Pearson, non-root, SIGTERM)
	scripts/check-image.sh ko-sts:cpu

clean: ## remove training outputs (not the venv, not the model store)
	rm -rf outputs
