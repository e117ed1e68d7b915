# ReconFlow developer commands. `make demo` and `make test` set up the venv first when needed.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The web console: npm ci from the lockfile, then a Vite build into console/dist (served by the
# local stack, uploaded to the console bucket on AWS). Rebuilt when a source or pin changes.
CONSOLE_MODULES := console/node_modules/.installed
CONSOLE_BUILT   := console/dist/index.html
CONSOLE_SOURCES := console/index.html console/vite.config.js $(shell find console/src -type f 2>/dev/null)
# The browser tests drive Debian's Chromium (tests/e2e/console).
CHROMIUM := /usr/bin/chromium

# The Lambda runtime's Python (template.yaml: python3.13) for `make test-lambda`.
LAMBDA_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13) python3.13)
LAMBDA_VENV   := .venv-lambda313
# The tests that need only the Lambda bundle (no torch, engine, CLI or local stack).
LAMBDA_TESTS  := tests/unit/handlers tests/unit/jobstate tests/fuzz/test_fuzz_api.py \
                 tests/fuzz/test_fuzz_upload_events.py tests/fuzz/test_fuzz_cleanup_events.py

# What the lent GPU machine needs beside its own image (Python 3.12 with torch, numpy, scipy,
# scikit-image, OpenCV, Pillow, rich): the engine's other wheels for that Python, and Spot.
# `make gpu-kit`, then the device runs `bash bench/gpu_run.sh` with `.gpu-kit` carried (README).
GPU_KIT        := .gpu-kit
GPU_PYTHON     ?= 3.12
GPU_KIT_WHEELS := trimesh fast-simplification embreex xatlas manifold3d pymeshfix
GPU_PLATFORMS  := manylinux2014_x86_64 manylinux_2_17_x86_64 manylinux_2_24_x86_64 manylinux_2_27_x86_64 \
                  manylinux_2_28_x86_64

.PHONY: setup console browser demo test test-lambda test-localstack lint bench gpu-kit clean

setup: $(STAMP) $(CONSOLE_BUILT)

console: $(CONSOLE_BUILT)

$(CONSOLE_MODULES): console/package.json console/package-lock.json
	cd console && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(CONSOLE_BUILT): $(CONSOLE_MODULES) $(CONSOLE_SOURCES)
	cd console && npm run --silent build -- --logLevel warn

# Debian's chromium package when it is missing (CI runs as root; elsewhere run this with sudo).
browser:
	@test -x $(CHROMIUM) || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@$(CHROMIUM) --version

$(STAMP): pyproject.toml constraints.txt functions/requirements.txt gpu_container/requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[lambda,engine,dev]"
	touch $(STAMP)

demo: setup
	$(BIN)/reconflow demo

test: setup browser
	$(BIN)/pytest

# The functions' unit tests under the runtime that deploys, in a venv of the bundle's pins only.
$(LAMBDA_VENV)/.installed: functions/requirements.txt requirements-lambda-test.txt constraints.txt
	rm -rf $(LAMBDA_VENV)
	$(LAMBDA_PYTHON) -m venv $(LAMBDA_VENV)
	$(LAMBDA_VENV)/bin/pip install --quiet --upgrade pip
	$(LAMBDA_VENV)/bin/pip install --quiet -c constraints.txt -r requirements-lambda-test.txt
	touch $@

test-lambda: $(LAMBDA_VENV)/.installed
	PYTHONPATH=functions $(LAMBDA_VENV)/bin/python -c 'import sys; assert sys.version_info[:2] == (3, 13), sys.version'
	PYTHONPATH=functions $(LAMBDA_VENV)/bin/pytest -q -p no:cacheprovider $(LAMBDA_TESTS)

test-localstack: setup
	bash scripts/localstack.sh test

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	bash scripts/lint-docker.sh
	bash scripts/lint-infra.sh

bench: setup
	$(BIN)/python bench/cold_start_and_purge.py
	$(BIN)/python bench/cancel_stop.py

gpu-kit: setup
	rm -rf $(GPU_KIT) && mkdir -p $(GPU_KIT)/wheels
	$(BIN)/pip download --quiet --no-deps --only-binary=:all: --implementation cp \
	    --python-version $(GPU_PYTHON) $(addprefix --platform ,$(GPU_PLATFORMS)) -d $(GPU_KIT)/wheels \
	    $(foreach name,$(GPU_KIT_WHEELS),$(shell grep -E '^$(name)==' gpu_container/requirements.txt))
	cp -r ../shared/data/spot $(GPU_KIT)/spot
	du -sh $(GPU_KIT)

clean:
	rm -rf $(GPU_KIT) $(VENV) $(LAMBDA_VENV) .venv-tools .venv-localstack .pytest_cache .ruff_cache .aws-sam console/node_modules console/dist
