"""Benchmark: a cancel confirmed at every point of each of the six stages, and the time until the
stage's work stopped (goal: at most one second), on the local stack with the draft preset.

    .venv/bin/python bench/cancel_stop.py [--rounds N]    # prints and writes bench/cancel_stop.txt

A first job runs to the end uncancelled: it gives each stage's process lifetime (spawned by the
executor -> exited), start-up included. Then, for each stage and each point, a fresh job is
submitted through the HTTP API and cancelled (request + confirm) at that point of that stage's
process: at its start (the process spawned, Python and the runner still importing, the job not yet
moved to the stage) and at 20, 40, 60 and 80 % of the calibrated lifetime (downloads, engine
imports, set-up, the work loop, the upload). Measured from the moment the confirm request is
sent: the runner's "stage stopped" record (its own clock) and the end of the stage process (the
executor sees it exit). A stage process that ended before the confirm (a stage faster than this
run's calibration) is counted and named, not timed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
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
DEFAULT_ROUNDS = 1
POINTS = (0.0, 0.2, 0.4, 0.6, 0.8)  # fractions of a stage process's calibrated lifetime
GOAL_S = 1.0
PRESET = "draft"
VIEWS, SIZE = 24, 128
STAGE_TIMEOUT_S = 600


@dataclass(frozen=True)
class Sample:
    stage: str
    point: float  # fraction of the stage process's calibrated lifetime
    to_stopped_s: float | None  # confirm sent -> the runner's "stage stopped" record (None: none logged)
    to_exited_s: float | None  # confirm sent -> the stage process exited (None: it was done before)
    exit_code: int | None
    status: str  # the job's final status


def calibrate(stack: LocalStack, client: ReconFlowClient, capture: Path) -> dict[str, float]:
    """Each stage process's lifetime (spawn -> exit) in an uncancelled job."""
    created = client.create_job(preset=PRESET, name="cancel-calibration")
    observer = JobObserver(client, created["job_id"], interval_s=0.1).start()
    client.upload(created["upload"], capture)
    final = observer.wait(STAGE_TIMEOUT_S * len(STAGE_NAMES))
    if final["status"] != "SUCCEEDED":
        raise RuntimeError(f"calibration job ended {final['status']}: {final.get('error')}")
    lifetimes = {}
    for stage in STAGE_NAMES:
        run = wait_until(lambda stage=stage: stack.executor.run_of(observer.job_id, stage), timeout_s=30)
        ended = wait_until(lambda run=run: run.ended_at, timeout_s=60, interval_s=0.01)
        lifetimes[stage] = ended - run.started_at
    return lifetimes


def cancel_at(
    stack: LocalStack, client: ReconFlowClient, capture: Path, stage: str, point: float, lifetime_s: float
) -> Sample:
    """A job cancelled ``point`` of the way through ``stage``'s process (0: as soon as it is spawned)."""
    created = client.create_job(preset=PRESET, name=f"cancel-{stage}-{point:.1f}")
    job_id = created["job_id"]
    observer = JobObserver(client, job_id, interval_s=0.05).start()
    client.upload(created["upload"], capture)
    run = wait_until(
        lambda: stack.executor.run_of(job_id, stage), timeout_s=STAGE_TIMEOUT_S, interval_s=0.005
    )
    time.sleep(max(0.0, run.started_at + point * lifetime_s - time.time()))
    try:
        token = client.request_cancel(job_id)["token"]
        sent = time.time()
        client.confirm_cancel(job_id, token)
    except ApiError as error:  # the last stage's work was over and the job SUCCEEDED already
        if error.status != HTTPStatus.CONFLICT:
            raise
        sent = None
    wait_until(lambda: run.ended_at, timeout_s=60, interval_s=0.005)
    final = observer.wait(120)
    if sent is None or run.ended_at <= sent:  # the process was gone before the confirm: nothing to stop
        return Sample(stage, point, None, None, run.returncode, final["status"])
    stopped = run.stopped_at()
    return Sample(
        stage,
        point,
        None if stopped is None else stopped - sent,
        run.ended_at - sent,
        run.returncode,
        final["status"],
    )


def report(samples: list[Sample], rounds: int, lifetimes: dict[str, float]) -> list[str]:
    lines = [
        f"ReconFlow: cancel confirmed at {len(POINTS)} points of each stage -> work stopped "
        f"(local stack, preset {PRESET}, capture {VIEWS} views of {SIZE}²)",
        f"date: {datetime.now().isoformat(timespec='seconds')}  python {sys.version.split()[0]}  "
        f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}",
        f"rounds: {rounds}; points: {', '.join(f'{p:.0%}' for p in POINTS)} of the stage process's lifetime "
        "(0 % = just spawned, still importing)",
        f"goal: confirm -> stage process ended <= {GOAL_S:.1f} s at every point",
        "",
        f"    {'stage':12} {'lifetime':>8}  "
        + "  ".join(f"{p:>6.0%}" for p in POINTS)
        + "   worst  exit codes  verdict",
    ]
    worst = 0.0
    for stage in STAGE_NAMES:
        mine = [s for s in samples if s.stage == stage]
        cells = []
        for point in POINTS:
            exited = [s.to_exited_s for s in mine if s.point == point and s.to_exited_s is not None]
            cells.append(f"{max(exited):5.2f}s" if exited else "  done")
        timed = [s.to_exited_s for s in mine if s.to_exited_s is not None]
        stage_worst = max(timed, default=float("nan"))
        worst = max(worst, *timed) if timed else worst
        verdict = "meets goal" if timed and stage_worst <= GOAL_S else ("OVER GOAL" if timed else "not timed")
        codes = ",".join(sorted({str(s.exit_code) for s in mine if s.to_exited_s is not None}))
        lines.append(
            f"    {stage:12} {lifetimes[stage]:7.2f}s  "
            + "  ".join(cells)
            + f"  {stage_worst:5.2f}s  {codes:10}  {verdict}"
        )
    not_timed = sum(1 for s in samples if s.to_exited_s is None)
    statuses = Counter(s.status for s in samples if s.to_exited_s is not None)
    lines += [
        "",
        f"worst of all: {worst:.2f} s (each cell: the worst over the rounds, confirm sent -> process ended); "
        f"final statuses of the cancelled jobs: {dict(statuses)}",
        f"'done': the stage process had ended before the confirm ({not_timed} samples in all)",
        "A stage process stops by its stop watcher (asks the table every STOP_POLL_INTERVAL_S, 0.5 s, from",
        "the runner's first second: torch and the engine load after it starts), by begin_stage refusing a",
        "job being cancelled, or by the TerminateJob of the stopped execution (SIGTERM); exit code 3 either",
        "way, nothing is uploaded after it, and the cancel's purge removes what the stage left.",
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
        with LocalStack(StackSettings(work_dir=folder / "stack")) as stack:
            client = ReconFlowClient(api_url=stack.api_url)
            lifetimes = calibrate(stack, client, capture)
            for _ in range(args.rounds):
                for stage in STAGE_NAMES:
                    for point in POINTS:
                        samples.append(cancel_at(stack, client, capture, stage, point, lifetimes[stage]))
                        wait_until(lambda: stack.executor.running() == 0, timeout_s=60)
                        print(samples[-1], flush=True)
    text = "\n".join(report(samples, args.rounds, lifetimes)) + "\n"
    print(text, end="")
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
