# rollback-drill: `make drill` runs a full drill on the embedded default; `make test` runs the test suite.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):/usr/local/go/bin:$(PATH)
# Loopback only, and no reaper image (it cannot be pulled where there is no registry; the drill cleans up itself).
export TESTCONTAINERS_RYUK_DISABLED ?= true
export TESTCONTAINERS_HOST_OVERRIDE ?= 127.0.0.1
PYTEST_FLAGS ?= -q
# The suite runs with a state directory and an evidence directory of its own, so its drills never append
# to the user's history nor leave bundles in reports/. With --allowed-skips, tools/skip_policy.py fails
# the run when a test skips that the list does not name, or when nothing passed (green means it ran).
ISOLATED = @home=$$(mktemp -d /tmp/rollback-drill-test.XXXXXX) && trap 'rm -rf "$$home"' EXIT && \
	XDG_STATE_HOME=$$home/state $(BIN)/pytest --evidence-dir $$home/reports

.PHONY: help venv docker chromium monitoring bubblewrap toolchain prerequisites lint types contracts unit features test drill test-kind bench clean clean-host

help:
	@echo "make drill      a full drill (Phase 7, mass-failure) on the local control plane; evidence under reports/"
	@echo "make test       lint, types, import contract, unit tests and features (installs what it needs)"
	@echo "make test-kind  the @kind scenarios (needs Docker and a kind node image)"
	@echo "make bench      benchmarks, written to reports/bench/"
	@echo "make clean-host undo what test-kind changed on the host (dockerd's default runtime back, the runc wrapper gone)"

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

venv: $(VENV)/.installed

docker:
	@scripts/ensure-docker.sh

# tests/test_report_browser.py renders report.html in headless chromium.
chromium:
	@scripts/ensure-chromium.sh

# Prometheus, Alertmanager, promtool and amtool from Debian, never left running as services.
monitoring:
	@scripts/ensure-monitoring.sh

# `rollback-drill conformance` runs the runbook's commands under bubblewrap (Debian) where it is present.
bubblewrap:
	@scripts/ensure-bubblewrap.sh

toolchain: venv
	$(BIN)/rollback-drill toolchain

prerequisites: venv docker chromium monitoring bubblewrap toolchain

lint: venv
	$(BIN)/ruff check .

types: venv
	$(BIN)/mypy

contracts: venv
	$(BIN)/lint-imports

unit: venv
	$(ISOLATED) tests $(PYTEST_FLAGS)

# @chosen scenarios are the ones `rollback-drill run` picks for --incident/--phase; the @matrix covers every incident.
features: prerequisites
	$(ISOLATED) features -m "not kind and not chosen" $(PYTEST_FLAGS)

test: prerequisites lint types contracts
	$(ISOLATED) tests features -m "not kind and not chosen" --allowed-skips tests/allowed-skips.txt $(PYTEST_FLAGS)

drill: prerequisites
	$(BIN)/rollback-drill run --phase 7 --incident mass-failure

# kind needs its own node image, built offline (docs/kind.md); the runc wrapper is installed only where
# `docker exec --privileged` fails (these VMs lack CAP_SYS_RESOURCE).
test-kind: prerequisites
	scripts/install-runc-wrapper.sh
	scripts/build-kind-node.sh
	$(BIN)/pytest features -m kind --target kind $(PYTEST_FLAGS)

# The reverse of test-kind's scripts/install-runc-wrapper.sh (root; waits for the drill's containers to finish).
clean-host:
	scripts/uninstall-runc-wrapper.sh

bench: prerequisites
	$(BIN)/pip install -q -e '.[dev,bench]' && $(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache build src/*.egg-info
