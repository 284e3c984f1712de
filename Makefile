# buildfarm.ec2 developer entry point. Every target sets up what it needs; a second run is fast.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.stamp
COLL_ROOT := $(CURDIR)/build/collections
COLL_DIR := $(COLL_ROOT)/ansible_collections/buildfarm/ec2
PY_DIRS = $(wildcard plugins tests tools bench extensions)
export PATH := $(BIN):$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(COLL_ROOT)
export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH := true
export ANSIBLE_FORCE_COLOR := false
export PY_COLORS := 0

.PHONY: help venv collection engine lint sanity unit integration molecule e2e test demo build clean docs docs-lint ee

help:
	@echo "make demo   run the main job on the local cloud"
	@echo "make test   run every test suite (lint, sanity, unit, integration, molecule, end to end)"
	@echo "make docs   module/plugin/role reference into build/docs/reference"
	@echo "make ee     execution environment build context into build/ee"

venv: $(STAMP)
$(STAMP): requirements-dev.txt requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt -r requirements.txt
	touch $@

# The collection as Ansible sees it: build/collections/ansible_collections/buildfarm/ec2 -> repo root.
collection: $(COLL_DIR)
$(COLL_DIR):
	mkdir -p $(dir $@)
	ln -sfn $(CURDIR) $@

engine:
	tools/engine/engine.sh up

# ansible-lint searches ANSIBLE_HOME/collections (~/.ansible) before ANSIBLE_COLLECTIONS_PATH: give it a home of
# its own, so an installed copy of this collection in the user's home cannot shadow the checkout.
lint: venv collection
	$(BIN)/ruff check $(PY_DIRS)
	$(BIN)/black --check -q $(PY_DIRS)
	ANSIBLE_HOME=$(CURDIR)/build/ansible-home $(BIN)/ansible-lint

sanity: venv
	tools/test/sanity.sh

# Each xdist worker starts its own moto server (tests/conftest.py), so test files run two at a time.
unit: venv collection
	$(BIN)/pytest -n 2 --dist loadfile tests/unit

integration: venv collection engine
	$(BIN)/pytest -n 2 --dist loadfile tests/integration

# Two xdist workers, each with a local cloud of its own (own state dir, API port, internet network); every test has
# its own cluster and VPC, so tests do not meet.
e2e: venv collection engine
	$(BIN)/pytest -n 2 --dist load tests/e2e

molecule: venv collection engine
	tools/test/molecule-all.sh

# The container suites through tools/test/suites.sh: molecule beside integration (no shared network), then e2e.
test: lint docs-lint sanity unit venv collection engine
	tools/test/suites.sh

demo: venv collection engine
	tools/demo.sh

build: venv
	mkdir -p build/dist
	$(BIN)/ansible-galaxy collection build --force --output-path build/dist .

# Module/plugin/role reference (RST) with antsibull-docs into build/docs/reference (DOCS_DEST=...); fails on doc
# errors. docs-lint (part of `make test`) only lints.
docs: venv
	tools/docs/docs.sh build

docs-lint: venv
	tools/docs/docs.sh lint

# Execution environment build context in build/ee (ansible-builder); building the image needs a registry.
ee: venv
	rm -rf build/dist build/ee
	$(BIN)/ansible-galaxy collection build --force --output-path build/dist .
	$(BIN)/ansible-builder create --file execution-environment.yml --context build/ee --output-filename Containerfile

clean:
	rm -rf build $(VENV)
