# Signalbox: what CI and people run. `make test` works on a fresh machine: it installs
# everything it needs (Python venv, npm packages, Debian packages) before running the suites.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
# Command-line tools the project installs for itself (Node.js, Compose v2, hadolint, ...). First on
# PATH: npm, and every process the tests start, run the pinned Node rather than the machine's.
export PATH := $(CURDIR)/.tools/bin:$(CURDIR)/$(VENV)/bin:$(PATH)
NODE_DIRS := $(patsubst %/package-lock.json,%,$(wildcard examples/*/package-lock.json tools/*/package-lock.json bench/*/package-lock.json))

.PHONY: backends backends-generate help setup setup-python setup-node setup-system test test-python test-node lint format validate bench lock up down verify traffic

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

setup: setup-python setup-node setup-system backends ## install everything the tests and tools need

setup-python: $(VENV)/.synced ## the Python venv (.venv) with the pinned packages and the signalbox CLI
$(VENV)/.synced: requirements.lock pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet uv==0.13.8
	$(UV) pip sync --quiet --python $(PY) requirements.lock
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	touch $@

setup-node: ## Node.js 24 (pinned, into .tools/), then npm ci in every folder with a package-lock.json
	scripts/install-node.sh
	@for dir in $(NODE_DIRS); do echo "npm ci in $$dir"; (cd $$dir && npm ci --no-audit --no-fund --loglevel=error); done

setup-system: ## Debian packages and tools (prometheus, Compose v2)
	scripts/install-system-deps.sh

backends: ## build the OpenTelemetry Collector from its Go module (cached outside the clone)
	scripts/build-backends.sh

OTELCOL_VERSION = $(shell sed -n 's/^  version: *//p' tools/backends/otelcol/manifest.yaml)
backends-generate: ## regenerate tools/backends/otelcol/ after editing its manifest.yaml
	cd tools/backends/otelcol && GOTOOLCHAIN=local go run \
	  go.opentelemetry.io/collector/cmd/builder@v$(OTELCOL_VERSION) --config manifest.yaml --skip-compilation

test: setup lint test-python test-node validate ## every suite: lint, Python, Node, bundle validation

test-python: setup-python
	$(PY) -m pytest

test-node: setup-node
	@for dir in $(NODE_DIRS); do \
	  if grep -q '"test"' $$dir/package.json; then echo "npm test in $$dir (node $$(node --version))"; (cd $$dir && npm test); fi; \
	done

lint: setup-python ## ruff (lint + format check) and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: setup-python ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

validate: setup ## check the bundle offline (compose, Prometheus, Loki, Tempo, Grafana, Railway)
	$(VENV)/bin/signalbox validate .

bench: setup ## instrumentation overhead and outage benchmarks
	$(PY) -m bench

lock: ## re-pin Python dependencies after editing pyproject.toml or requirements.in
	scripts/lock.sh

up: ## start the local stack (Docker Compose v2: the docker plugin or .tools/bin/docker-compose)
	@scripts/compose.sh up -d --build

down: ## stop the local stack
	@scripts/compose.sh down

verify: setup-python ## prove the trace-id join on a running stack; ONLY=tempo,loki,... narrows the legs
	$(VENV)/bin/signalbox verify --compose $(if $(ONLY),--only $(ONLY))

traffic: setup-python ## send realistic traffic to the sample services
	$(VENV)/bin/signalbox traffic
