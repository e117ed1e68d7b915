"""Pipeline figures on the local stack (moto + the real handlers, ASL, stage runner and engine).

    .venv/bin/python bench/pipeline.py            # prints and writes bench/pipeline.txt

Measured, through the HTTP API unless said otherwise:
- upload -> first stage: the presigned upload returns -> the job's ``started_at`` (the validate
  stage's runner called ``begin_stage``); also upload -> QUEUED as the API reports it;
- cancel: confirm -> the stage's work stopped (the runner's "stage stopped" record) -> the stage
  process gone, and stopped -> purged (the job's ``finished_at``: CANCELLED is written after the
  purge); the cancel is confirmed once reconstruct's optimisation loop reports progress;
- DynamoDB write requests per job (PutItem, UpdateItem, DeleteItem, TransactWriteItems,
  BatchWriteItem counted in the emulated DynamoDB) for one job run alone;
- 10 jobs submitted at once: each capture has its own number of views, and each job's
  downloaded report.json must name that number (no job got another's outputs).

The stages run the ``tiny`` engine profile (smaller draft sizes, reconflow.local.engine_profile)
so the figures are about the pipeline, not the reconstruction; bench/reconstruction.py measures
the engine. The machine is shared and noisy: medians over the runs are reported.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import requests

from reconflow.cli import make_sample_capture
from reconflow.client import ReconFlowClient
from reconflow.local.probe import JobObserver, wait_until
from reconflow.local.stack import LocalStack, StackSettings

OUT = Path(__file__).with_suffix(".txt")
LATENCY_RUNS = 3
CANCEL_RUNS = 3
CONCURRENT_JOBS = 10
BASE_VIEWS = 8  # job k of the concurrent batch has BASE_VIEWS + k views
SIZE = 64
JOB_TIMEOUT_S = 900
WRITE_OPERATIONS = ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item")


def iso_seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@dataclass
class WriteCounter:
    """Counts DynamoDB write requests served by the in-process moto server."""

    count: int = 0

    @contextmanager
    def installed(self) -> Iterator[None]:
        from moto.dynamodb.responses import DynamoHandler

        lock = threading.Lock()
        originals = {name: getattr(DynamoHandler, name) for name in WRITE_OPERATIONS}

        def counting(original):
            def method(handler, *args, **kwargs):
                with lock:
                    self.count += 1
                return original(handler, *args, **kwargs)

            return method

        for name, original in originals.items():
            setattr(DynamoHandler, name, counting(original))
        try:
            yield
        finally:
            for name, original in originals.items():
                setattr(DynamoHandler, name, original)


def capture_with(views: int, folder: Path) -> Path:
    return make_sample_capture(folder / f"capture-{views}.zip", ["--views", str(views), "--size", str(SIZE)])


def submit_observed(client: ReconFlowClient, capture: Path, name: str) -> tuple[JobObserver, float]:
    created = client.create_job(preset="draft", name=name)
    observer = JobObserver(client, created["job_id"], interval_s=0.05).start()
    client.upload(created["upload"], capture)
    return observer, time.time()


def measure_latency_and_writes(
    stack: LocalStack, client: ReconFlowClient, capture: Path, counter: WriteCounter
):
    to_queued, to_first_stage, writes = [], [], []
    for index in range(LATENCY_RUNS):
        before = counter.count
        observer, uploaded = submit_observed(client, capture, f"latency-{index}")
        final = observer.wait(JOB_TIMEOUT_S)
        assert final["status"] == "SUCCEEDED", final
        queued = observer.first(lambda seen: seen.status == "QUEUED") or observer.first(
            lambda seen: seen.status == "RUNNING"
        )
        to_queued.append(queued.at - uploaded)
        to_first_stage.append(iso_seconds(final["started_at"]) - uploaded)
        wait_until(lambda: stack.executor.running() == 0, timeout_s=60)
        writes.append(counter.count - before)
    return to_queued, to_first_stage, writes


def cancel_once(
    stack: LocalStack, client: ReconFlowClient, capture: Path, name: str
) -> tuple[float, float, float]:
    """One job cancelled in reconstruct's loop: (confirm -> stopped, confirm -> exited, stopped -> purged)."""
    observer, _ = submit_observed(client, capture, name)
    observer.wait_inside("reconstruct", timeout_s=JOB_TIMEOUT_S, interval_s=0.05)
    run = stack.executor.run_of(observer.job_id, "reconstruct")
    assert run is not None
    token = client.request_cancel(observer.job_id)["token"]
    confirmed = time.time()
    client.confirm_cancel(observer.job_id, token)
    final = observer.wait(120)
    assert final["status"] == "CANCELLED", final
    wait_until(lambda: run.ended_at, timeout_s=60)
    stopped = run.stopped_at()
    assert stopped is not None, run.log_path
    bucket = stack.resource("DataBucket")
    listing = stack.client("s3").list_object_versions(Bucket=bucket, Prefix=f"jobs/{observer.job_id}/")
    assert not listing.get("Versions"), "purge left object versions"
    assert not listing.get("DeleteMarkers"), "purge left delete markers"
    return stopped - confirmed, run.ended_at - confirmed, iso_seconds(final["finished_at"]) - stopped


def measure_cancel(stack: LocalStack, client: ReconFlowClient, capture: Path):
    runs = [cancel_once(stack, client, capture, f"cancel-{index}") for index in range(CANCEL_RUNS)]
    return [r[0] for r in runs], [r[1] for r in runs], [r[2] for r in runs]


def measure_concurrent(client: ReconFlowClient, folder: Path) -> tuple[float, int, list[str]]:
    captures = {BASE_VIEWS + k: capture_with(BASE_VIEWS + k, folder) for k in range(CONCURRENT_JOBS)}
    started = time.time()
    observers = {
        views: submit_observed(client, path, f"batch-{views}")[0] for views, path in captures.items()
    }
    problems: list[str] = []
    for views, observer in observers.items():
        final = observer.wait(JOB_TIMEOUT_S)
        if final["status"] != "SUCCEEDED":
            problems.append(f"{observer.job_id}: {final['status']} {final.get('error')}")
            continue
        report = requests.get(final["downloads"]["report.json"], timeout=60).json()
        if report["views"]["total"] != views:
            problems.append(f"{observer.job_id}: report names {report['views']['total']} views, sent {views}")
        prefix = f"jobs/{observer.job_id}/output/"
        if not all(key.startswith(prefix) for key in final["result"].values()):
            problems.append(f"{observer.job_id}: result outside its own prefix")
    succeeded = sum(1 for o in observers.values() if o.final and o.final["status"] == "SUCCEEDED")
    return time.time() - started, succeeded, problems


def fmt(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} s (runs: {', '.join(f'{v:.2f}' for v in values)})"


def main() -> int:
    counter = WriteCounter()
    with tempfile.TemporaryDirectory(prefix="reconflow-bench-") as scratch:
        folder = Path(scratch)
        capture = capture_with(12, folder)
        settings = StackSettings(work_dir=folder / "stack", engine_profile="tiny")
        with counter.installed(), LocalStack(settings) as stack:
            client = ReconFlowClient(api_url=stack.api_url)
            to_queued, to_first_stage, writes = measure_latency_and_writes(stack, client, capture, counter)
            to_stopped, to_exit, to_purged = measure_cancel(stack, client, capture)
            batch_seconds, succeeded, problems = measure_concurrent(client, folder)
    lines = [
        "ReconFlow pipeline on the local stack",
        "(moto 5.2.5; the real handlers, ASL, stage runner and engine; engine profile tiny)",
        f"date: {datetime.now().isoformat(timespec='seconds')}  python {sys.version.split()[0]}",
        "",
        f"upload -> QUEUED (S3 event -> upload handler -> StartExecution):  {fmt(to_queued)}",
        f"upload -> first stage started (validate runner's begin_stage):    {fmt(to_first_stage)}",
        f"cancel confirm -> stage work stopped (runner's record):           {fmt(to_stopped)}",
        f"cancel confirm -> stage process exited:                           {fmt(to_exit)}",
        f"stage stopped -> prefix purged, job CANCELLED:                    {fmt(to_purged)}",
        f"DynamoDB write requests per job (one job alone, SUCCEEDED):       {statistics.median(writes):.0f} "
        f"(runs: {', '.join(str(w) for w in writes)})",
        f"{CONCURRENT_JOBS} jobs submitted at once (draft): {succeeded}/{CONCURRENT_JOBS} SUCCEEDED in "
        f"{batch_seconds:.1f} s; each report.json names its own capture's view count: "
        f"{'yes' if not problems else 'NO'}",
        *[f"  problem: {problem}" for problem in problems],
        "",
        "Stage processes start a Python interpreter with torch each (~2 s CPU here); the machine's 2 cores",
        "are shared, so absolute seconds drift between runs.",
    ]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    OUT.write_text(text)
    return 0 if not problems and succeeded == CONCURRENT_JOBS else 1


if __name__ == "__main__":
    sys.exit(main())
