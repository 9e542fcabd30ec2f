# ztp - the two commands a user needs are `make demo` and `make test` (both do their own set-up).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-unit test-integration test-compose bench lint typecheck setup setup-system clean

setup-system:
	@if [ "$$(id -u)" -ne 0 ]; then echo "make: this step installs Debian packages and builds network namespaces: run as root (sudo make ...)"; exit 1; fi
	bash scripts/setup-debian.sh

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

setup: setup-system $(STAMP)

demo: setup
	$(BIN)/python scripts/demo.py

test: setup
	bash scripts/setup-debian.sh --docker
	$(BIN)/python -m pytest -q tests

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

test-integration: setup
	$(BIN)/python -m pytest -q tests/integration

test-compose: setup
	bash scripts/setup-debian.sh --docker
	$(BIN)/python -m pytest -q tests/compose

bench: setup
	$(BIN)/python -m bench.run

lint: $(STAMP)
	$(BIN)/ruff check ztp tests scripts buildsys setup.py
	$(BIN)/mypy

clean:
	rm -rf $(VENV) state build *.egg-info .pytest_cache .mypy_cache .ruff_cache
