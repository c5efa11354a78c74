# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the whole suite).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,ray]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pgt demo

# Every test, on parallel workers (pytest-xdist; `-n auto` is two per core, tests/conftest.py), longest scopes
# first; a module's tests share a worker, so its Ray cluster or virtual board starts once.
# The suite starts hundreds of Python processes (pgt commands, boards, Ray workers): they share bytecode compiled
# once here, even where the environment sets PYTHONDONTWRITEBYTECODE (the caches are git-ignored), and use one
# BLAS thread each (the workers are the parallelism; OpenBLAS's pool costs CPU at every numpy import).
# `make test PYTEST_ARGS="-m 'not slow'"` for a quick pass while developing.
PYTEST_WORKERS ?= auto
PYTEST_ENV := env -u PYTHONDONTWRITEBYTECODE OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
test: $(STAMP) lint typecheck
	$(PYTEST_ENV) $(BIN)/python -m compileall -q host sim protocol firmware tests bench > /dev/null
	$(PYTEST_ENV) $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadscope $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check host protocol firmware sim tests bench

# MicroPython stubs, one directory per port (the rp2 and esp32 packages conflict in one environment).
STUBS := $(VENV)/stubs
$(STUBS)/%/.installed: $(STAMP)
	$(BIN)/python -m pip install -q --upgrade --target $(STUBS)/$* micropython-$*-stubs
	touch $@

typecheck: $(STAMP) $(STUBS)/rp2/.installed $(STUBS)/esp32/.installed
	$(BIN)/mypy host sim
	$(BIN)/python tests/typecheck_firmware.py $(STUBS) rp2 esp32

bench: $(STAMP)
	for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
