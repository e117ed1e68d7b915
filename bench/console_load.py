"""The web console's first load and its polling, in headless Chromium against the local stack.

    .venv/bin/python bench/console_load.py        # prints and writes bench/console_load.txt

Measured (goals from issue 13: first load under a second; at most one status request per job
every two seconds while watching):
- first load of the jobs list, a fresh browser context (empty cache) each run: navigation start ->
  the first page of jobs drawn in the table (20 jobs listed), and the bytes the browser fetched;
- first load of a finished job's page: navigation start -> the model drawn in the 3D viewer
  (the job page, three.js's chunk, the job, the GLB through its presigned link);
- polling while a job page watches a running job, and while the jobs list is open: the requests
  per minute and the shortest gap between two starts (the page's own Resource Timing clock).

The stages run the ``tiny`` engine profile. The machine is shared: medians and maxima are reported.
"""

from __future__ import annotations

import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

from reconflow.cli import make_sample_capture
from reconflow.client import ReconFlowClient
from reconflow.local.browser import VIEWPORT, launch
from reconflow.local.probe import wait_until
from reconflow.local.stack import LocalStack, StackSettings

OUT = Path(__file__).with_suffix(".txt")
LOAD_RUNS = 9
LISTED_JOBS = 20  # one full page of the list
WATCH_S = 30.0
JOB_TIMEOUT_S = 600
FIRST_LOAD_GOAL_MS = 1000
POLL_INTERVAL_GOAL_MS = 2000
SAMPLE_VIEWS, SAMPLE_SIZE = 12, 64

ELAPSED_SINCE_NAVIGATION = "performance.now()"
BYTES_FETCHED = """["navigation", "resource"]
    .flatMap((kind) => performance.getEntriesByType(kind))
    .reduce((sum, entry) => sum + (entry.transferSize || 0), 0)"""
REQUEST_STARTS = """(path) => performance.getEntriesByType("resource")
    .filter((entry) => new URL(entry.name).pathname === path && entry.initiatorType === "fetch")
    .map((entry) => entry.startTime)"""


def first_load(browser, url: str, ready) -> tuple[float, int]:
    """(ms from navigation start to ``ready(page)``, bytes fetched) in a fresh context."""
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        page.goto(url)
        ready(page)
        return page.evaluate(ELAPSED_SINCE_NAVIGATION), page.evaluate(BYTES_FETCHED)
    finally:
        context.close()


def list_drawn(page: Page) -> None:
    page.get_by_role("table", name="Your jobs, newest first").get_by_role("row").nth(LISTED_JOBS).wait_for()


def model_drawn(page: Page) -> None:
    page.get_by_text("Model loaded").wait_for(timeout=60_000)


def polling(browser, url: str, path: str) -> tuple[float, float]:
    """(requests per minute to ``path``, first to last, and the shortest gap in ms) while the page
    at ``url`` is open."""
    context = browser.new_context(viewport=VIEWPORT)
    context.add_init_script("performance.setResourceTimingBufferSize(5000)")
    try:
        page = context.new_page()
        page.goto(url)
        time.sleep(WATCH_S)
        starts = page.evaluate(REQUEST_STARTS, path)
    finally:
        context.close()
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    if not gaps:
        return 0.0, float("inf")
    return 60_000.0 * len(gaps) / (starts[-1] - starts[0]), min(gaps)


def summary(values: list[float]) -> str:
    runs = ", ".join(f"{value:.0f}" for value in values)
    return f"median {statistics.median(values):.0f} ms, max {max(values):.0f} ms (runs: {runs})"


def main() -> int:
    lines = [
        "ReconFlow web console on the local stack",
        "(console/dist built by `make console`; Debian Chromium headless, SwiftShader WebGL;"
        " engine profile tiny)",
        f"date: {time.strftime('%Y-%m-%dT%H:%M:%S')}  python {sys.version.split()[0]}",
        "",
    ]
    settings = StackSettings(engine_profile="tiny", environment={"PROGRESS_MIN_INTERVAL_S": "0.2"})
    with (
        tempfile.TemporaryDirectory() as scratch,
        LocalStack(settings) as stack,
        sync_playwright() as playwright,
    ):
        client = ReconFlowClient(api_url=stack.api_url)
        capture = make_sample_capture(
            Path(scratch) / "sample.zip", ["--views", str(SAMPLE_VIEWS), "--size", str(SAMPLE_SIZE)]
        )
        finished = client.submit(capture, preset="draft", name="bench")
        wait_until(
            lambda: client.get_job(finished)["status"] == "SUCCEEDED", timeout_s=JOB_TIMEOUT_S, interval_s=1
        )
        for index in range(LISTED_JOBS):
            client.create_job(preset="draft", name=f"listed {index}")
        browser = launch(playwright)
        list_runs = [first_load(browser, stack.console_url, list_drawn) for _ in range(LOAD_RUNS)]
        job_runs = [
            first_load(browser, f"{stack.console_url}#/jobs/{finished}", model_drawn)
            for _ in range(LOAD_RUNS)
        ]
        list_ms = [ms for ms, _ in list_runs]
        job_ms = [ms for ms, _ in job_runs]
        met = "met" if statistics.median(list_ms) < FIRST_LOAD_GOAL_MS else "NOT met"
        lines += [
            f"first load, jobs list ({LISTED_JOBS} jobs drawn): {summary(list_ms)}",
            f"  {list_runs[0][1] / 1000:.0f} kB fetched",
            f"first load, finished job, model drawn: {summary(job_ms)}",
            f"  {job_runs[0][1] / 1000:.0f} kB fetched (three.js loads only with the viewer)",
            f"goal: the console's first load (the jobs list) under {FIRST_LOAD_GOAL_MS} ms (median): {met}",
            "",
        ]
        running = client.submit(capture, preset="draft", name="watched")
        wait_until(
            lambda: client.get_job(running)["status"] == "RUNNING", timeout_s=JOB_TIMEOUT_S, interval_s=0.5
        )
        per_minute, shortest = polling(browser, f"{stack.console_url}#/jobs/{running}", f"/jobs/{running}")
        list_per_minute, list_shortest = polling(browser, stack.console_url, "/jobs")
        met = "met" if per_minute <= 60_000 / POLL_INTERVAL_GOAL_MS else "NOT met"
        lines += [
            f"watching a running job for {WATCH_S:.0f} s: {per_minute:.1f} GET /jobs/{{id}} per minute,"
            f" shortest gap between two starts {shortest:.0f} ms",
            f"jobs list open for {WATCH_S:.0f} s: {list_per_minute:.1f} GET /jobs per minute (one for the"
            f" whole page), shortest gap {list_shortest:.0f} ms",
            f"goal: at most one status request per job every {POLL_INTERVAL_GOAL_MS} ms"
            f" ({60_000 / POLL_INTERVAL_GOAL_MS:.0f} a minute): {met}",
            "",
            "How it polls: one request at a time, each started at least 2.05 s after the previous",
            "one started (console/src/poll.js), none while the tab is hidden; a job page stops at",
            "SUCCEEDED, FAILED or CANCELLED; the list asks for its whole page in one GET /jobs and slows",
            "to one every 20 s once every job on the page has finished.",
        ]
        browser.close()
    text = "\n".join(lines) + "\n"
    print(text, end="")
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
