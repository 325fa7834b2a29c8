# The two commands of the README: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test dev lint reliability clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

## Play the seed's mission (2013-2016) on the embedded stack and print the bilan.
demo: $(STAMP)
	$(BIN)/corridor demo

## Lint, type-check and run the whole test suite against real servers.
test: $(STAMP) lint
	$(BIN)/pytest

## Run the embedded stack (Temporal + PostgreSQL + worker) in the foreground.
dev: $(STAMP)
	$(BIN)/corridor dev

## Inject faults on real servers and write the figures to RELIABILITY.md.
reliability: $(STAMP)
	$(BIN)/python -m reliability

## Measure the event store and the journeys on Temporal against their baselines and write
## BENCHMARKS.md (not part of test; `python -m bench scale --journeys N` is the scale run).
.PHONY: bench
bench: $(STAMP)
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy .

clean:
	rm -rf $(VENV) .corridor .pytest_cache .mypy_cache .ruff_cache
