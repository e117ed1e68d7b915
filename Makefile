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

.PHONY: setup console browser demo test test-localstack lint bench clean

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

test-localstack: setup
	bash scripts/localstack.sh test

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	bash scripts/lint-docker.sh
	bash scripts/lint-infra.sh

bench: setup
	$(BIN)/python bench/cold_start_and_purge.py

clean:
	rm -rf $(VENV) .venv-tools .venv-localstack .pytest_cache .ruff_cache .aws-sam console/node_modules console/dist
