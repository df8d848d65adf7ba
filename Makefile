PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench bench-full chaos clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[sim,service,temporal,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/bulkkm demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Two pytest processes (pytest-xdist): most tests wait on sockets, timers and the bulkkm
# processes they start, so two keep a 2-core machine busy (README: Dependencies).
# `make unit TEST_WORKERS=0` runs them in this one process.
TEST_WORKERS ?= 2

unit: $(STAMP)
	$(BIN)/pytest -q -n $(TEST_WORKERS)

test: lint typecheck unit

# Long chaos run: BULKKM_CHAOS_EXAMPLES random fault profiles (default 500) from a fresh seed,
# printed first; replay one with `make chaos BULKKM_CHAOS_SEED=<seed>`.
chaos: $(STAMP)
	@seed=$${BULKKM_CHAOS_SEED:-$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}; \
	echo "chaos seed $$seed (replay: make chaos BULKKM_CHAOS_SEED=$$seed)"; \
	BULKKM_CHAOS_EXAMPLES=$${BULKKM_CHAOS_EXAMPLES:-500} BULKKM_CHAOS_CHAINS=$${BULKKM_CHAOS_CHAINS:-10} \
	$(BIN)/pytest tests/chaos -q --hypothesis-seed=$$seed --durations=5

# Benchmarks (bench/): the quick size, all sizes (long: run it once), and a seconds-long
# smoke size for CI that fails only on a crash or on targets left undone, never on timings.
BENCH_STAMP := $(VENV)/.bench

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[sim,service,temporal,dev,bench,fast]'
	touch $(BENCH_STAMP)

.PHONY: bench-smoke

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench --size quick

bench-full: $(BENCH_STAMP)
	$(BIN)/python -m bench --size full

bench-smoke: $(BENCH_STAMP)
	$(BIN)/python -m bench --size smoke

# The web page's screenshots in docs/screenshots/ (the browser test, saving each screen).
.PHONY: screenshots
screenshots: $(STAMP)
	BULKKM_SCREENSHOTS=docs/screenshots $(BIN)/pytest -q tests/service/test_page.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
