# The README's quick start: `make up` (install and start a cluster), `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up install test lint unit integration e2e gen bench clean

$(STAMP): pyproject.toml setup.py
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

up: $(STAMP)
	$(BIN)/pilothouse up

lint: $(STAMP)
	$(BIN)/python tools/gen_protos.py --check
	$(BIN)/ruff check .
	$(BIN)/python tools/devtree.py >/dev/null
	cd build/devtree && ../../$(BIN)/mypy --config-file ../../pyproject.toml pilothouse
	cd build/devtree && PYTHONPATH=. ../../$(BIN)/lint-imports --config ../../.importlinter

test: lint
	$(BIN)/pytest -q -p no:cacheprovider tests

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

gen: $(STAMP)
	$(BIN)/python tools/gen_protos.py

bench: $(STAMP)
	for b in bench/*.py; do $(BIN)/python $$b --quick || exit 1; done

clean:
	rm -rf build .mypy_cache .pytest_cache .ruff_cache
