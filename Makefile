# zcalib: two commands on a fresh machine
#   make demo   generate demo data, fill histograms on a local Dask cluster, fit, write output/demo/
#   make test   run the test suite
# Both create ./.venv and install the project (with its test/dev extras) on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.zcalib-installed

.PHONY: demo test test-fast lint typecheck bench docs clean install browser slurm xrootd-server openssl

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/zcalib demo

# Headless Chromium (Debian package) for the HTML-report screenshot test; a no-op when it is
# already installed. Installing needs root (as in CI); without it the test is skipped.
browser:
	@command -v chromium >/dev/null 2>&1 || \
	  (DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	   DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "make browser: chromium could not be installed; the report screenshot test will be skipped"

# A single-node SLURM (Debian slurm-wlm + munge) for the batch tests in tests/slurm/: the
# fixture starts munged, slurmctld and slurmd itself (private config, state and logs in a
# temporary folder). A no-op when installed. Without it those tests are skipped locally and
# fail in CI (CI=true).
slurm:
	@(command -v slurmctld && command -v slurmd && command -v munged) >/dev/null 2>&1 || \
	  (DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	   DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null) || \
	  echo "make slurm: slurm-wlm/munge could not be installed; the SLURM tests cannot run"

# XRootD server (Debian package xrootd-server) for tests/io/test_xrootd.py, which serves test
# files on 127.0.0.1 and reads them back through root:// URLs; a no-op when it is installed.
# Installing needs root (as in CI); without the server the test skips locally and fails in CI.
xrootd-server:
	@command -v xrootd >/dev/null 2>&1 || \
	  (DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	   DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xrootd-server >/dev/null) || \
	  echo "make xrootd-server: xrootd-server could not be installed; the XRootD test cannot run"

# openssl (Debian package) makes the TLS certificate of the Dask scheduler/worker the
# coffea-casa notebook test connects to (tests/test_notebooks.py); a no-op when installed.
openssl:
	@command -v openssl >/dev/null 2>&1 || \
	  (DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	   DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null) || \
	  echo "make openssl: openssl could not be installed; the coffea-casa notebook test cannot run"

# The README's test command: the whole suite, slow physics tests included (.ci/run runs
# `make lint typecheck` first, then this).
test: $(STAMP) browser slurm xrootd-server openssl
	$(BIN)/python -m pytest -q

# quick local iteration: skips the tests marked slow (150-toy injection, 30 independent
# samples, the shipped demo pipeline; about 40 s together)
test-fast: $(STAMP) browser slurm xrootd-server openssl
	$(BIN)/python -m pytest -m "not slow" -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP) slurm
	$(BIN)/python benchmarks/bench_fit.py
	$(BIN)/python benchmarks/closure_study.py
	$(BIN)/python benchmarks/fit_regimes.py
	$(BIN)/python benchmarks/bench_processor.py
	$(BIN)/python benchmarks/bench_categories.py
	$(BIN)/python benchmarks/bench_fingerprint.py
	$(BIN)/python benchmarks/bench_slurm.py
	$(BIN)/python benchmarks/bench_cli_help.py

# The documentation site (mkdocs, strict: any warning fails) into site/.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf output site .pytest_cache .mypy_cache .ruff_cache
