# such-market backend. `make dev` runs the whole system locally; `make test` runs every check CI runs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      := .venv
SAM_VENV  := .venv-sam
PY        := $(VENV)/bin/python
SAM       := $(SAM_VENV)/bin/sam
STAMP     := $(VENV)/.installed
SAM_STAMP := $(SAM_VENV)/.installed
SAM_CLI_VERSION := 1.170.0

# Our Lambda runtime is python3.13: take it from PATH, or from pyenv when it is installed there.
PYTHON313 := $(shell for p in python3.13 $$(pyenv root 2>/dev/null)/versions/3.13*/bin/python3.13 /usr/local/bin/python3.13 /usr/bin/python3.13; do \
	"$$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' >/dev/null 2>&1 && { command -v "$$p"; break; }; done)

# sam build looks for python3.13 on PATH: the project venv provides it.
SAM_ENV := PATH="$(CURDIR)/$(VENV)/bin:$$PATH" SAM_CLI_TELEMETRY=0

.PHONY: help install jemalloc browser dev dev-reset test lint format validate rehearse build bench chaos openapi openapi-check migrate pytest pytest-cluster clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): requirements-dev.txt layers/shared/requirements.txt
	@if [ -z "$(PYTHON313)" ]; then \
		echo "python3.13 not found. Install it with 'pyenv install 3.13' (or your OS packages) and retry." >&2; exit 1; fi
	test -x $(PY) || $(PYTHON313) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@$(MAKE) --no-print-directory jemalloc browser
	touch $@

# Deployed Valkey runs on jemalloc; the embedded server is preloaded with it when the system has it
# (local/services.py). Best effort: without root or apt it runs on libc malloc and says so in the bench.
jemalloc:
	@$(PY) -c 'import ctypes.util, sys; sys.exit(not ctypes.util.find_library("jemalloc"))' || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ timeout 120 apt-get install -y -q --no-install-recommends libjemalloc2 >/dev/null 2>&1 || \
		{ timeout 300 apt-get update -q >/dev/null 2>&1 && \
		timeout 120 apt-get install -y -q --no-install-recommends libjemalloc2 >/dev/null 2>&1; }; }; } || \
		echo "note: libjemalloc2 is not installed: the embedded Valkey runs on libc malloc (docs/benchmarks.md)" >&2

# The browser test of /api/docs (tests/e2e/test_docs_browser.py) drives Debian's chromium through
# chromium-driver. Installed as libjemalloc2 is (root and apt, bounded waits); without them `make test`
# fails that test and says why.
browser:
	@{ command -v chromium && command -v chromedriver; } >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ timeout 300 apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null 2>&1 || \
		{ timeout 300 apt-get update -q >/dev/null 2>&1 && \
		timeout 300 apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null 2>&1; }; }; } || \
		echo "note: chromium and chromium-driver are not installed: the browser test of /api/docs fails under make test" >&2

$(SAM_STAMP):
	@if [ -z "$(PYTHON313)" ]; then \
		echo "python3.13 not found. Install it with 'pyenv install 3.13' (or your OS packages) and retry." >&2; exit 1; fi
	test -x $(SAM_VENV)/bin/python || $(PYTHON313) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/python -m pip install --quiet aws-sam-cli==$(SAM_CLI_VERSION)
	touch $@

install: $(STAMP) $(SAM_STAMP) browser ## create the venvs (project and SAM CLI) and install everything

dev: $(STAMP) ## run everything locally: PostgreSQL, Valkey, Alchemy/Neynar stubs, local API on :3000, event bus, schedules; data kept in .local/data
	$(PY) -m local.dev

dev-reset: $(STAMP) ## remove the data make dev keeps (.local/data), then run make dev from empty
	$(PY) -m local.dev --reset

lint: $(STAMP) ## ruff (format + lint) and mypy --strict
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

format: $(STAMP) ## apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

validate: $(STAMP) $(SAM_STAMP) ## cfn-lint and sam validate --lint on template.yaml
	$(VENV)/bin/cfn-lint template.yaml $(wildcard infra/*.yaml)
	$(SAM_ENV) $(SAM) validate --lint

# The template proven without AWS (docs/deploy.md#rehearsal-the-template-proven-without-aws-make-rehearse): the linters, then the static checks of the
# translated template against the code, and a deployment into moto with IAM enforced (local/rehearse.py).
rehearse: validate ## cfn-lint, sam validate, grants vs code, every function started in moto under its role
	PYTHONPATH=layers/shared $(PY) -m local.rehearse

build: $(STAMP) $(SAM_STAMP) ## sam build (the layer's package and dependencies under python/)
	$(SAM_ENV) $(SAM) build

openapi: $(STAMP) ## regenerate openapi.json from the handlers
	$(PY) -m local.openapi --write openapi.json

openapi-check: $(STAMP) ## fail when openapi.json is out of date
	$(PY) -m local.openapi --check openapi.json

pytest: $(STAMP) browser ## the pytest suite only (real PostgreSQL and Valkey, headless Chromium)
	REQUIRE_BROWSER=1 $(PY) -m pytest $(PYTEST_ARGS)

pytest-cluster: $(STAMP) ## the integration and handler tests again, on a 3-primary Valkey cluster (REDIS_CLUSTER=true)
	$(PY) -m pytest --cache-cluster tests/integration tests/functions $(PYTEST_ARGS)

test: lint rehearse build openapi-check pytest pytest-cluster ## everything CI runs

chaos: $(STAMP) ## the fault suite alone (pauses and kills real PostgreSQL/Valkey, breaks the stubs); prints its table
	$(PY) -m pytest tests/chaos -p no:cacheprovider -q -rN

bench: $(STAMP) ## the benchmark suite; results go to bench/results/
	$(PY) -m bench

migrate: $(STAMP) ## apply migrations to DATABASE_URL (or the RDS secret named by DB_SECRET_ARN)
	$(PY) -m local.migrate

clean: ## remove build output and caches (keeps the venvs)
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache
