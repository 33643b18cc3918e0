# The README's two commands are `make run` and `make test`; both set up the virtualenv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PG_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
PYTEST_ARGS ?=

.PHONY: install run test check lint test-sqlite test-postgresql bench fuzz clean browser

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "MedBridge needs Python 3.11+"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Start MedBridge on embedded defaults (SQLite under ./var) with the demo network.
run: install
	@mkdir -p var
	@echo "building the demo's Tryton ERP in the background (var/peers-tryton.log)"
	@($(MAKE) --no-print-directory peers-tryton > var/peers-tryton.log 2>&1 &)
	$(BIN)/medbridge run --demo

## Lint, type-check, the dependency rule, then every test on SQLite and the storage tests on
## PostgreSQL: the two runs side by side (each a single pytest process: one core each), each
## one's output printed whole when it ends.
test: install lint
	$(MAKE) --no-print-directory -j2 --output-sync=target test-sqlite test-postgresql

## Debian's chromium for the browser tests (Playwright drives it; never a downloaded build).
browser:
	@test -x /usr/bin/chromium || { echo "installing chromium (Debian package)"; \
	  apt-get install -y -q chromium >/dev/null || { apt-get update -q && apt-get install -y -q chromium >/dev/null; }; }

## The inner loop: lint, types, the dependency rule, then the unit and property tests (no peers, no subprocesses).
check: lint
	env -u MEDBRIDGE_DATABASE_URL $(BIN)/pytest -q tests/unit tests/property -m "not slow and not peer and not nats" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check src tests benchmarks fuzz
	$(BIN)/ruff format --check src tests benchmarks fuzz
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

test-sqlite: install peers-gnuhealth peers-tryton peers-tryton-next browser
	env -u MEDBRIDGE_DATABASE_URL $(BIN)/pytest $(PYTEST_ARGS)

test-postgresql: install peers-gnuhealth peers-tryton peers-tryton-next
	MEDBRIDGE_DATABASE_URL=$(PG_URL) $(BIN)/pytest -m db $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m benchmarks.pipeline
	$(BIN)/python -m benchmarks.hl7
	$(BIN)/python -m benchmarks.rest
	$(BIN)/python -m benchmarks.scaleout --pg $(PG_URL)
	$(BIN)/python -m benchmarks.erp
	$(BIN)/python -m benchmarks.x12
	$(BIN)/python -m benchmarks.cxml
	$(BIN)/python -m benchmarks.matching
	$(BIN)/python -m benchmarks.cycles
	$(BIN)/python -m benchmarks.drain
	$(BIN)/python -m benchmarks.messages
	$(BIN)/python -m benchmarks.messages --pg $(PG_URL)
	$(BIN)/python -m benchmarks.period_lock
	$(BIN)/python -m benchmarks.period_lock --pg $(PG_URL)
	$(BIN)/python -m benchmarks.analytics
	$(BIN)/python -m benchmarks.recall
	$(BIN)/python -m benchmarks.masterdata_import
	$(BIN)/python -m benchmarks.masterdata_import --pg $(PG_URL)

## Every parser under 1,000,000 generated hostile inputs on every core (~5 min); fails on any
## untyped exception or input over 1 s, the inputs in var/fuzz-findings.jsonl.
FUZZ_ARGS ?=
fuzz: install
	$(BIN)/python -m fuzz --inputs 1000000 --out var/fuzz-findings.jsonl $(FUZZ_ARGS)

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache .hypothesis

# The real peer systems the tests start (GPL: their own virtualenvs, JSON-RPC only).
include peers/gnuhealth/Makefile.inc
include peers/tryton/Makefile.inc
include peers/tryton-next/Makefile.inc
