"""Deliver the template's EventBridge rules to the real handlers: rule → SQS → poller → handler.

moto evaluates EventBridge rules (patterns with ``wildcard`` included) but delivers to SQS, not to
Lambda. So each rule the template points at a function gets a local queue as its target in place
of the function, the template's own pattern unchanged, and a poller thread hands every message to
the function's real handler in this process, as Lambda's asynchronous invocation would. A handler
that raises is retried like an asynchronous invocation (``max_attempts`` in all) and then dropped
with the error kept on ``failures``.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from reconflow.local.lambdas import FunctionError, LambdaRuntime

LOG = logging.getLogger(__name__)
QUEUE_PREFIX = "reconflow-local-"
MAX_QUEUE_NAME = 80  # SQS's limit


@dataclass(frozen=True)
class PollerSettings:
    # Long-poll wait per ReceiveMessage call (seconds): bounds delivery latency and stop time.
    wait_time_s: int = 1
    # Messages fetched per call.
    batch_size: int = 10
    # Attempts per event before it is dropped (Lambda's asynchronous invocation makes 3).
    max_attempts: int = 3


@dataclass(frozen=True)
class Route:
    """Events arriving on ``queue_url`` go to ``handler`` (the template's ``Handler`` string)."""

    name: str
    queue_url: str
    handler: str
    function_name: str


def ensure_queue(sqs: Any, name: str) -> tuple[str, str]:
    """Create (or find) the local queue ``reconflow-local-{name}``; its URL and ARN."""
    url = sqs.create_queue(QueueName=f"{QUEUE_PREFIX}{name}"[:MAX_QUEUE_NAME])["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def detach_function(events: Any, rule_name: str, function_arn: str, event_bus: str = "default") -> None:
    """Remove the rule's targets that are ``function_arn`` (the stack delivers to it instead).

    moto can deliver only to SQS, logs and buses; a Lambda target makes a matching event fail for
    every target of the rule, and moto matches every event against a schedule rule (no pattern).
    """
    targets = events.list_targets_by_rule(Rule=rule_name, EventBusName=event_bus)["Targets"]
    ids = [target["Id"] for target in targets if target["Arn"] == function_arn]
    if ids:
        events.remove_targets(Rule=rule_name, EventBusName=event_bus, Ids=ids)


def route_rule_to_queue(
    events: Any,
    sqs: Any,
    rule_name: str,
    function: tuple[str, str, str],
    event_bus: str = "default",
    queue_name: str | None = None,
) -> Route:
    """Swap the deployed rule's target ``function`` = (arn, name, handler) for a local SQS queue.

    The rule and its pattern stay the template's.
    """
    function_arn, function_name, handler = function
    url, arn = ensure_queue(sqs, queue_name or rule_name)
    detach_function(events, rule_name, function_arn, event_bus)
    events.put_targets(
        Rule=rule_name, EventBusName=event_bus, Targets=[{"Id": f"local-{function_name}"[:64], "Arn": arn}]
    )
    return Route(rule_name, url, handler, function_name)


@dataclass
class NotificationPoller:
    """One thread per route: receive, invoke the handler, delete (or retry, then drop)."""

    sqs: Any
    runtime: LambdaRuntime
    routes: list[Route]
    settings: PollerSettings = field(default_factory=PollerSettings)
    delivered: dict[str, int] = field(default_factory=dict)
    failures: list[tuple[str, FunctionError]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        for route in self.routes:
            thread = threading.Thread(
                target=self._poll, args=(route,), name=f"notify-{route.name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.settings.wait_time_s + 5)
        self._threads.clear()

    def _poll(self, route: Route) -> None:
        while not self._stop.is_set():
            try:
                answer = self.sqs.receive_message(
                    QueueUrl=route.queue_url,
                    MaxNumberOfMessages=self.settings.batch_size,
                    WaitTimeSeconds=self.settings.wait_time_s,
                    AttributeNames=["ApproximateReceiveCount"],
                )
            except Exception as error:  # the server is going away; stop quietly when asked to
                if not self._stop.is_set():
                    LOG.warning("polling %s failed: %s", route.name, error)
                    self._stop.wait(self.settings.wait_time_s)
                continue
            for message in answer.get("Messages", []):
                self._deliver(route, message)

    def _deliver(self, route: Route, message: dict[str, Any]) -> None:
        event = json.loads(message["Body"])
        result = self.runtime.invoke_safely(route.handler, event, route.function_name)
        attempts = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        if isinstance(result, FunctionError) and attempts < self.settings.max_attempts:
            self.sqs.change_message_visibility(
                QueueUrl=route.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
            return
        with self._lock:
            self.delivered[route.name] = self.delivered.get(route.name, 0) + 1
            if isinstance(result, FunctionError):
                self.failures.append((route.name, result))
        self._delete(route, message)

    def _delete(self, route: Route, message: dict[str, Any]) -> None:
        self.sqs.delete_message(QueueUrl=route.queue_url, ReceiptHandle=message["ReceiptHandle"])
