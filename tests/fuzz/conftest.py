"""Fuzz tests: hypothesis over the inputs that come from outside (captures, API requests, S3 events).

They run in the default ``pytest`` run with a bounded number of examples (settings below) and
no network: sockets are blocked as in the unit tests. The shared fixtures of ``tests/unit``
(moto resources, capture fixtures, the example ids of ``events/``) are imported from there.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest_socket

TESTS_DIR = Path(__file__).resolve().parents[1]
for shared in (TESTS_DIR / "unit", TESTS_DIR / "unit" / "handlers"):
    if str(shared) not in sys.path:
        sys.path.insert(0, str(shared))

from fuzz_world import fuzz_world  # noqa: E402,F401  (the fixture, shared by the handler fuzzers)


def pytest_runtest_setup(item) -> None:
    pytest_socket.disable_socket(allow_unix_socket=True)
