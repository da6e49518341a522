# ipgeo: `make run` starts the service, `make test` runs every test. Both set themselves up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit system-deps images test-containers clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP) system-deps
	$(BIN)/ipgeo up --port 8080

system-deps:
	bash scripts/system-deps.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests tests_containers deploy
	$(BIN)/ruff format --check src tests tests_containers deploy

typecheck: $(STAMP)
	$(BIN)/mypy --strict src

unit: $(STAMP)
	$(BIN)/pytest -q

test: $(STAMP) system-deps lint typecheck unit

# Container images (podman; base image from debootstrap, wheels built on the host).
images: $(STAMP)
	bash scripts/container-deps.sh
	bash scripts/build-images.sh

# Builds the images, runs the compose stack and checks it through nginx (not part of `test`).
test-containers: images
	$(BIN)/pytest -q -rA -p no:cacheprovider tests_containers

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info src/*.egg-info
