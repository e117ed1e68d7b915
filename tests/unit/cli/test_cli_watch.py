"""Following a job: nothing moves backwards, piped output is line by line, the bar keeps its width."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import JOB_ID, ScriptedApi, job
from rich.console import Console

from reconflow.cli import ExitCode, main
from reconflow.watch import BarReporter, JobView, LineReporter, Shown, WatchSettings, reporter_for, watch_job

URL = "http://api.example.test"


def test_an_older_answer_never_moves_the_view_back() -> None:
    view = JobView()
    answers = [
        job("CREATED"),
        job("QUEUED"),
        job("CREATED"),  # a stale read
        job("RUNNING", "validate", 1, 5.0),
        job("RUNNING", "hull", 3, 30.0),
        job("RUNNING", "preprocess", 2, 20.0),  # older stage
        job("RUNNING", "hull", 3, 28.0),  # less progress
        job("RUNNING", "hull", 3, 30.0, message="carving"),  # same place, new message
        job("SUCCEEDED", "export", 6, 100.0),
    ]
    drawn = [shown for shown in map(view.advance, answers) if shown is not None]
    assert [(s.status, s.stage, s.progress) for s in drawn] == [
        ("CREATED", None, 0.0),
        ("QUEUED", None, 0.0),
        ("RUNNING", "validate", 5.0),
        ("RUNNING", "hull", 30.0),
        ("RUNNING", "hull", 30.0),
        ("SUCCEEDED", "export", 100.0),
    ]
    assert drawn[4].message == "carving"
    orders = [shown.order for shown in drawn]
    assert orders == sorted(orders)


def test_the_same_answer_twice_draws_nothing() -> None:
    view = JobView()
    assert view.advance(job("RUNNING", "hull", 3, 30.0)) is not None
    assert view.advance(job("RUNNING", "hull", 3, 30.0)) is None


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _lines(out: io.StringIO) -> list[str]:
    return out.getvalue().splitlines()


def test_piped_output_prints_each_stage_change_and_throttles_progress_lines() -> None:
    out, clock = io.StringIO(), FakeClock()
    reporter = LineReporter(Console(file=out, width=60), interval_s=5.0, clock=clock)
    view = JobView()
    timeline = [
        (0.0, job("QUEUED")),
        (1.0, job("RUNNING", "validate", 1, 2.0)),  # status change: at once
        (1.5, job("RUNNING", "validate", 1, 5.0)),  # progress 0.5 s later: held back
        (3.0, job("RUNNING", "validate", 1, 8.0)),  # still within 5 s of the last line: held back
        (6.5, job("RUNNING", "validate", 1, 9.0)),  # 5.5 s after the last line: printed
        (7.0, job("RUNNING", "preprocess", 2, 11.0)),  # stage change: at once
        (7.2, job("SUCCEEDED", "export", 6, 100.0)),  # status change: at once
    ]
    with reporter:
        for at, answer in timeline:
            clock.now = at
            previous = view.shown
            shown = view.advance(answer)
            if shown is not None:
                reporter.show(previous, shown)
    lines = _lines(out)
    assert [line.split()[1] for line in lines] == [
        "QUEUED",
        "validate",
        "validate",
        "preprocess",
        "SUCCEEDED",
    ]
    assert "9.0%" in lines[2]
    assert all("\x1b" not in line for line in lines)


def test_a_long_message_stays_on_one_line_when_piped() -> None:
    out = io.StringIO()
    reporter = LineReporter(Console(file=out, width=40), interval_s=5.0, clock=FakeClock())
    reporter.show(None, Shown.of(job("RUNNING", "reconstruct", 4, 50.0, message="level 2 of 2, " * 10)))
    assert len(_lines(out)) == 1


def _bar_width(message: str, label_stage: str = "hull") -> int:
    console = Console(file=io.StringIO(), width=200, force_terminal=True, color_system=None)
    reporter = BarReporter(console, WatchSettings())
    reporter.show(None, Shown.of(job("RUNNING", label_stage, 3, 33.0, message=message)))
    console.print(reporter.progress.make_tasks_table(reporter.progress.tasks))
    (line,) = [text for text in console.file.getvalue().splitlines() if text.strip()]
    return len(line.rstrip())


def test_the_bar_keeps_one_width_whatever_the_message_and_stage() -> None:
    widths = {
        _bar_width(""),
        _bar_width("x"),
        _bar_width("a message far longer than the column that shows it, cut with an ellipsis"),
        _bar_width("short", "reconstruct"),
    }
    assert len(widths) == 1


def test_watch_shows_the_first_answer_not_a_placeholder() -> None:
    api = ScriptedApi(
        {f"GET /jobs/{JOB_ID}": [job("CREATED"), job("QUEUED"), job("SUCCEEDED", "export", 6, 100)]}
    )
    out = io.StringIO()
    final = watch_job(api, JOB_ID, Console(file=out), settings=WatchSettings(poll_interval_s=0))
    assert final["status"] == "SUCCEEDED"
    assert [line.split()[1] for line in _lines(out)] == ["CREATED", "QUEUED", "SUCCEEDED"]


def test_submit_watch_piped_prints_lines_as_the_job_moves(
    scripted: dict[str, Any], capture: Path, capsys: pytest.CaptureFixture
) -> None:
    scripted["answers"]["POST /jobs"] = [{"job_id": JOB_ID, "status": "CREATED", "upload": {"url": "u"}}]
    scripted["answers"][f"GET /jobs/{JOB_ID}"] = [
        job("CREATED"),
        job("QUEUED"),
        *(
            job("RUNNING", name, index, progress)
            for index, (name, progress) in enumerate(
                [("validate", 5.0), ("preprocess", 15.0), ("hull", 30.0)], start=1
            )
        ),
        job("FAILED", "hull", 3, 30.0, error={"code": "stage_failed", "message": "hull: boom"}),
    ]
    assert main(["submit", str(capture), "--watch", "--api-url", URL]) == ExitCode.JOB_FAILED
    out = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)
    assert [line.split()[1] for line in out.splitlines() if re.match(r"\s*\d+s ", line)] == [
        "CREATED",
        "QUEUED",
        "validate",
        "preprocess",
        "hull",
        "FAILED",
    ]
    assert "stage_failed: hull: boom" in out


def test_a_terminal_gets_the_bar_and_anything_else_gets_lines() -> None:
    settings = WatchSettings()
    assert isinstance(reporter_for(Console(file=io.StringIO(), force_terminal=True), settings), BarReporter)
    assert isinstance(reporter_for(Console(file=io.StringIO()), settings), LineReporter)
