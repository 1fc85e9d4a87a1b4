# Two commands for newcomers: `make demo` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check lint typecheck faults bench bench-control clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/herald demo

test: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff format --check src tests load-tests
	$(BIN)/ruff check src tests load-tests

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

# The fault suite at a larger size, ending with a table of scenario, invariant and result.
faults: $(STAMP)
	FAULT_SCALE=large $(BIN)/pytest -q tests/faults -p tests.faults.report

# Benchmarks (bounded; figures on shared machines are read as ratios within one run).
bench: $(STAMP)
	$(BIN)/python load-tests/bench_e2e.py --recipients 10000

bench-control: $(STAMP)
	$(BIN)/python load-tests/bench_control.py

clean:
	rm -rf $(VENV) .herald-data .pytest_cache .mypy_cache .ruff_cache
