# Every target installs what it needs first, so `make run` and `make test` work on a fresh clone.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
# uv from PATH, else the one pip puts beside $(PYTHON) (`python -m uv` works for the PyPI wheel).
UV ?= $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
HOST ?= 127.0.0.1
PORT ?= 8000
HTTPS_PORT ?= 8443
PYTEST_ARGS ?=
BENCH_ARGS ?=
SOAK_ARGS ?=

.PHONY: help uv install docs-assets run dev run-live lint format test test-fast devstack-up devstack-down devstack-status bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

uv:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv \
		|| $(PYTHON) -m pip install --quiet --user --break-system-packages uv
	@$(UV) --version >/dev/null 2>&1 || { echo "uv could not be installed with $(PYTHON) -m pip" >&2; exit 1; }

# Bytecode compiled once at install: where PYTHONDONTWRITEBYTECODE is set, every process (each
# server a test starts) would otherwise compile its imports again, ~4 MB of RSS and seconds.
install: uv  ## create .venv from uv.lock and fetch the offline API-docs assets
	$(UV) sync --frozen --compile-bytecode
	bash scripts/fetch-docs-assets.sh

docs-assets:  ## fetch Swagger UI and ReDoc from the npm registry into the package
	bash scripts/fetch-docs-assets.sh

run: install  ## serve the whole contract on port 8000 with the in-memory backend
	$(UV) run --frozen colima-ref serve --backend memory --host $(HOST) --port $(PORT)

# DEBUG=true as in the specification's local development: DEBUG log lines, stack traces in 500
# bodies, any CORS origin.
dev: install  ## the developer loop: `make run` with DEBUG=true, restarted when a .py file under src/colima_ref changes
	DEBUG=true $(UV) run --frozen colima-ref serve --reload --backend memory --host $(HOST) --port $(PORT)

run-live: install devstack-up  ## serve against the local devstack on 8000 and, with a certificate from its Vault PKI, HTTPS on 8443
	eval "$$(bash scripts/devstack.sh env)" && $(UV) run --frozen colima-ref serve --backend live --host $(HOST) --port $(PORT) --https-port $(HTTPS_PORT)

lint: install  ## ruff, mypy --strict, import-linter contracts, compose file check
	$(UV) run --frozen ruff check src tests
	$(UV) run --frozen ruff format --check src tests
	$(UV) run --frozen mypy
	$(UV) run --frozen lint-imports
	bash scripts/check-compose.sh

format: uv  ## apply ruff's formatting and safe fixes
	$(UV) run --frozen ruff format src tests
	$(UV) run --frozen ruff check --fix src tests

# The devstack for the length of the run: what is missing is started and stopped again afterwards, a
# devstack that already runs is used and left alone (scripts/devstack/session.sh).
test: lint  ## lint, then every test with branch coverage, on the devstack (started if it is not running)
	bash scripts/devstack.sh with $(UV) run --frozen pytest --cov --cov-report=term --cov-fail-under=90 $(PYTEST_ARGS)

test-fast: install  ## the tests that need no service: no devstack, no lint, no coverage
	$(UV) run --frozen pytest -q -m "not live" $(PYTEST_ARGS)

devstack-up: install  ## start what the live backend needs that is not already running
	bash scripts/devstack.sh up

devstack-down:  ## stop what devstack-up started
	bash scripts/devstack.sh down

devstack-status:
	bash scripts/devstack.sh status

bench: install devstack-up  ## our server vs a bare Starlette baseline under wrk (live devstack); see bench/run.py
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; } \
		|| { echo "wrk is missing and apt-get could not install it (run as root or install wrk)" >&2; exit 1; }
	UV_PROJECT_ENVIRONMENT=$(CURDIR)/bench/.runtime $(UV) sync --frozen --no-dev --no-group devstack --compile-bytecode --quiet
	$(UV) run --frozen python bench/run.py $(BENCH_ARGS)

.PHONY: soak
soak: install devstack-up  ## 60 s of mixed traffic on every endpoint (live devstack): no 5xx, flat RSS; see bench/soak.py
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; } \
		|| { echo "wrk is missing and apt-get could not install it (run as root or install wrk)" >&2; exit 1; }
	UV_PROJECT_ENVIRONMENT=$(CURDIR)/bench/.runtime $(UV) sync --frozen --no-dev --no-group devstack --compile-bytecode --quiet
	$(UV) run --frozen python bench/soak.py $(SOAK_ARGS)

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov dist src/colima_ref/http/static/vendor
