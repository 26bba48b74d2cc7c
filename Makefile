# zcalib: two commands on a fresh machine
#   make demo   generate demo data, fill histograms on a local Dask cluster, fit, write output/demo/
#   make test   run the test suite
# Both create ./.venv and install the project (with its test/dev extras) on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.zcalib-installed

.PHONY: demo test test-all lint typecheck bench clean install

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/zcalib demo

# The CI command (.ci/run calls this): the full suite except tests marked slow-by-choice.
test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_fit.py
	$(BIN)/python benchmarks/bench_processor.py

clean:
	rm -rf output .pytest_cache .mypy_cache .ruff_cache
