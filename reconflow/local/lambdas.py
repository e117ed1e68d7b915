"""Run the real Lambda handlers in this process, the way the Lambda runtime would call them.

moto without Docker never runs a function's code (``LambdaSimpleBackend.invoke`` echoes the
payload). ``LambdaRuntime.patch_moto`` replaces that one method so that a function deployed from
the template (``Handler: handlers.cleanup.handler``) runs the imported handler with the payload:
the state machine's Lambda tasks then reach the real cleanup code. A handler that raises answers
like Lambda does: ``X-Amz-Function-Error: Unhandled`` and ``{"errorType", "errorMessage"}``, so the
interpreter's Catch sees the error name.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import sys
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

LOG = logging.getLogger(__name__)
Handler = Callable[[Any, Any], Any]


@dataclass
class LambdaContext:
    """What powertools and handlers read from the runtime's context object."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    timeout_s: float = 900.0
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"

    def get_remaining_time_in_millis(self) -> int:
        return int(self.timeout_s * 1000)


@dataclass(frozen=True)
class FunctionError:
    """A handler raised: the payload Lambda would return for it."""

    error_type: str
    message: str
    stack: list[str]

    def payload(self) -> dict[str, Any]:
        return {"errorType": self.error_type, "errorMessage": self.message, "stackTrace": self.stack}


def load_handler(handler_path: str) -> Handler:
    """``"handlers.api.handler"`` -> the function object (imported once by Python's module cache)."""
    module_name, _, attribute = handler_path.rpartition(".")
    if not module_name:
        raise ValueError(f"handler {handler_path!r} is not module.function")
    return getattr(importlib.import_module(module_name), attribute)


class _FunctionOutput(io.TextIOBase):
    """``sys.stdout`` while the stack runs: what a handler prints (its JSON logs, EMF metrics) goes to
    the functions' log file, as it would go to CloudWatch Logs; everything else to the console."""

    def __init__(self, console: TextIO, log: TextIO, in_handler: threading.local) -> None:
        self.console, self.log, self.in_handler = console, log, in_handler

    def write(self, text: str) -> int:
        target = self.log if getattr(self.in_handler, "active", False) else self.console
        return target.write(text)

    def flush(self) -> None:
        self.console.flush()
        self.log.flush()

    def isatty(self) -> bool:
        return self.console.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.console, "encoding", "utf-8")

    def fileno(self) -> int:
        return self.console.fileno()


@dataclass
class LambdaRuntime:
    """Calls handlers by their template ``Handler`` string; counts invocations per handler."""

    region: str = "us-east-1"
    account_id: str = "123456789012"
    invocations: dict[str, int] = field(default_factory=dict)
    errors: list[tuple[str, FunctionError]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _in_handler: threading.local = field(default_factory=threading.local)
    # One lock per handler: like one warm Lambda instance, a function handles one event at a time.
    # Handler modules keep per-invocation state in globals (powertools' resolver sets
    # ``app.current_event``), so two threads inside one handler would read each other's requests.
    _instances: dict[str, threading.Lock] = field(default_factory=dict)

    def context_for(self, function_name: str) -> LambdaContext:
        arn = f"arn:aws:lambda:{self.region}:{self.account_id}:function:{function_name}"
        return LambdaContext(function_name=function_name, invoked_function_arn=arn)

    def invoke(self, handler_path: str, event: Any, function_name: str | None = None) -> Any:
        """Run the handler; exceptions propagate (callers that emulate Lambda use ``invoke_safely``)."""
        with self._lock:
            self.invocations[handler_path] = self.invocations.get(handler_path, 0) + 1
            instance = self._instances.setdefault(handler_path, threading.Lock())
        handler = load_handler(handler_path)
        with instance:
            self._in_handler.active = True
            try:
                return handler(event, self.context_for(function_name or handler_path.split(".")[-2]))
            finally:
                self._in_handler.active = False

    def invoke_safely(self, handler_path: str, event: Any, function_name: str | None = None) -> Any:
        """Like Lambda: the result, or a ``FunctionError`` describing what the handler raised."""
        try:
            return self.invoke(handler_path, event, function_name)
        except Exception as error:  # a Lambda function error is data for the caller, not a crash
            failure = FunctionError(type(error).__name__, str(error), traceback.format_exc().splitlines())
            LOG.warning("handler %s raised %s: %s", handler_path, failure.error_type, failure.message)
            with self._lock:
                self.errors.append((handler_path, failure))
            return failure

    @contextmanager
    def output_to(self, log_path: Path) -> Iterator[None]:
        """While active, whatever handlers print goes to ``log_path`` (appended), not the console."""
        console = sys.stdout
        with log_path.open("a", encoding="utf-8") as log:
            sys.stdout = _FunctionOutput(console, log, self._in_handler)
            try:
                yield
            finally:
                sys.stdout = console

    @contextmanager
    def patch_moto(self) -> Iterator[None]:
        """While active, moto's no-Docker Lambda ``invoke`` runs the deployed function's real handler."""
        from moto.awslambda_simple.models import LambdaSimpleBackend

        runtime = self
        original = LambdaSimpleBackend.invoke

        def invoke(
            backend: Any,
            function_name: str,
            qualifier: str | None,
            body: Any,
            headers: Any,
            response_headers: Any,
        ) -> bytes:
            function = backend.get_function(function_name, qualifier)
            event = json.loads(body) if body else {}
            result = runtime.invoke_safely(function.handler, event, function.function_name)
            if isinstance(result, FunctionError):
                response_headers["x-amz-function-error"] = "Unhandled"
                result = result.payload()
            payload = json.dumps(result, default=str).encode("utf-8")
            response_headers["Content-Length"] = str(len(payload))
            return payload

        LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]
        try:
            yield
        finally:
            LambdaSimpleBackend.invoke = original  # type: ignore[method-assign]
