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

install: $(STAMP) allowlist-py

# ---- medic_allowlist: the allowlist verifier (Rust) as a Python module -----------------------
# The server checks requests with the agent's own code: agent-rs/medic-allowlist-py, built by
# maturin (a dev dependency) into one abi3 wheel and installed into .venv; rebuilt only when the
# crates' sources change (the stamp). The first build compiles the crates (about a minute).
ALLOWLIST_PY_STAMP   := $(VENV)/.medic-allowlist-py
ALLOWLIST_PY_WHEELS  := agent-rs/target/wheels/medic-allowlist
ALLOWLIST_PY_SOURCES := agent-rs/Cargo.toml $(shell find agent-rs/medic-allowlist \
	agent-rs/medic-allowlist-py -name target -prune -o -type f -print 2>/dev/null)

.PHONY: allowlist-py

allowlist-py: $(ALLOWLIST_PY_STAMP)

$(ALLOWLIST_PY_STAMP): $(ALLOWLIST_PY_SOURCES) | $(STAMP)
	rm -rf $(ALLOWLIST_PY_WHEELS)
	PATH="$(dir $(CARGO)):$$PATH" $(BIN)/maturin build --quiet -i $(BIN)/python \
		-m agent-rs/medic-allowlist-py/Cargo.toml --out $(ALLOWLIST_PY_WHEELS)
	$(BIN)/pip install --quiet --no-index --no-deps --force-reinstall $(ALLOWLIST_PY_WHEELS)/*.whl
	@touch $@

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
	$(BIN)/ruff check medic_core medic_plugins tests bench examples proto
	$(BIN)/ruff format --check medic_core medic_plugins examples

typecheck: install
	$(BIN)/mypy --strict medic_core medic_plugins

# pytest-xdist: one worker per core (PYTEST_WORKERS=0 for one process); work-stealing, so the
# few long tests do not leave a worker idle at the end (docs/testing.md says what that asks of
# a test).
PYTEST_WORKERS ?= auto

pytest: install server-binaries infra-tools agent-bin client-tools
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist worksteal \
		--cov=medic_core --cov=medic_plugins --cov-report=term-missing:skip-covered \
		--cov-fail-under=85
	# The example plugin's own tests, run the way its authors would (its own pytest config).
	cd examples/medic-plugin-example && $(CURDIR)/$(BIN)/python -m pytest -q -p no:cacheprovider tests

test: lint typecheck pytest agent-test

clean:
	rm -rf $(VENV) .coverage .mypy_cache .ruff_cache

# ---- Generated-client check (tests/integration/test_generated_clients.py) ------------------
# The Python generator (openapi-python-client) is pinned in the dev extra; the TypeScript one
# (openapi-typescript, with tsc) in tests/clients/package.json and its lock file, installed
# here with npm ci (Node 20), again only when the lock file changes.
CLIENT_TOOLS_STAMP := tests/clients/node_modules/.medic-installed

.PHONY: client-tools

$(CLIENT_TOOLS_STAMP): tests/clients/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "client-tools: Node 20 and npm are needed" >&2; exit 1; }
	cd tests/clients && npm ci --no-audit --no-fund --loglevel=error
	@touch $(CLIENT_TOOLS_STAMP)

client-tools: $(CLIENT_TOOLS_STAMP)

# ---- Infrastructure checks (tests/infra: workflows, image, Helm chart, Terraform) ------------
# `make infra-check` installs the tools tests/infra needs, runs those tests, then
# `terraform fmt -check` when a terraform binary exists (no registry ships one: the HCL checks
# in tests/infra run either way). helm and actionlint are built with `go install` into
# $(go env GOPATH)/bin, once per version (a stamp file beside them); checkov gets a virtualenv of
# its own under .venv/ because it pins packaging<24, which the test tools in .venv cannot use;
# shellcheck and promtool (Debian's prometheus package) come from apt-get.
INFRA_HELM_VERSION       := v3.22.0
INFRA_ACTIONLINT_VERSION := v1.7.12
INFRA_CHECKOV_VERSION    := 3.3.30
INFRA_CHECKOV_VENV       := $(VENV)/infra-tools/checkov

.PHONY: infra-check infra-tools infra-go-tools infra-checkov infra-shellcheck infra-promtool

infra-go-tools:
	@command -v go >/dev/null 2>&1 || { echo "infra-check: Go is needed to build helm and actionlint (go install)" >&2; exit 1; }
	@gobin="$$(go env GOPATH | cut -d: -f1)/bin"; \
	if [ ! -x "$$gobin/helm" ] || [ ! -f "$$gobin/.medic-helm-$(INFRA_HELM_VERSION)" ]; then \
		echo "go install helm $(INFRA_HELM_VERSION) (a few minutes the first time)"; \
		go install helm.sh/helm/v3/cmd/helm@$(INFRA_HELM_VERSION) && touch "$$gobin/.medic-helm-$(INFRA_HELM_VERSION)"; \
	fi; \
	if [ ! -x "$$gobin/actionlint" ] || [ ! -f "$$gobin/.medic-actionlint-$(INFRA_ACTIONLINT_VERSION)" ]; then \
		echo "go install actionlint $(INFRA_ACTIONLINT_VERSION)"; \
		go install github.com/rhysd/actionlint/cmd/actionlint@$(INFRA_ACTIONLINT_VERSION) \
			&& touch "$$gobin/.medic-actionlint-$(INFRA_ACTIONLINT_VERSION)"; \
	fi

infra-checkov: $(BIN)/python
	@if ! $(INFRA_CHECKOV_VENV)/bin/checkov --version 2>/dev/null | grep -qx "$(INFRA_CHECKOV_VERSION)"; then \
		echo "installing checkov $(INFRA_CHECKOV_VERSION) into $(INFRA_CHECKOV_VENV)"; \
		$(PYTHON) -m venv $(INFRA_CHECKOV_VENV) \
			&& $(INFRA_CHECKOV_VENV)/bin/pip install --quiet checkov==$(INFRA_CHECKOV_VERSION); \
	fi

# actionlint runs shellcheck on every `run:` script when shellcheck is on PATH.
infra-shellcheck:
	@if command -v shellcheck >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = "0" ]; then \
		echo "installing shellcheck (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null; \
	else echo "shellcheck is missing -- run 'sudo apt-get install -y shellcheck'" >&2; exit 1; fi

# promtool checks and unit-tests the chart's alerting rules. Only the binary is wanted: the
# Prometheus server the package also installs is not started here (no init system runs it in a
# container; `systemctl disable --now prometheus` where one does).
infra-promtool:
	@if command -v promtool >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = "0" ]; then \
		echo "installing promtool (apt-get install prometheus)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	else echo "promtool is missing -- run 'sudo apt-get install -y --no-install-recommends prometheus'" >&2; exit 1; fi

infra-tools: infra-go-tools infra-checkov infra-shellcheck infra-promtool

infra-check: infra-tools
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/infra
	@if command -v terraform >/dev/null 2>&1; then \
		terraform fmt -check -recursive -diff infra/terraform && echo "terraform fmt -check: ok"; \
	else \
		echo "terraform: no binary on this machine, so 'terraform fmt -check' did not run (the HCL checks above did)"; \
	fi

# ---- Rust workspace (agent-rs: the allowlist verifier, its Python bindings, the agent) --------
# `make agent-test` checks formatting, lints with every warning an error, and runs the tests.
# `make agent-bin` builds the agent binary that tests/integration/test_agent_binary.py runs
# against the real server.
# Crates come from the Rust package registry (agent-rs/Cargo.lock is generated, not committed: it
# names the registry's host); the first run downloads and builds them (cold: about 1 minute on
# 2 cores), later runs are incremental. Two file tests chown files, so they expect root, as in CI.
CARGO ?= $(shell command -v cargo 2>/dev/null || echo $(HOME)/.cargo/bin/cargo)

.PHONY: agent-test agent-bin

agent-bin:
	cd agent-rs && $(CARGO) build -p medic-agent

agent-test:
	cd agent-rs && $(CARGO) fmt --all --check
	cd agent-rs && $(CARGO) clippy --all-targets -- -D warnings
	# No backtraces: a failure's message (file, line, what differed) is what is read, and CI
	# keeps only the head and the tail of a long log, so 30 frames per failure cut it away.
	cd agent-rs && RUST_BACKTRACE=0 $(CARGO) test
