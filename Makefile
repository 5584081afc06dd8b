# ko-sts-serve: the everyday commands. Every target creates .venv on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 3000
CONFIG ?= training/configs/koelectra-base-v3.yaml
SPACE ?= training/configs/search/default.yaml
WORKERS ?= 1
# The small model (docs/training.md): its one-run recipe, the trimmed hub base it starts from, the 4-bit
# me5-small-ko the shipped default was made from, and the hard negatives they train on. The shipped default
# is a student: five teachers (TEACHER_CONFIG, seeds 1-5) label its pairs (SOFT_LABELS), then STUDENT_CONFIG.
SMALL_CONFIG := training/configs/me5-small-ko.yaml
TEACHER_CONFIG := training/configs/me5-small-ko-mp.yaml
STUDENT_CONFIG := training/configs/me5-small-ko-mp-student.yaml
SOFT_LABELS := outputs/distill/mp-soft.jsonl
ME5_NAME := intfloat/multilingual-e5-small (Korean vocabulary trim, me5-small-ko)
SMALL_HUB_MODEL := intfloat/multilingual-e5-small
SMALL_BASE := outputs/bases/me5-small-ko
ME5_SMALL_KO ?= ../shared/models/me5-small-ko
HARD_NEGATIVES := outputs/hard-negatives/klue_sts_train.jsonl

.PHONY: install lock serve import-default test test-fast lint train train-small reproduce-default me5-small-ko-base hard-negatives tune tiny-model base-image image image-gpu check-image clean

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

train: install ## fine-tune KoELECTRA-base-v3 (hub), export and store; another recipe: make train CONFIG=... [TRAIN_ARGS=...]
	$(BIN)/python -m training.train --config $(CONFIG) $(TRAIN_ARGS)

train-small: install $(SMALL_BASE)/config.json $(HARD_NEGATIVES) ## the small one-run recipe (no teachers) from the hub's multilingual-e5-small, vocabulary trimmed
	$(BIN)/python -m training.train --config $(SMALL_CONFIG) $(TRAIN_ARGS)

reproduce-default: install me5-small-ko-base $(HARD_NEGATIVES) ## the shipped default again from the 4-bit me5-small-ko: five teachers, their soft labels, the student [ME5_SMALL_KO=dir]
	for seed in 1 2 3 4 5; do \
		$(BIN)/python -m training.train --config $(TEACHER_CONFIG) --model_name_or_path $(ME5_SMALL_KO) \
			--base_model_name "$(ME5_NAME)" --seed $$seed --data_seed $$seed \
			--output_dir outputs/me5-small-ko-teacher-s$$seed $(TRAIN_ARGS) || exit 1; \
	done
	$(BIN)/python -m training.distill --teachers outputs/me5-small-ko-teacher-s[1-5] --recipe $(TEACHER_CONFIG) \
		--repair 5000 --weight 0.5 --output $(SOFT_LABELS)
	$(BIN)/python -m training.train --config $(STUDENT_CONFIG) --model_name_or_path $(ME5_SMALL_KO) \
		--base_model_name "$(ME5_NAME)" --output_dir outputs/me5-small-ko-default \
		--export_onnx true --save_to_store true $(TRAIN_ARGS)

me5-small-ko-base: install # is ME5_SMALL_KO there? (before the hard negatives are made)
	$(BIN)/python -m training.base_model $(ME5_SMALL_KO)

hard-negatives: $(HARD_NEGATIVES) ## the small recipe's 5,003 hard negatives (the shipped default's, byte for byte)

$(HARD_NEGATIVES): data/klue-sts/klue_sts_train.jsonl $(wildcard training/augment/*.py training/augment/wordlists/*.yaml) | install
	$(BIN)/python -m training.augment $< $@ --per-kind 1000 --seed 13

$(SMALL_BASE)/config.json: | install
	$(BIN)/python -m training.vocab_trim $(SMALL_HUB_MODEL) $(SMALL_BASE)

tune: install ## hyperparameter search: make tune CONFIG=... SPACE=... WORKERS=4
	$(BIN)/python -m training.tune --config $(CONFIG) --space $(SPACE) --workers $(WORKERS)

tiny-model: install ## the random smoke-test encoder used by training/configs/tiny.yaml
	$(BIN)/python -m training.tiny_model outputs/tiny-electra

.PHONY: score
score: install ## score a file of pairs: make score INPUT=pairs.csv OUTPUT=scored.parquet [MODEL=tag|dir] [SCORE_ARGS=...]
	@test -n "$(INPUT)" -a -n "$(OUTPUT)" || { echo "usage: make score INPUT=pairs.csv OUTPUT=scored.csv [MODEL=...] [SCORE_ARGS=...]"; exit 2; }
	$(BIN)/python -m serving.files score $(INPUT) $(OUTPUT) $(if $(MODEL),--model $(MODEL)) $(SCORE_ARGS)

.PHONY: bench
bench: import-default ## compare servers under load: make bench [MODEL=tag|dir] [BACKEND=torch] [DEVICE=cuda] [HOST=addr] [BENCH_CONFIG=load_tests/configs/gpu.yaml] [BENCH_ARGS=...]
	$(BIN)/python -m load_tests.bench --config $(or $(BENCH_CONFIG),load_tests/configs/cpu.yaml) \
		$(if $(MODEL),--model $(MODEL)) $(if $(BACKEND),--backend $(BACKEND)) $(if $(DEVICE),--device $(DEVICE)) \
		$(if $(HOST),--host $(HOST)) $(BENCH_ARGS)

# Containers (docs/containers.md). BASE_IMAGE empty: the bentofile's public python:3.11-slim,
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
