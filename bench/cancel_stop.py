"""Benchmark: a cancel confirmed one second into each of the six stages, and the time until the work
stopped (goal: at most one second), on the local stack.

    .venv/bin/python bench/cancel_stop.py [--rounds N]    # prints and writes bench/cancel_stop.txt

For each stage and round a job is submitted through the HTTP API; once the job reports that stage
RUNNING (the runner's ``begin_stage``: the stage's first second as a user sees it), the bench
waits one second, requests a cancel and confirms it. Measured from the moment the confirm request
is sent: the runner's "stage stopped" record (its own clock) and the end of the stage process
(the executor sees it exit). The runner's stop watcher ends the process (exit code 3) within a
poll interval of the confirm whatever the engine is doing, so the figures are the same for a stage
that is still setting up and one deep in a loop. Stages run the ``tiny`` engine profile, so a job
reaches its later stages in seconds; each stage outlasts the one second before the cancel.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from pathlib import Path

from jobstate.stages import STAGE_NAMES
from reconflow.cli import make_sample_capture
from reconflow.client import ApiError, ReconFlowClient
from reconflow.local.probe import JobObserver, wait_until
from reconflow.local.stack import LocalStack, StackSettings

OUT = Path(__file__).with_suffix(".txt")
DEFAULT_ROUNDS = 2
CANCEL_AFTER_S = 1.0  # into the stage
GOAL_S = 1.0
VIEWS, SIZE = 24, 128
STAGE_TIMEOUT_S = 600


@dataclass(frozen=True)
class Sample:
    stage: str
    to_stopped_s: float | None  # confirm sent -> the runner's "stage stopped" record
    to_exited_s: float | None  # confirm sent -> the stage process exited (None: it was done before)
    exit_code: int | None
    status: str  # the job's final status
    work_s: float | None = None  # a stage done before the cancel came: its runner's seconds of work


def cancel_in(stack: LocalStack, client: ReconFlowClient, capture: Path, stage: str, name: str) -> Sample:
    created = client.create_job(preset="draft", name=name)
    observer = JobObserver(client, created["job_id"], interval_s=0.02).start()
    client.upload(created["upload"], capture)
    began = wait_until(
        lambda: observer.first(lambda seen: seen.stage == stage and seen.status == "RUNNING"),
        timeout_s=STAGE_TIMEOUT_S,
        interval_s=0.01,
    )
    time.sleep(max(0.0, began.at + CANCEL_AFTER_S - time.time()))
    run = wait_until(lambda: stack.executor.run_of(observer.job_id, stage), timeout_s=30)
    try:
        token = client.request_cancel(observer.job_id)["token"]
        sent = time.time()
        client.confirm_cancel(observer.job_id, token)
    except ApiError as error:  # the last stage's work was over and the job SUCCEEDED already
        if error.status != HTTPStatus.CONFLICT:
            raise
        wait_until(lambda: run.ended_at, timeout_s=60, interval_s=0.01)
        final = observer.wait(120)
        return Sample(stage, None, None, run.returncode, final["status"], stage_seconds(run.log_path))
    wait_until(lambda: run.ended_at, timeout_s=60, interval_s=0.01)
    final = observer.wait(120)
    stopped = run.stopped_at()
    if stopped is None:  # the stage's work was over before the cancel: nothing to stop
        return Sample(stage, None, None, run.returncode, final["status"], stage_seconds(run.log_path))
    return Sample(stage, stopped - sent, run.ended_at - sent, run.returncode, final["status"])


def stage_seconds(log_path: Path) -> float | None:
    """The runner's "stage done" seconds (work from begin_stage to the end of the upload)."""
    for line in log_path.read_text(errors="replace").splitlines():
        if '"stage done"' in line:
            return float(json.loads(line)["seconds"])
    return None


def report(samples: list[Sample], rounds: int) -> list[str]:
    lines = [
        "ReconFlow: cancel confirmed 1 s into each stage -> work stopped (local stack, engine profile tiny)",
        f"date: {datetime.now().isoformat(timespec='seconds')}  python {sys.version.split()[0]}",
        f"rounds: {rounds}",
        f"goal: confirm -> stage process ended <= {GOAL_S:.1f} s",
        "",
        f"    {'stage':12} {'-> stopped record':>18} {'-> process ended':>17}  exit  job      verdict",
    ]
    worst = 0.0
    for stage in STAGE_NAMES:
        mine = [s for s in samples if s.stage == stage]
        exited = [s.to_exited_s for s in mine if s.to_exited_s is not None]
        stopped = [s.to_stopped_s for s in mine if s.to_stopped_s is not None]
        if not exited:
            work = [s.work_s for s in mine if s.work_s is not None]
            lines.append(
                f"    {stage:12} the stage's work was done before the 1 s mark in every round "
                f"({', '.join(f'{w:.2f} s' for w in work)} of work): nothing left to stop"
            )
            continue
        worst = max(worst, *exited)
        verdict = "meets goal" if max(exited) <= GOAL_S else "OVER GOAL"
        codes = ",".join(str(s.exit_code) for s in mine)
        statuses = ",".join(sorted({s.status for s in mine}))
        lines.append(
            f"    {stage:12} {statistics.median(stopped) if stopped else float('nan'):16.2f} s "
            f"{statistics.median(exited):15.2f} s  {codes:5} {statuses:8} {verdict}"
            f"  (max {max(exited):.2f} s)"
        )
    lines += [
        "",
        f"worst of all: {worst:.2f} s; medians over the rounds, from the moment the confirm request was sent",
        "The stop watcher asks the table every STOP_POLL_INTERVAL_S (0.5 s) and ends the stage process with",
        "exit code 3; nothing is uploaded after that, and the cancel's purge removes what the stage left.",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    args = parser.parse_args(argv)
    samples: list[Sample] = []
    with tempfile.TemporaryDirectory(prefix="reconflow-bench-cancel-") as scratch:
        folder = Path(scratch)
        capture = make_sample_capture(folder / "capture.zip", ["--views", str(VIEWS), "--size", str(SIZE)])
        with LocalStack(StackSettings(work_dir=folder / "stack", engine_profile="tiny")) as stack:
            client = ReconFlowClient(api_url=stack.api_url)
            for round_index in range(args.rounds):
                for stage in STAGE_NAMES:
                    samples.append(cancel_in(stack, client, capture, stage, f"cancel-{stage}-{round_index}"))
                    wait_until(lambda: stack.executor.running() == 0, timeout_s=60)
    text = "\n".join(report(samples, args.rounds)) + "\n"
    print(text, end="")
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
