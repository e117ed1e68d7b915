# ReconFlow developer commands. `make demo` and `make test` set up the venv first when needed.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# The Lambda runtime's Python (template.yaml: python3.13) for `make test-lambda`.
LAMBDA_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13) python3.13)
LAMBDA_VENV   := .venv-lambda313
# The tests that need only the Lambda bundle (no torch, engine, CLI or local stack).
LAMBDA_TESTS  := tests/unit/handlers tests/unit/jobstate tests/fuzz/test_fuzz_api.py \
                 tests/fuzz/test_fuzz_upload_events.py tests/fuzz/test_fuzz_cleanup_events.py

.PHONY: setup demo test test-lambda test-localstack lint bench clean

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

clean:
	rm -rf $(VENV) $(LAMBDA_VENV) .venv-tools .venv-localstack .pytest_cache .ruff_cache .aws-sam
