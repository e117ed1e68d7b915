"""Step Functions "Execution Status Change" events for the local stack.

AWS puts one on the default event bus whenever an execution changes status; moto's interpreter
does not. ``ExecutionStatusEvents`` polls the state machine's executions and puts the same event
(source ``aws.states``) for every change it sees, so the template's rule and its pattern decide
what reaches the cleanup function, as in AWS.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

LOG = logging.getLogger(__name__)
DETAIL_TYPE = "Step Functions Execution Status Change"
SOURCE = "aws.states"


def _millis(value: Any) -> int | None:
    return int(value.timestamp() * 1000) if isinstance(value, datetime) else None


def status_change_entry(execution: dict[str, Any]) -> dict[str, Any]:
    """The PutEvents entry for ``execution`` (a DescribeExecution answer)."""
    detail = {
        "executionArn": execution["executionArn"],
        "stateMachineArn": execution["stateMachineArn"],
        "name": execution["name"],
        "status": execution["status"],
        "startDate": _millis(execution.get("startDate")),
        "stopDate": _millis(execution.get("stopDate")),
        "input": execution.get("input"),
        "output": execution.get("output"),
        "error": execution.get("error"),
        "cause": execution.get("cause"),
    }
    return {
        "Source": SOURCE,
        "DetailType": DETAIL_TYPE,
        "Detail": json.dumps(detail),
        "Resources": [execution["executionArn"]],
        "EventBusName": "default",
    }


@dataclass
class ExecutionStatusEvents:
    stepfunctions: Any
    events: Any
    state_machine_arn: str
    # Seconds between two looks at the executions' statuses.
    interval_s: float = 0.5
    sent: list[tuple[str, str]] = field(default_factory=list)  # (execution name, status)
    _seen: dict[str, str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def poll_once(self) -> None:
        paginator = self.stepfunctions.get_paginator("list_executions")
        for page in paginator.paginate(stateMachineArn=self.state_machine_arn):
            for summary in page["executions"]:
                arn, status = summary["executionArn"], summary["status"]
                if self._seen.get(arn) == status:
                    continue
                execution = self.stepfunctions.describe_execution(executionArn=arn)
                self.events.put_events(Entries=[status_change_entry(execution)])
                self._seen[arn] = execution["status"]
                self.sent.append((execution["name"], execution["status"]))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll_once()
            except Exception as error:  # keep watching; the next round sees the same changes
                if not self._stop.is_set():
                    LOG.warning("execution status poll failed: %s", error)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="sfn-status-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
