"""Headless Chromium for the console's browser tests and benchmark (Debian's package, via Playwright).

Playwright (a dev requirement) drives ``/usr/bin/chromium`` (``make browser`` installs it) rather
than a browser build of its own. WebGL runs on SwiftShader, as there is no GPU here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--no-sandbox",  # runs as root in a container
    "--disable-gpu",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
VIEWPORT = {"width": 1280, "height": 860}
INSTALL_HINT = "`make browser` installs Debian's chromium package"


class BrowserMissing(FileNotFoundError):
    """Debian's Chromium is not installed."""


def launch(playwright: Any) -> Any:
    """A headless Chromium (a fresh profile each launch) from a started ``sync_playwright()``."""
    if not CHROMIUM.exists():
        raise BrowserMissing(f"{CHROMIUM} is missing: {INSTALL_HINT}")
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_ARGS))
