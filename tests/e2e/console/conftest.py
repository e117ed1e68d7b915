"""The web console in a real headless Chromium (Debian's, driven by Playwright) against the local stack.

The stack is the e2e one (``tests/e2e/conftest.py``: the real template, handlers, ASL and stage
runner on moto, ``tiny`` engine profile) with a cancel window long enough for a person to read the
dialog. Tests drive the
pages by roles and labels. Screenshots go to ``RECONFLOW_SCREENSHOTS_DIR`` when it is set (the
README's pictures: ``RECONFLOW_SCREENSHOTS_DIR=docs/screenshots``), else to a temporary folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from reconflow.local.browser import VIEWPORT, BrowserMissing, launch
from reconflow.local.console_server import CONSOLE_DIST

SCREENSHOTS_ENV = "RECONFLOW_SCREENSHOTS_DIR"
# A person reads the dialog before confirming: a realistic window, not the e2e module's 2 s.
CANCEL_CONFIRM_WINDOW_S = 600
# Resource Timing keeps 250 entries by default; a watched job makes more requests than that.
RESOURCE_BUFFER_ENTRIES = 5000


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    try:
        launched = launch(playwright)
    except BrowserMissing as missing:
        pytest.fail(str(missing))
    yield launched
    launched.close()


@pytest.fixture(scope="module")
def cancel_window_s() -> int:
    """The e2e stack (tests/e2e/conftest.py) with a window a person has time to confirm in."""
    return CANCEL_CONFIRM_WINDOW_S


@pytest.fixture(scope="module", autouse=True)
def console_built() -> None:
    if not (CONSOLE_DIST / "index.html").is_file():
        pytest.fail(f"the console is not built ({CONSOLE_DIST}): run `make console`")


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    fresh = browser.new_context(viewport=VIEWPORT, accept_downloads=True, locale="en-GB", timezone_id="UTC")
    fresh.add_init_script(f"performance.setResourceTimingBufferSize({RESOURCE_BUFFER_ENTRIES})")
    yield fresh
    fresh.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    opened.on(
        "console",
        lambda message: (
            problems.append(f"console {message.type}: {message.text}") if message.type == "error" else None
        ),
    )
    yield opened
    assert problems == [], "the console logged errors"


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = (
        Path(os.environ[SCREENSHOTS_ENV])
        if os.environ.get(SCREENSHOTS_ENV)
        else tmp_path_factory.mktemp("shots")
    )
    target.mkdir(parents=True, exist_ok=True)
    return target
