# The set-up commands of the README: `make demo` and `make test`, plus `make test-latest` (the
# suite against the newest releases) and `make lock` (refresh the lock). Each creates its virtual
# environment on first use and installs the project into it, compiled by mypyc (setup.py).
# Everything they write stays in the project: pip's and uv's caches too (.cache/).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LATEST_VENV ?= .venv-latest
# The locked test environment: every package `make test` installs, with its hashes (`make lock`).
LOCK := requirements/test.txt
SOURCES := pyproject.toml setup.py $(wildcard tba_guard/*.py tba_guard/*/*.py tba_guard/*/*.toml tba_guard/*/templates/*.html)
export PIP_CACHE_DIR := $(CURDIR)/.cache/pip
export UV_CACHE_DIR := $(CURDIR)/.cache/uv

.PHONY: demo test test-latest lock coverage mutate lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The test environment is the lock, hashes checked, and the package built against it without
# build isolation, so that mypyc is the locked mypy too. build/ goes first: setuptools copies
# modules into it and never removes one, so a module deleted from the tree would be installed.
$(VENV)/.installed: $(SOURCES) $(LOCK) | $(BIN)/python
	rm -rf build
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation .
	touch $@ $(VENV)/.installed-cli

# The demo installs as a user would: the package with its `cli` extra, resolved by pip.
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

# The suite against the newest release of every dependency, in a venv of its own made afresh:
# what a user installing today gets. When it fails, the releases newer than the lock are named.
test-latest:
	rm -rf $(LATEST_VENV) build
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LATEST_VENV)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager '.[test]'
	$(LATEST_VENV)/bin/python requirements/drift.py $(LOCK)
	PYTHONSAFEPATH=1 TBA_GUARD_BUILD=compiled $(LATEST_VENV)/bin/pytest --import-mode=append \
	  -p no:cacheprovider || { $(LATEST_VENV)/bin/python requirements/drift.py --failed $(LOCK); exit 1; }

# Refresh the lock: the newest releases pyproject.toml allows, for the Python and platform CI
# runs (3.11, Linux x86_64), with every file's hash. Then `make test` installs them.
lock: | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade uv
	$(BIN)/uv pip compile pyproject.toml requirements/build.in --extra test --upgrade \
	  --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	  --custom-compile-command "make lock" --quiet -o $(LOCK)

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
	$(BIN)/ruff check tba_guard tests benchmarks setup.py requirements
	$(BIN)/ruff format --check tba_guard tests benchmarks setup.py requirements
	$(BIN)/mypy --strict tba_guard
	$(BIN)/mypy --strict benchmarks requirements

# Every benchmark in one run: benchmarks/RESULTS.md and its charts (needs wrk and Redis).
bench: $(VENV)/.installed-bench
	@command -v wrk >/dev/null 2>&1 && command -v valgrind >/dev/null 2>&1 || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq wrk valgrind; }
	cd benchmarks && ../$(BIN)/python run_all.py

clean:
	rm -rf $(VENV) $(LATEST_VENV) .cache build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis .coverage mutants
