# brokerlink: `make run` starts the whole app, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
export SITE_URL ?= http://127.0.0.1:$(PORT)

.PHONY: run test lint venv migrate seed sandbox bench-heartbeat bench-pages clean

# The venv is rebuilt only when requirements.txt changes, so a second `make run` is quick.
$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
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
	$(VENV)/bin/pytest

lint: venv
	$(VENV)/bin/ruff check .

# The sandbox broker on its own port (tests and benchmarks start their own).
sandbox: venv .env
	$(PY) manage.py sandbox_serve --port $${SANDBOX_PORT:-9100}

bench-heartbeat: venv
	$(PY) bench/heartbeat.py

# Dashboard under load and thousands of open live pages, in production mode (docs/operations.md).
bench-pages: venv
	$(PY) bench/pages.py

clean:
	rm -rf var
