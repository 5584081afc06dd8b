# ko-sts-serve: the everyday commands. Every target creates .venv on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 3000
CONFIG ?= training/configs/me5-small-ko.yaml
SPACE ?= training/configs/search/me5-small-ko.yaml
WORKERS ?= 1

.PHONY: install serve import-default test test-fast lint train tune tiny-model clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $@

install: $(BIN)/.installed ## create .venv with the pinned dependencies

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

clean: ## remove training outputs (not the venv, not the model store)
	rm -rf outputs
