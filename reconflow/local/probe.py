"""Watching jobs from outside, through the API only: for the tests, the benchmark and the demo."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jobstate.stages import stage_named
from reconflow.client import TERMINAL_STATUSES, ReconFlowClient


def wait_until(predicate: Callable[[], Any], timeout_s: float, interval_s: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned); ``TimeoutError`` after the time."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout_s} s")
        time.sleep(interval_s)


@dataclass(frozen=True)
class Observation:
    at: float  # time.time() when the answer came
    status: str
    stage: str | None
    progress: float
    message: str


@dataclass
class JobObserver:
    """Polls ``GET /jobs/{id}`` on a thread and keeps every change it sees, until the job ends."""

    client: ReconFlowClient
    job_id: str
    interval_s: float = 0.1
    observations: list[Observation] = field(default_factory=list)
    final: dict[str, Any] | None = None
    error: Exception | None = None  # why the watch ended early (the API went away, say)
    _thread: threading.Thread | None = None
    _done: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _record(self, job: dict[str, Any]) -> None:
        seen = Observation(
            time.time(),
            job["status"],
            job.get("stage"),
            float(job.get("progress") or 0.0),
            str(job.get("message") or ""),
        )
        last = self.observations[-1] if self.observations else None
        if last is None or (last.status, last.stage, last.progress, last.message) != (
            seen.status,
            seen.stage,
            seen.progress,
            seen.message,
        ):
            self.observations.append(seen)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                job = self.client.get_job(self.job_id)
                self._record(job)
                if job["status"] in TERMINAL_STATUSES:
                    self.final = job
                    return
                self._stop.wait(self.interval_s)
        except Exception as error:  # e.g. the stack stopped under a job that never ended: the watch ends
            self.error = error
        finally:
            self._done.set()

    def start(self) -> JobObserver:
        self._thread = threading.Thread(target=self._run, name=f"observe-{self.job_id[:8]}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching a job that is not meant to end (before its stack stops)."""
        self._stop.set()
        self._done.wait(self.interval_s + 30)

    def wait(self, timeout_s: float) -> dict[str, Any]:
        """The final job body; ``TimeoutError`` if it did not end in time, ``RuntimeError`` if the
        watch itself failed (the API answered an error or went away)."""
        if self._done.wait(timeout_s) and self.final is None and self.error is not None:
            raise RuntimeError(f"watching job {self.job_id} failed: {self.error}") from self.error
        if self.final is None:
            raise TimeoutError(f"job {self.job_id} not finished within {timeout_s} s")
        return self.final

    def wait_inside(self, stage: str, timeout_s: float, interval_s: float = 0.1) -> Observation:
        """The first observation of ``stage`` reporting progress past the stage's start (its work loop
        is running); ``TimeoutError`` if none comes in time."""
        start = stage_named(stage).progress_start
        return wait_until(
            lambda: self.first(lambda seen: seen.stage == stage and seen.progress > start),
            timeout_s=timeout_s,
            interval_s=interval_s,
        )

    def first(self, predicate: Callable[[Observation], bool]) -> Observation | None:
        return next((seen for seen in self.observations if predicate(seen)), None)

    def statuses(self) -> list[str]:
        """Distinct statuses in the order first seen."""
        return list(dict.fromkeys(seen.status for seen in self.observations))

    def stages(self) -> list[str]:
        return list(dict.fromkeys(seen.stage for seen in self.observations if seen.stage))
