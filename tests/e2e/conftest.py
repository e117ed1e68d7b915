"""One local stack for the e2e module: the real template, handlers, ASL and stage runner, on moto.

The tests drive it through the HTTP API and the ``reconflow`` CLI only; they look into the
emulated S3 to check what a purge left (nothing). Stages run the ``tiny`` engine profile (smaller
draft sizes, reconflow.local.engine_profile) so that whole jobs take seconds of CPU.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconflow.cli import make_sample_capture
from reconflow.client import ReconFlowClient
from reconflow.local.stack import LocalStack, StackSettings

# Seconds a cancel request can be confirmed: short, so one test can let it expire.
CANCEL_CONFIRM_WINDOW_S = 2
SAMPLE_VIEWS = 12
SAMPLE_SIZE = 64


@pytest.fixture(scope="module")
def cancel_window_s() -> int:
    """The stack's CANCEL_CONFIRM_WINDOW_S (a module may override this fixture)."""
    return CANCEL_CONFIRM_WINDOW_S


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, cancel_window_s: int) -> Iterator[LocalStack]:
    settings = StackSettings(
        work_dir=tmp_path_factory.mktemp("stack"),
        engine_profile="tiny",
        environment={
            "CANCEL_CONFIRM_WINDOW_S": str(cancel_window_s),
            "PROGRESS_MIN_INTERVAL_S": "0.2",
        },
    )
    with LocalStack(settings) as running:
        yield running


@pytest.fixture(scope="module")
def client(stack: LocalStack) -> ReconFlowClient:
    return ReconFlowClient(api_url=stack.api_url)


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample capture, tiny: 12 views of 64 x 64 pixels."""
    target = tmp_path_factory.mktemp("captures") / "sample.zip"
    return make_sample_capture(target, ["--views", str(SAMPLE_VIEWS), "--size", str(SAMPLE_SIZE)])


@pytest.fixture(scope="module")
def bad_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A zip with neither transforms.json nor photos (a zip of photos alone is a photo set)."""
    target = tmp_path_factory.mktemp("captures") / "no_transforms.zip"
    with zipfile.ZipFile(target, "w") as archive:
        archive.writestr("notes/readme.txt", b"the photos are on another disk")
    return target
