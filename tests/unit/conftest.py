"""Unit tests run with no network: sockets are blocked (moto's mock_aws needs none)."""

from __future__ import annotations

import pytest_socket


def pytest_runtest_setup(item) -> None:
    pytest_socket.disable_socket(allow_unix_socket=True)
