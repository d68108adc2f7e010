# The two commands: `make run` (one full turn of the flywheel) and `make test` (the test suite).
# Both set everything up on a machine with only python3 and git, and are fast when nothing changed.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
DEFAULT_MODEL := data/models/gguf/SmolLM2-135M-Instruct.Q4_1.gguf
# One Dagster instance for every run: dagster.yaml here keeps its storage under data/dagster/.
export DAGSTER_HOME := $(CURDIR)
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export HF_HUB_DISABLE_PROGRESS_BARS := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: run test setup model chromium ui mlflow lint bench clean

run: setup model
	$(BIN)/flywheel turn
	@echo
	@$(BIN)/flywheel where

test: setup model chromium
	$(BIN)/ruff check .
	$(BIN)/pytest

setup: $(INSTALLED)

# A current pip resolves this dependency set in about half the time of the one venv bundles.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# CPU torch first: a plain `torch` requirement would pull a multi-GB CUDA build.
$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

model: $(DEFAULT_MODEL)

$(DEFAULT_MODEL): | $(INSTALLED)
	$(BIN)/flywheel model fetch

# The UI test drives Debian's chromium through Playwright; never `playwright install` (it downloads a browser).
# Installed only when missing; the package lists are refreshed only if the first attempt fails.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the UI test (apt-get install chromium)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq chromium >/dev/null 2>&1 \
	    || { apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null; }; \
	} || { echo "error: chromium is missing and 'apt-get install -y chromium' failed; install it (as root) and re-run" >&2; exit 1; }
	@command -v chromium >/dev/null 2>&1 || { echo "error: chromium is still not on PATH after installing it" >&2; exit 1; }

ui: setup
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

mlflow: setup
	$(BIN)/mlflow ui --backend-store-uri "$$($(BIN)/flywheel mlflow-uri)" -h 127.0.0.1 -p 5000

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: setup model
	$(BIN)/python bench/sandbox_throughput.py
	$(BIN)/python bench/crawl_stdlib.py
	$(BIN)/python bench/incremental_crawl.py
	$(BIN)/python bench/dedup_stdlib.py
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/feedback_ingestion.py
	$(BIN)/python bench/flywheel_latency.py  # about 15 minutes: a first turn, then the timed one

clean:
	rm -rf data/assets data/adapters data/datasets data/dagster data/mlflow data/sources data/feedback.db data/catalog.db
