# The README's quick start: `make up` (install and start a cluster), `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up deps install test lint unit integration e2e gen bench clean

# System packages the node components and the tests use (Debian). Installed only
# when running as root with apt-get; otherwise `pilothouse up` runs the control
# plane alone.
SYSTEM_PACKAGES := sqlite3 busybox-static iproute2 tzdata containerd runc \
	containernetworking-plugins util-linux

$(STAMP): pyproject.toml setup.py
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
		if [ -n "$$missing" ]; then \
			echo "installing $$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
				--no-install-recommends $$missing >/dev/null; \
		fi; \
	fi

up: deps $(STAMP)
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
