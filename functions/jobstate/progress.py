"""Throttled progress reports of one stage: at most one write per interval, first and last always."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from jobstate.stages import Stage, stage_named


class ProgressWriter(Protocol):
    def report_progress(self, job_id: str, progress: float, message: str) -> bool: ...


class ThrottledProgress:
    """``on_progress(fraction, message)`` for a stage: maps the stage fraction onto job progress.

    The first report of the stage and a report of fraction 1.0 always write; others write only
    when ``min_interval_s`` has passed since the last write. Returns whether it wrote;
    ``refused`` turns true once the store refused a write (the job is no longer RUNNING).
    """

    def __init__(
        self,
        store: ProgressWriter,
        job_id: str,
        stage_name: str,
        *,
        min_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min_interval_s < 0:
            raise ValueError("min_interval_s must not be negative")
        self.store = store
        self.job_id = job_id
        self.stage: Stage = stage_named(stage_name)
        self.min_interval_s = min_interval_s
        self._clock = clock
        self._last_write_at: float | None = None
        self.writes = 0
        self.refused = False

    def __call__(self, fraction: float, message: str = "") -> bool:
        now = self._clock()
        first = self._last_write_at is None
        last = fraction >= 1.0
        due = first or last or now - self._last_write_at >= self.min_interval_s
        if not due:
            return False
        self._last_write_at = now
        self.writes += 1
        written = self.store.report_progress(self.job_id, self.stage.job_progress(fraction), message)
        self.refused = self.refused or not written
        return written
