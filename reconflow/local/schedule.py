"""Scheduled invocations for the local stack (the template's ``Schedule`` events, run more often)."""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from reconflow.local.lambdas import LambdaRuntime

LOG = logging.getLogger(__name__)


def scheduled_event(
    rule_arn: str, region: str = "us-east-1", account: str = "123456789012"
) -> dict[str, Any]:
    """The event EventBridge Scheduler/rules send to a function on a schedule."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


@dataclass
class PeriodicInvoker:
    """Invokes ``handler`` every ``interval_s`` seconds on a thread until stopped."""

    runtime: LambdaRuntime
    handler: str
    function_name: str
    interval_s: float
    rule_arn: str = "arn:aws:events:us-east-1:123456789012:rule/local-schedule"
    runs: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.runtime.invoke_safely(self.handler, scheduled_event(self.rule_arn), self.function_name)
            self.runs += 1

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"schedule-{self.function_name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
