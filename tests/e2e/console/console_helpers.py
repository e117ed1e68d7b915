"""What the console tests do the way a person's browser does it."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

from playwright.sync_api import JSHandle, Page


def file_transfer(page: Page, path: Path, mime: str = "application/zip") -> JSHandle:
    """A DataTransfer holding the file, as the browser builds one when a file is dropped on the page."""
    payload = base64.b64encode(path.read_bytes()).decode("ascii")
    return page.evaluate_handle(
        """([payload, name, mime]) => {
            const bytes = Uint8Array.from(atob(payload), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: mime }));
            return transfer;
        }""",
        [payload, path.name, mime],
    )


def copy_capture(source: Path, target_dir: Path, name: str) -> Path:
    target = target_dir / name
    shutil.copyfile(source, target)
    return target
