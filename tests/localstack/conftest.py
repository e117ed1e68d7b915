"""The LocalStack suite: collected only when ``LOCALSTACK_ENDPOINT`` is set.

``scripts/localstack.sh test`` starts LocalStack (and the moto server it keeps its DynamoDB
tables in), sets the variable and runs this folder. Without the variable nothing here is
collected, so ``pytest`` (testpaths = tests) does not see these tests at all, and
``pytest tests/localstack`` alone ends with "no tests ran" (exit 5) rather than a silent skip.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ENDPOINT_VARIABLE = "LOCALSTACK_ENDPOINT"

if not os.environ.get(ENDPOINT_VARIABLE):
    collect_ignore_glob = ["test_*.py"]

UNIT_DIR = Path(__file__).resolve().parents[1] / "unit"
for shared in (UNIT_DIR, UNIT_DIR / "handlers"):  # aws_fixtures, handler_helpers
    if str(shared) not in sys.path:
        sys.path.insert(0, str(shared))

from localstack_world import LocalStackWorld, connect  # noqa: E402


@pytest.fixture(scope="session")
def localstack() -> Iterator[LocalStackWorld]:
    with pytest.MonkeyPatch.context() as patch:
        world = connect(os.environ[ENDPOINT_VARIABLE], patch)
        yield world
        world.close()
