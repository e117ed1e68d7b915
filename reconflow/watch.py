"""Following a job on screen: a live bar on a terminal, one line per change when piped.

What is shown only moves forward: an answer that is older than what is on screen (a status
earlier in the job's life, an earlier stage, less progress) is not drawn. On a terminal the bar
keeps one width whatever the message; when stdout is a file or a pipe (``make demo | tee``) each
status or stage change prints a line at once, and progress in between prints at most one line
every ``WatchSettings.line_interval_s``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Column
from rich.text import Text

from jobstate.stages import STAGES
from jobstate.statuses import CANCELLED, CANCELLING, CREATED, FAILED, QUEUED, RUNNING, SUCCEEDED, TERMINAL
from reconflow.client import ReconFlowClient

# Where a status sits in a job's life; the three terminal ones are equally far.
STATUS_RANK: dict[str, int] = {
    CREATED: 0,
    QUEUED: 1,
    RUNNING: 2,
    CANCELLING: 3,
    SUCCEEDED: 4,
    FAILED: 4,
    CANCELLED: 4,
}


@dataclass(frozen=True)
class WatchSettings:
    # Seconds between two status polls while watching a job.
    poll_interval_s: float = 0.5
    # Give up watching after this long (the job itself keeps running).
    timeout_s: float = 3600.0
    # Line mode (stdout not a terminal): at most one progress line per this many seconds
    # (a status or stage change always prints at once).
    line_interval_s: float = 5.0
    # Terminal mode: fixed widths, in characters, of the label, the bar and the message.
    label_width: int = 22
    bar_width: int = 30
    message_width: int = 44


@dataclass(frozen=True)
class Shown:
    """The job as the screen shows it."""

    status: str
    stage: str | None
    stage_index: int
    progress: float
    message: str

    @classmethod
    def of(cls, job: dict[str, Any]) -> Shown:
        return cls(
            status=str(job.get("status", "?")),
            stage=job.get("stage") or None,
            stage_index=int(job.get("stage_index") or 0),
            progress=float(job.get("progress") or 0.0),
            message=" ".join(str(job.get("message") or "").split()),  # one line, whatever was sent
        )

    @property
    def order(self) -> tuple[int, int, float]:
        return STATUS_RANK.get(self.status, 0), self.stage_index, self.progress

    @property
    def label(self) -> str:
        if self.status in TERMINAL or not self.stage:
            return self.status
        return f"{self.stage} ({self.stage_index}/{len(STAGES)})"


class JobView:
    """The furthest state seen of one job: ``advance`` ignores any answer behind it."""

    def __init__(self) -> None:
        self.shown: Shown | None = None

    def advance(self, job: dict[str, Any]) -> Shown | None:
        """The state to draw when ``job`` changes what is shown; None when it changes nothing."""
        seen = Shown.of(job)
        if self.shown is not None and (seen.order < self.shown.order or seen == self.shown):
            return None
        self.shown = seen
        return seen


class Reporter(Protocol):
    def __enter__(self) -> Reporter: ...
    def __exit__(self, *exc: object) -> None: ...
    def show(self, previous: Shown | None, shown: Shown) -> None: ...


@dataclass
class LineReporter:
    """Line mode: a line per status or stage change, progress lines at most every ``interval_s``."""

    console: Console
    interval_s: float
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self._started = self.clock()
        self._last_line: float | None = None

    def __enter__(self) -> LineReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def show(self, previous: Shown | None, shown: Shown) -> None:
        now = self.clock()
        changed = previous is None or (previous.status, previous.stage) != (shown.status, shown.stage)
        due = self._last_line is None or now - self._last_line >= self.interval_s
        if not changed and not due:
            return
        self._last_line = now
        elapsed = now - self._started
        line = f"{elapsed:6.0f}s  {shown.label:<18} {shown.progress:5.1f}%  {shown.message}".rstrip()
        self.console.print(Text(line), soft_wrap=True, highlight=False)


class BarReporter:
    """Terminal mode: one rich progress bar of fixed width, named after the stage."""

    def __init__(self, console: Console, settings: WatchSettings) -> None:
        def fixed(width: int) -> Column:
            return Column(width=width, min_width=width, no_wrap=True, overflow="ellipsis")

        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[label]}", table_column=fixed(settings.label_width)),
            BarColumn(bar_width=settings.bar_width),
            TaskProgressColumn(table_column=fixed(5)),
            TextColumn("{task.fields[message]}", markup=False, table_column=fixed(settings.message_width)),
            TimeElapsedColumn(),
            console=console,
            expand=False,
        )
        self._task = self._progress.add_task("", total=100, label="", message="", start=True)

    def __enter__(self) -> BarReporter:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def show(self, previous: Shown | None, shown: Shown) -> None:
        self._progress.update(self._task, completed=shown.progress, label=shown.label, message=shown.message)

    @property
    def progress(self) -> Progress:
        return self._progress


def reporter_for(console: Console, settings: WatchSettings) -> Reporter:
    """The bar on a terminal, lines anywhere else."""
    if console.is_terminal:
        return BarReporter(console, settings)
    return LineReporter(console, settings.line_interval_s)


def watch_job(
    client: ReconFlowClient,
    job_id: str,
    console: Console,
    *,
    settings: WatchSettings | None = None,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Poll the job until it is terminal, showing each step forward; returns the final job."""
    settings = settings or WatchSettings()
    deadline = time.monotonic() + settings.timeout_s
    view = JobView()
    with reporter or reporter_for(console, settings) as shown_on:
        while True:
            job = client.get_job(job_id)
            previous = view.shown
            step = view.advance(job)
            if step is not None:
                shown_on.show(previous, step)
            if job.get("status") in TERMINAL:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.get('status')} after {settings.timeout_s:.0f} s")
            time.sleep(settings.poll_interval_s)
