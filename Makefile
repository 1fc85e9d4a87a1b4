# Two commands for newcomers: `make demo` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check lint typecheck faults bench bench-million bench-control bench-reads clean

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

# The fault suite at a larger size, ending with a table of scenario, invariant and result;
# with it the outsider's scenarios that live beside it (abuse and isolation, fair sharing,
# the embedded broker's life, control and the lifecycle through the whole pipeline).
FAULT_SCENARIOS = tests/faults tests/abuse tests/integration/test_admission.py \
	tests/e2e/test_fair_share.py tests/e2e/test_run_all.py tests/e2e/test_control.py \
	tests/e2e/test_lifecycle.py tests/e2e/test_reconcile.py
faults: $(STAMP)
	FAULT_SCALE=large $(BIN)/pytest -q $(FAULT_SCENARIOS) -p tests.faults.report

# Benchmarks (bounded; figures on shared machines are read as ratios within one run).
bench: $(STAMP)
	$(BIN)/python load-tests/bench_e2e.py --recipients 10000

# One 1,000,000-recipient WHATSAPP_RCS_SMS campaign end to end: exact counters, no loss, no
# duplicate, worker memory flat from a tenth of it to the end (about half an hour here).
bench-million: $(STAMP)
	$(BIN)/python load-tests/bench_e2e.py --recipients 1000000 --skip-ceiling --skip-fold

bench-control: $(STAMP)
	$(BIN)/python load-tests/bench_control.py

# Reads of one 10,000,000-recipient campaign (several GB and minutes to generate; smaller with
# `make bench-reads READS_RECIPIENTS=1000000`).
READS_RECIPIENTS ?= 10000000
bench-reads: $(STAMP)
	$(BIN)/python load-tests/bench_reads.py --recipients $(READS_RECIPIENTS)

clean:
	rm -rf $(VENV) .herald-data .pytest_cache .mypy_cache .ruff_cache
