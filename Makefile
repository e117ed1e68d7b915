# ReconFlow developer commands. `make demo` and `make test` set up the venv first when needed.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-localstack lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt functions/requirements.txt gpu_container/requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[lambda,engine,dev]"
	touch $(STAMP)

demo: setup
	$(BIN)/reconflow demo

test: setup
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
	rm -rf $(VENV) .venv-tools .venv-localstack .pytest_cache .ruff_cache .aws-sam
