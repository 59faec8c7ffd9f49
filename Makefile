# `make demo` sets up the virtual environment and runs the main job; `make test` runs the checks.
# `make local` adds the local engine (llama-cpp-python, see docs/models.md); `make models` pulls
# the two small models the live tests use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench clean install local models

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Built once into .cache/wheels/ (keyed by version, flags, Python and platform), then reused;
# fails loudly if the engine crashes (a SIGILL build) instead of failing later in a sweep.
local: $(STAMP)
	bash scripts/install-engine.sh $(BIN)/python

# sha256-verified, into $$PONDER_MODELS_DIR (else models/ in the user data folder).
models: $(STAMP)
	$(BIN)/ponder models pull smollm2-135m qwen2.5-coder-0.5b

demo: $(STAMP)
	$(BIN)/ponder demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -n 2 -q

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_import.py
	$(BIN)/python benchmarks/bench_curves.py
	$(BIN)/python benchmarks/bench_policies.py
	$(BIN)/python benchmarks/bench_all.py

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
