# Two commands: `make demo` runs the service on its embedded defaults; `make test` runs every test.
# Each bootstraps its own virtual environment in .venv from nothing but Python 3.11+.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
PG_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test

.PHONY: demo test lint venv bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

# `make demo PORT=8150` serves on another port; the demo's loopback links follow it.
demo: $(STAMP)
	-$(BIN)/syndicate --config config/syndicate.toml check
	$(BIN)/syndicate --config config/syndicate.toml run $(if $(PORT),--port $(PORT))

# ruff and mypy, configured in pyproject.toml; `make test` runs it first.
lint: $(STAMP)
	$(BIN)/ruff check syndicate tests bench
	$(BIN)/mypy

# pytest-xdist runs the tests in TEST_WORKERS processes (0: all in one); a test marked `timing` still
# runs with no other beside it (tests/conftest.py). `make test PYTEST_ARGS='-m "not slow"'` skips the slowest.
TEST_WORKERS ?= 2

test: $(STAMP) lint
	@bash tests/setup.sh "$(BIN)"
	SYNDICATE_TEST_DATABASE_URL="$${SYNDICATE_TEST_DATABASE_URL:-$$($(BIN)/python tests/pg_url.py '$(PG_URL)')}" \
		$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test,bench]'
	SYNDICATE_TEST_DATABASE_URL="$${SYNDICATE_TEST_DATABASE_URL:-$$($(BIN)/python tests/pg_url.py '$(PG_URL)')}" \
		$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var public
