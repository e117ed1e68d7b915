"""A person's sessions with the web console: drop a capture, watch it, turn the model, cancel, fail.

Each test opens the console on the local stack in headless Chromium and works only through what
is on screen: roles, labels and visible text.
"""

from __future__ import annotations

import io
import itertools
import re
from pathlib import Path

import pytest
from console_helpers import copy_capture, file_transfer
from PIL import Image, ImageChops
from playwright.sync_api import FileChooser, Page, expect

from reconflow.client import ReconFlowClient
from reconflow.local.stack import LocalStack

JOB_TIMEOUT_MS = 300_000  # bounds the waiting only; a tiny job takes about a minute here
STEP_TIMEOUT_MS = 30_000
# The viewer's clear colour (console/src/viewer.js BACKGROUND) and how far a pixel must differ
# from it to count as drawn, and how much of the canvas the model must cover.
VIEWER_BACKGROUND = (0xE8, 0xEC, 0xF1)
DRAWN_CHANNEL_DIFFERENCE = 24
DRAWN_FRACTION_MIN = 0.03
# The console polls a job at most once per this many milliseconds (console/src/config.js).
POLL_INTERVAL_MS = 2000
# How much closer than the interval two request starts may look here: the page spaces them 50 ms
# beyond it, and on a loaded machine the renderer may start one fetch late after its timer.
POLL_JITTER_MS = 50
# Jobs per page of the list (console/src/config.js DEFAULT_PAGE_SIZE).
PAGE_SIZE = 20
# The list's words for each status (console/src/format.js).
STATUS_WORDS = {
    "CREATED": "waiting for the upload",
    "QUEUED": "queued",
    "RUNNING": "running",
    "SUCCEEDED": "finished",
    "FAILED": "failed",
    "CANCELLING": "cancelling",
    "CANCELLED": "cancelled",
}
UNNAMED_CONTROL = re.compile(
    r"^\s*- (button|link|textbox|combobox|progressbar|checkbox|img|dialog)\s*(?:\[.*\])?:?$"
)


def open_console(page: Page, stack: LocalStack, route: str = "") -> None:
    page.goto(stack.console_url + route)
    expect(page.get_by_text("Signed in as local-dev (development identity)")).to_be_visible()


def unnamed_controls(page: Page) -> list[str]:
    """Lines of the page's accessibility tree that are controls without an accessible name."""
    return [line for line in page.locator("body").aria_snapshot().splitlines() if UNNAMED_CONTROL.match(line)]


def submit_by_drop(page: Page, stack: LocalStack, capture: Path, name: str, preset: str = "draft") -> str:
    """Create a job on the New job page by dropping ``capture``; the job id from the job page's address."""
    open_console(page, stack, "#/new")
    expect(page.get_by_role("heading", name="New job")).to_be_visible()
    drop_zone = page.get_by_role("group", name=re.compile("drop it here"))
    drop_zone.dispatch_event("drop", {"dataTransfer": file_transfer(page, capture)})
    expect(drop_zone).to_contain_text(capture.name)
    page.get_by_label("Preset").select_option(preset)
    page.get_by_label("Job name (optional)").fill(name)
    page.get_by_role("button", name="Create job and upload").click()
    expect(page).to_have_url(re.compile(r"#/jobs/[0-9a-f-]{36}$"), timeout=STEP_TIMEOUT_MS)
    expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible()
    return page.url.rsplit("/", 1)[-1]


def job_status(page: Page) -> str:
    return page.locator("dt", has_text="Status").locator("xpath=following-sibling::dd[1]").inner_text()


def status_request_starts(page: Page, path: str) -> list[float]:
    """Start times (ms, the page's clock) of the page's GET requests to ``path`` (Resource Timing)."""
    return page.evaluate(
        """(path) => performance.getEntriesByType("resource")
            .filter((entry) => new URL(entry.name).pathname === path && entry.initiatorType === "fetch")
            .map((entry) => entry.startTime)""",
        path,
    )


def drawn_fraction(png: bytes) -> float:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    background = Image.new("RGB", image.size, VIEWER_BACKGROUND)
    difference = ImageChops.difference(image, background).convert("L")
    drawn = sum(
        count for level, count in enumerate(difference.histogram()) if level > DRAWN_CHANNEL_DIFFERENCE
    )
    return drawn / (image.width * image.height)


def test_failed_capture_shows_its_error_in_words(
    page: Page, stack: LocalStack, bad_capture: Path, screenshots: Path
) -> None:
    submit_by_drop(page, stack, bad_capture, "no transforms")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("The job failed", timeout=JOB_TIMEOUT_MS)
    expect(alert).to_contain_text(
        "The capture was refused: the archive holds no transforms.json and no PNG or JPEG photos."
    )
    expect(alert).to_contain_text("missing_transforms")
    assert job_status(page) == "failed"
    expect(page.get_by_role("button", name="Cancel job…")).to_be_hidden()
    page.screenshot(path=screenshots / "job-failed.png")


def test_cancel_is_requested_then_confirmed_in_a_dialog_and_the_job_ends_cancelled(
    page: Page, stack: LocalStack, capture: Path, screenshots: Path
) -> None:
    submit_by_drop(page, stack, capture, "cancelled from the console")
    cancel = page.get_by_role("button", name="Cancel job…")
    expect(page.get_by_label("Job progress")).to_have_attribute(
        "value", re.compile(r"^[1-9]"), timeout=JOB_TIMEOUT_MS
    )

    # First time, from the keyboard: the dialog takes focus on the safe choice, says what goes and
    # until when the request holds, and Escape keeps the job; so does "Keep the job".
    cancel.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Cancel this job?")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("button", name="Keep the job")).to_be_focused()
    expect(dialog).to_contain_text("everything stored for it is deleted")
    expect(dialog).to_contain_text("the uploaded capture")
    expect(dialog).to_contain_text(re.compile(r"This cancel request holds until .+; confirm before then\."))
    page.screenshot(path=screenshots / "cancel-dialog.png")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page.get_by_text("Not cancelled. The request expires by itself.")).to_be_visible()
    expect(cancel).to_be_focused()
    cancel.click()
    dialog.get_by_role("button", name="Keep the job").click()
    expect(dialog).to_be_hidden()
    assert job_status(page) in ("queued", "running")

    cancel.click()
    dialog.get_by_role("button", name="Confirm cancel").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_text(re.compile("Cancel confirmed"))).to_be_visible()
    expect(page.locator("dd", has_text="cancelled")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    expect(
        page.get_by_text("This job was cancelled: its work stopped and everything stored for it was deleted.")
    ).to_be_visible()
    expect(cancel).to_be_hidden()


def test_dropped_capture_runs_to_succeeded_and_the_viewer_draws_the_model(
    page: Page, stack: LocalStack, capture: Path, screenshots: Path, tmp_path: Path
) -> None:
    capture = copy_capture(capture, tmp_path, "bowl_capture.zip")
    job_id = submit_by_drop(page, stack, capture, "sample bowl")
    expect(page.get_by_label("Job progress")).to_have_attribute(
        "value", re.compile(r"^[1-9]"), timeout=JOB_TIMEOUT_MS
    )
    page.screenshot(path=screenshots / "job-running.png")

    expect(page.locator("dd", has_text="finished")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    viewer_status = page.get_by_role("region", name="Model").get_by_role("status")
    expect(viewer_status).not_to_have_text("Loading the model…", timeout=STEP_TIMEOUT_MS)
    expect(viewer_status).to_contain_text("Model loaded")
    expect(page.get_by_label("Job progress")).to_have_attribute("value", "100")

    # The viewer drew the model: much of the canvas is not the background colour.
    viewer = page.get_by_role("img", name=re.compile("3D view of the model"))
    before = viewer.screenshot()
    assert drawn_fraction(before) > DRAWN_FRACTION_MIN
    # Keyboard orbit: arrow keys on the focused canvas turn the model.
    viewer.focus()
    for _ in range(4):
        page.keyboard.press("ArrowLeft")
    after = viewer.screenshot()
    assert (
        ImageChops.difference(Image.open(io.BytesIO(before)), Image.open(io.BytesIO(after))).getbbox()
        is not None
    )

    # The report's figures and the preview.
    report = page.get_by_role("table", name="Report")
    expect(report).to_contain_text("Held-out mask IoU")
    expect(report.get_by_role("row", name=re.compile("Preset"))).to_contain_text("draft")
    expect(page.get_by_role("img", name=re.compile("Preview render"))).to_be_visible()

    # A download through the browser: the GLB itself.
    with page.expect_download() as download:
        page.get_by_role("button", name="Download model.glb").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == "model.glb"
    assert saved.read_bytes()[:4] == b"glTF"
    page.screenshot(path=screenshots / "job-succeeded.png", full_page=True)

    # While it watched, the page asked for this job's status at most once every two seconds.
    starts = status_request_starts(page, f"/jobs/{job_id}")
    assert len(starts) >= 3
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert min(gaps) >= POLL_INTERVAL_MS - POLL_JITTER_MS, gaps


def test_jobs_list_shows_the_callers_jobs_newest_first_with_status_and_progress(
    page: Page, stack: LocalStack, client: ReconFlowClient, screenshots: Path
) -> None:
    client.create_job(preset="draft", name="waiting for its capture")
    expected = client.list_jobs(limit=PAGE_SIZE)["jobs"]
    open_console(page, stack)
    table = page.get_by_role("table", name="Your jobs, newest first")
    rows = table.get_by_role("row")
    expect(rows).to_have_count(1 + len(expected))
    for row, job in zip(rows.all()[1:], expected, strict=True):
        expect(row.get_by_role("link")).to_have_text(job["name"])
        expect(row).to_contain_text(job["job_id"])
        expect(row).to_contain_text(STATUS_WORDS[job["status"]])
        progress = row.get_by_label(f"Progress of {job['name']}")
        expect(progress).to_have_attribute("value", re.compile(rf"^{int(job['progress'])}(\.\d+)?$"))
    expect(rows.nth(1)).to_contain_text("waiting for the upload")
    page.screenshot(path=screenshots / "jobs.png")
    rows.nth(1).get_by_role("link").click()
    expect(page.get_by_role("heading", name="waiting for its capture")).to_be_visible()


def test_jobs_list_pages_through_older_jobs(page: Page, stack: LocalStack, client: ReconFlowClient) -> None:
    while len(client.list_jobs(limit=PAGE_SIZE + 1)["jobs"]) <= PAGE_SIZE:
        client.create_job(preset="draft", name="filler")
    first_page = client.list_jobs(limit=PAGE_SIZE)
    second_page = client.list_jobs(limit=PAGE_SIZE, cursor=first_page["next_cursor"])["jobs"]
    open_console(page, stack)
    table = page.get_by_role("table", name="Your jobs, newest first")
    expect(table.get_by_role("row")).to_have_count(1 + PAGE_SIZE)
    newer, older = (
        page.get_by_role("button", name="Newer jobs"),
        page.get_by_role("button", name="Older jobs"),
    )
    expect(newer).to_be_disabled()
    older.click()
    expect(page.get_by_text("Page 2")).to_be_visible()
    expect(table.get_by_role("row")).to_have_count(1 + len(second_page))
    expect(table.get_by_role("row").nth(1)).to_contain_text(second_page[0]["job_id"])
    newer.click()
    expect(page.get_by_text("Page 1")).to_be_visible()
    expect(table.get_by_role("row").nth(1)).to_contain_text(first_page["jobs"][0]["job_id"])


@pytest.mark.parametrize("route", ["", "#/new"])
def test_every_control_has_a_label(page: Page, stack: LocalStack, route: str) -> None:
    open_console(page, stack, route)
    expect(page.locator("main h1")).to_be_visible()
    assert unnamed_controls(page) == []


def test_new_job_page_works_from_the_keyboard(page: Page, stack: LocalStack, bad_capture: Path) -> None:
    # Playwright turns on Chromium's file-chooser interception when a listener is added, and does it
    # asynchronously: listening from the start makes sure it is on long before the key press below
    # (registered only around the press, the chooser was now and then missed).
    choosers: list[FileChooser] = []
    page.on("filechooser", lambda chooser: choosers.append(chooser))
    open_console(page, stack)
    focused: list[str] = []
    for _ in range(6):
        page.keyboard.press("Tab")
        focused.append(
            page.evaluate("document.activeElement.textContent.trim() || document.activeElement.id")
        )
        if focused[-1] == "New job":
            break
    assert focused[0] == "Skip to content"
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="New job")).to_be_visible()

    order = []
    for _ in range(8):
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.id || document.activeElement.textContent.trim()"))
    expected = ["capture-file", "preset", "job-name", "Create job and upload"]
    assert [item for item in order if item in expected] == expected

    # Submitting without a file says so, in words, without creating a job.
    page.get_by_role("button", name="Create job and upload").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_have_text("Choose a capture file first.")
    # The file input opens the system's file chooser from the keyboard too.
    page.get_by_label("Choose a capture file").focus()
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Space")
    chooser.value.set_files(str(bad_capture))
    assert choosers == [chooser.value]  # one key press, one chooser
    expect(page.get_by_text(bad_capture.name)).to_be_visible()
