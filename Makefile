# The two set-up commands of the README: `make demo` and `make test`.
# Each creates .venv on first use and installs the project into it, as a user's `pip install`
# does: the hot path compiled by mypyc (setup.py). It is reinstalled when a source file changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SOURCES := pyproject.toml setup.py $(wildcard tba_guard/*.py tba_guard/*/*.py tba_guard/*/*.toml tba_guard/*/templates/*.html)

.PHONY: demo test coverage mutate lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# build/ goes first: setuptools copies modules into it and never removes one, so a module
# deleted from the tree would otherwise still be installed.
$(VENV)/.installed: $(SOURCES) | $(BIN)/python
	rm -rf build
	$(BIN)/python -m pip install --quiet '.[test]'
	touch $@ $(VENV)/.installed-cli

$(VENV)/.installed-cli: $(SOURCES) | $(BIN)/python
	rm -rf build
	$(BIN)/python -m pip install --quiet '.[cli]'
	touch $@

$(VENV)/.installed-bench: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet '.[bench]'
	touch $@

# `make demo PORT=8080` for another port.
PORT ?= 8000

demo: $(VENV)/.installed-cli
	$(BIN)/tba-guard serve --port $(PORT)

# Installs nothing outside .venv: tests that need Chromium, Redis or PostgreSQL skip with the
# reason where the machine lacks them (.ci/run provides them and makes those skips failures).
# The suite runs twice: on the installed, compiled build (what users get; PYTHONSAFEPATH and
# append mode keep the source tree off the front of sys.path, subprocesses included), then on
# the source tree as plain Python (the fallback where no compiler or wheel is available),
# under coverage.py: the core's branch coverage must reach the floor set in pyproject.toml.
test: $(VENV)/.installed
	PYTHONSAFEPATH=1 TBA_GUARD_BUILD=compiled $(BIN)/pytest --import-mode=append
	$(MAKE) --no-print-directory coverage

# The plain-Python run alone, measured: `make coverage` re-measures the core after a change.
coverage: $(VENV)/.installed
	rm -f .coverage
	PYTHONPATH=$(CURDIR) TBA_GUARD_BUILD=pure $(BIN)/python -m coverage run -m pytest
	$(BIN)/python -m coverage report

# Mutation testing of the core (docs/testing.md): mutmut in a copy of the tracked files, each
# mutant against the fast tests that reach it; then the score per module, and every surviving
# mutant that tests/mutation/EQUIVALENT.md does not list (a missing test, or an entry to add).
# A full run (about 4,000 mutants) takes hours on two cores: by default a sample of
# MUTATE_SAMPLE mutants per module (30: about 5 minutes, every survivor killed or listed);
# a larger sample takes longer and may meet survivors not yet triaged; 0 tries them all.
MUTATE_SAMPLE ?= 30
mutate: $(VENV)/.installed
	$(BIN)/python tests/mutation/run.py --sample $(MUTATE_SAMPLE)

lint: $(VENV)/.installed
	$(BIN)/ruff check tba_guard tests benchmarks setup.py
	$(BIN)/ruff format --check tba_guard tests benchmarks setup.py
	$(BIN)/mypy --strict tba_guard
	$(BIN)/mypy --strict benchmarks

# Every benchmark in one run: benchmarks/RESULTS.md and its charts (needs wrk and Redis).
bench: $(VENV)/.installed-bench
	@command -v wrk >/dev/null 2>&1 || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq wrk; }
	cd benchmarks && ../$(BIN)/python run_all.py

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache .hypothesis .coverage mutants
