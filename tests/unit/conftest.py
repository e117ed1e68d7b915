"""Unit tests run with no network: sockets are blocked (moto's mock_aws needs none)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import pytest_socket


def pytest_runtest_setup(item) -> None:
    pytest_socket.disable_socket(allow_unix_socket=True)


@pytest.fixture
def atomic_moto_updates(monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB applies each request atomically; moto's backend does not lock, so concurrent
    requests are serialised here to model the real service (not our code)."""
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    for name in ("update_item", "put_item", "get_item", "query", "delete_item", "transact_write_items"):
        original = getattr(DynamoDBBackend, name)

        def serialised(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return _original(self, *args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, name, serialised)
