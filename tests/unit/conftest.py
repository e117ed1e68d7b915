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
    """DynamoDB applies each request atomically and Step Functions starts an execution of a given
    name at most once; moto's backends do not lock, so concurrent requests are serialised here to
    model the real services (not our code)."""
    from moto.dynamodb.models import DynamoDBBackend
    from moto.stepfunctions.models import StepFunctionBackend
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    lock = threading.RLock()
    atomic_requests = [
        (
            DynamoDBBackend,
            ("update_item", "put_item", "get_item", "query", "delete_item", "transact_write_items"),
        ),
        (StepFunctionBackend, ("start_execution",)),
        (StepFunctionsParserBackend, ("start_execution",)),
    ]
    for backend, names in atomic_requests:
        for name in names:
            original = getattr(backend, name)

            def serialised(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
                with lock:
                    return _original(self, *args, **kwargs)

            monkeypatch.setattr(backend, name, serialised)
