# brokerlink: `make run` starts the whole app, `make test` runs every test, `make test-fast` the fast tier.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
# Test processes (pytest-xdist; a test file stays in one process, so its servers start once).
# Files go out in collection order, longest first (tests/conftest.py LONGEST_FIRST), not xdist's
# default of most tests first, which left long one-test files for the end. Three on a 2-core
# machine: many tests wait on servers, workers and browsers, and a third process fills those
# waits (docs/development.md, "How long").
TEST_PROCESSES ?= 3
export SITE_URL ?= http://127.0.0.1:$(PORT)

.PHONY: run test test-fast lint venv migrate seed sandbox shell bench-heartbeat bench-pages clean audit requirements

# The venv is rebuilt only when a lock file changes, so a second `make run` is quick.
# Every package, transitive ones included, is pinned with its hashes (pip refuses anything else).
# Production installs requirements.txt alone; this venv adds the development tools.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes -r requirements.txt -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

.env:
	$(PY) scripts/dev_env.py

run: venv .env
	@mkdir -p var
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	$(VENV)/bin/honcho -f Procfile.dev -e .env start -p $(PORT)

test: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -n $(TEST_PROCESSES) --dist loadfile --no-loadscope-reorder

# The fast tier: every test that starts no process (no server, worker, broker or browser);
# tests/tiers.py marks the others `slow`/`browser` from the fixtures and helpers they use.
test-fast: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -n $(TEST_PROCESSES) --dist loadfile --no-loadscope-reorder -m "not slow and not browser"

lint: venv
	$(VENV)/bin/ruff check .

# A Django shell with the environment `make run` gives its processes (SITE_URL from PORT, .env):
# the Python API from here reaches the same brokers (docs/integrating.md). `make shell PORT=8010`
# for a `make run PORT=8010`.
shell: venv .env
	$(PY) manage.py shell

# The sandbox broker on its own port (tests and benchmarks start their own).
sandbox: venv .env
	$(PY) manage.py sandbox_serve --port $${SANDBOX_PORT:-9100}

bench-heartbeat: venv
	$(PY) bench/heartbeat.py

# Dashboard under load and thousands of open live pages, in production mode (docs/operations.md).
bench-pages: venv
	$(PY) bench/pages.py

# Known vulnerabilities (PyPI advisory database / OSV) in the pinned runtime and dev sets; needs the network.
audit: venv
	$(VENV)/bin/pip-audit --progress-spinner off --require-hashes --disable-pip -r requirements.txt
	$(VENV)/bin/pip-audit --progress-spinner off --require-hashes --disable-pip -r requirements-dev.txt

# Recompile the lock files after editing requirements.in or requirements-dev.in (the only place to add a dependency).
PIP_COMPILE := $(VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links
requirements: venv
	$(PIP_COMPILE) -o requirements.txt requirements.in
	$(PIP_COMPILE) -o requirements-dev.txt requirements-dev.in

clean:
	rm -rf var
