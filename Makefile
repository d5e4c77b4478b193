# The two commands of the README: `make run` and `make test`. Everything they need is installed
# here (a virtualenv in .venv, PostgreSQL server binaries from Debian packages for the tests).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test install lint typecheck pytest postgres-binaries clean help

help:
	@echo "make run    install and start Medic on the embedded SQLite database"
	@echo "make test   install everything and run lint, type checks and the whole test suite"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall when the packaging metadata changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/medic serve

# PostgreSQL server binaries for the storage tests (the tests start a private cluster).
postgres-binaries:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then \
		echo "PostgreSQL server binaries: present"; \
	elif [ -n "$$MEDIC_TEST_POSTGRES_URL" ]; then \
		echo "PostgreSQL: using MEDIC_TEST_POSTGRES_URL"; \
	elif [ "$$(id -u)" = "0" ]; then \
		echo "installing PostgreSQL server binaries (apt-get install postgresql)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	else \
		echo "PostgreSQL server binaries missing: run 'sudo apt-get install -y postgresql'" >&2; exit 1; \
	fi

lint: install
	$(BIN)/ruff check medic_core medic_plugins tests bench examples
	$(BIN)/ruff format --check medic_core medic_plugins examples

typecheck: install
	$(BIN)/mypy --strict medic_core

pytest: install postgres-binaries
	$(BIN)/python -m pytest -q -p no:cacheprovider \
		--cov=medic_core --cov=medic_plugins --cov-report=term-missing:skip-covered \
		--cov-fail-under=85
	# The example plugin's own tests, run the way its authors would (its own pytest config).
	cd examples/medic-plugin-example && $(CURDIR)/$(BIN)/python -m pytest -q -p no:cacheprovider tests

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .coverage .mypy_cache .ruff_cache
