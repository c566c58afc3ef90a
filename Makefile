# tokentrail: two commands for a fresh machine with Python 3.11+, pip and make.
#   make run   virtual environment, install, start the service (SQLite + bundled path map)
#   make test  install the test extras, run ruff, mypy --strict and pytest with branch coverage

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
DATA   ?= ./tokentrail-data
HOST   ?= 127.0.0.1
PORT   ?= 8080

.PHONY: run test lint typecheck pytest bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "tokentrail needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/tokentrail serve --data $(DATA) --host $(HOST) --port $(PORT)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy --strict src/tokentrail

pytest: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n auto --maxprocesses 4 --cov --cov-branch --cov-report=term

test: lint typecheck pytest

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	@touch $@ $(VENV)/.installed $(VENV)/.installed-test

# Issue 2 figures, then tokentrail vs oidc-provider and --workers 1 vs 2 (with PNG charts in
# docs/bench/); both rewrite their own sections of docs/benchmarks.md.
bench: $(VENV)/.installed-bench
	$(BIN)/python bench/run.py
	$(BIN)/python bench/peer.py --write
	$(BIN)/python bench/bench_memory.py --write

clean:
	rm -rf $(VENV) .coverage .coverage.* .mypy_cache .ruff_cache .pytest_cache
