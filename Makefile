# ipgeo: `make run` starts the service, `make test` runs every test. Both set themselves up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit system-deps assets bench-http images test-containers clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,embedded-redis]'
	touch $(STAMP)

run: $(STAMP) system-deps
	$(BIN)/ipgeo up --port 8080

system-deps:
	bash scripts/system-deps.sh

# Refresh the vendored Leaflet and world outline (needs npm); commit the result.
assets:
	bash scripts/vendor-assets.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests tests_containers deploy bench
	$(BIN)/ruff format --check src tests tests_containers deploy bench

typecheck: $(STAMP)
	$(BIN)/mypy --strict src bench

unit: $(STAMP)
	$(BIN)/pytest -q

test: $(STAMP) system-deps lint typecheck unit

# HTTP benchmark (not part of `make test`); e.g. make bench-http BENCH_ARGS='--connections 100,1000'
bench-http: $(STAMP)
	$(BIN)/python -m bench.http $(BENCH_ARGS)
# Container images (podman; base image from debootstrap, wheels built on the host).
images: $(STAMP)
	bash scripts/container-deps.sh
	bash scripts/build-images.sh

# Builds the images, runs the compose stack and checks it through nginx (not part of `test`).
test-containers: images
	$(BIN)/pytest -q -rA -p no:cacheprovider tests_containers

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info src/*.egg-info
