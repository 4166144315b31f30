# dispatch: developer entry points. The work is done by scripts/provision.sh (Debian packages incl.
# chromium, .venv, node_modules via npm ci, local PostgreSQL+PostGIS and Redis under .local/) and
# scripts/services.sh (web, RQ workers, sweeper, and twilio-mock / twilio-verify-mock: Prism serving
# Twilio's API and Verify specs).
#
#   make run     provision, migrate, seed demo data, start web + RQ workers + sweeper in the background
#                (and twilio-mock + twilio-verify-mock first, unless TWILIO_ACCOUNT_SID is set:
#                then Twilio is real;
#                and the demo gazetteer for address search, unless GEOCODER_URL is set),
#                and demo-fleet, which plays the demo workers (DEMO_FLEET=0 leaves it out)
#   make stop    stop what make run started (and the local PostgreSQL/Redis)
#   make test    provision, lint, dbcheck, then pytest (make test PYTEST_ARGS='-k offers -x')
#   make bench   provision, then bench/match.py (BENCH_ARGS=...), bench/ingest.py (INGEST_ARGS=...),
#                bench/batch_assign.py, bench/batch_windows.py, bench/ledger.py (LEDGER_ARGS=...),
#                bench/money_path.py (MONEY_ARGS=...),
#                bench/load.py (LOAD_ARGS=...)
#   make simulate  provision, then the city simulation (SIM_ARGS=...): bench/results/simulate.md
#                and PNG charts
#   make lint    ruff and the import contracts (lint-imports: the layers in pyproject.toml)
#   make dbcheck migrate, then `flask db check`: the models and the migrated schema agree
#   make bare-clone-check  git clone HEAD into an empty temporary folder, then make test (PYTEST_ARGS)
#                and make run (GET /healthz) and make stop there, and remove it: proves a bare
#                clone works with nothing beside it (scripts/bare_clone_check.sh)
#   make lock    regenerate requirements/dev.lock (runtime + dev, for .venv) and requirements/main.lock
#                (runtime, for the Docker image) from pyproject.toml with uv, keeping current pins
#                where they still fit (LOCK_ARGS='--upgrade' or '--upgrade-package NAME' to move)
#   make status  what is running
#   make npm     install node_modules only (front-end libraries, Prism and Twilio's spec; npm ci,
#                when stale)
#   make clean   stop, then remove .local/ (database and logs); distclean also removes .venv/
#                and node_modules/
#
# DATABASE_URL / REDIS_URL in the environment replace the local servers.
# PORT (default 8000) is the web port of make run; TWILIO_MOCK_PORT (default 4010) Prism's.
# TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_MESSAGING_FROM, PUBLIC_BASE_URL: real Twilio.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PORT ?= 8000
export PORT
PYTEST_ARGS ?=
BENCH_ARGS ?=
INGEST_ARGS ?=
LOAD_ARGS ?=
MONEY_ARGS ?=
LEDGER_ARGS ?= --transfers 1000 --jobs 50
SIM_ARGS ?=
LOCK_ARGS ?=

# Every recipe line that needs the servers starts with this.
WITH_ENV := . .local/env.sh &&

.PHONY: help provision venv lock npm run stop status test bench simulate lint dbcheck \
	bare-clone-check clean distclean

help:
	@sed -n '4,/^$$/s/^# \{0,1\}//p' Makefile

provision:
	@bash scripts/provision.sh all

venv:
	@bash scripts/provision.sh venv

lock:
	@bash scripts/provision.sh lock $(LOCK_ARGS)

npm:
	@bash scripts/provision.sh npm

run: provision
	@bash scripts/services.sh run

stop:
	@bash scripts/services.sh stop
	@bash scripts/provision.sh stop

status:
	@bash scripts/services.sh status
	@bash scripts/provision.sh status

test: provision
	.venv/bin/ruff check .
	.venv/bin/lint-imports
	$(WITH_ENV) .venv/bin/flask --app dispatch db upgrade
	$(WITH_ENV) .venv/bin/flask --app dispatch db check
	$(WITH_ENV) .venv/bin/pytest $(PYTEST_ARGS)

bench: provision
	$(WITH_ENV) .venv/bin/python bench/match.py $(BENCH_ARGS)
	$(WITH_ENV) .venv/bin/python bench/ingest.py $(INGEST_ARGS)
	$(WITH_ENV) .venv/bin/python bench/batch_assign.py
	$(WITH_ENV) .venv/bin/python -m bench.batch_windows
	$(WITH_ENV) .venv/bin/python -m bench.ledger $(LEDGER_ARGS)
	$(WITH_ENV) .venv/bin/python -m bench.money_path $(MONEY_ARGS)
	$(WITH_ENV) .venv/bin/python bench/load.py $(LOAD_ARGS)

simulate: provision
	$(WITH_ENV) .venv/bin/python bench/simulate.py $(SIM_ARGS)

lint: venv
	.venv/bin/ruff check .
	.venv/bin/lint-imports

dbcheck: provision
	$(WITH_ENV) .venv/bin/flask --app dispatch db upgrade
	$(WITH_ENV) .venv/bin/flask --app dispatch db check

# make bare-clone-check PYTEST_ARGS=...: make exports a command-line variable, so the script
# reads it from its environment.
bare-clone-check:
	@bash scripts/bare_clone_check.sh

clean: stop
	rm -rf .local

distclean: clean
	rm -rf .venv node_modules
