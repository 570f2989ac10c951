# outage-radar: `make run` shows it working, `make test` proves it. Both set everything up.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
KEEP_RUNNING ?=
RUN_ARGS ?= $(if $(KEEP_RUNNING),--keep-running,)
# pytest-xdist: one process per core (TEST_JOBS=1 runs everything in this one); a test module
# stays on one process (--dist loadscope), so its module fixtures are built once.
TEST_JOBS ?= auto
XDIST = $(if $(filter 1,$(TEST_JOBS)),-p no:xdist,-n $(TEST_JOBS) --dist loadscope)

.PHONY: install run test lint typecheck unit integration bench clean

$(STAMP): pyproject.toml
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "outage-radar needs Python 3.11 or newer; $(PY) is " + sys.version.split()[0] + ". Run: make PY=python3.11 ...")'
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/python -m streams demo $(RUN_ARGS)

lint: install
	$(BIN)/ruff check streams detectors tests
	$(BIN)/ruff format --check streams detectors tests

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/python -m pytest $(XDIST) --ignore=tests/integration

integration: install
	$(BIN)/python -m pytest $(XDIST) tests/integration

test: lint typecheck
	$(BIN)/python -m pytest $(XDIST)

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .radar .pytest_cache .mypy_cache .ruff_cache *.egg-info
