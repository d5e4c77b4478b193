# The two commands of the README: `make run` and `make test`. Everything they need is installed
# here (a virtualenv in .venv, PostgreSQL server binaries from Debian packages for the tests).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test install lint typecheck pytest server-binaries clean help

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
# Servers the tests start privately (PostgreSQL, Redis), from Debian packages when missing.
server-binaries:
	@missing=""; \
	if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1 \
		&& [ -z "$$MEDIC_TEST_POSTGRES_URL" ]; then missing="postgresql"; fi; \
	if ! command -v redis-server >/dev/null 2>&1; then missing="$$missing redis-server"; fi; \
	if [ -z "$$missing" ]; then \
		echo "PostgreSQL and Redis server binaries: present"; \
	elif [ "$$(id -u)" = "0" ]; then \
		echo "installing$$missing (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
		echo "missing server binaries:$$missing -- run 'sudo apt-get install -y$$missing'" >&2; exit 1; \
	fi

lint: install
	$(BIN)/ruff check medic_core medic_plugins tests bench examples
	$(BIN)/ruff format --check medic_core medic_plugins examples

typecheck: install
	$(BIN)/mypy --strict medic_core

pytest: install server-binaries
	$(BIN)/python -m pytest -q -p no:cacheprovider \
		--cov=medic_core --cov=medic_plugins --cov-report=term-missing:skip-covered \
		--cov-fail-under=85
	# The example plugin's own tests, run the way its authors would (its own pytest config).
	cd examples/medic-plugin-example && $(CURDIR)/$(BIN)/python -m pytest -q -p no:cacheprovider tests

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .coverage .mypy_cache .ruff_cache
