"""What every stage receives besides its folder: the preset, the device, and the callbacks.

No torch at import: the stage runner imports this before it starts its stop watcher, and torch
takes seconds to load, so it is imported where a device is first made.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from jobstate.stages import PRESETS

if TYPE_CHECKING:
    import torch

__all__ = [
    "PRESETS",
    "STAGE_RECORD",
    "CaptureError",
    "StageCancelled",
    "StageContext",
    "Stopwatch",
    "default_device",
    "make_device",
    "write_stage_record",
]

STAGE_RECORD = "stage.json"  # each stage's figures, in work/<stage>/; export gathers them into report.json

ProgressCallback = Callable[[float, str], None]
StopCheck = Callable[[], bool]


class CaptureError(Exception):
    """Bad input: a specific code (e.g. ``zip_slip``) and a message naming the file or field."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class StageCancelled(Exception):
    """Raised when ``should_stop()`` turned true; the stage writes nothing more after it."""


@dataclass
class StageContext:
    job_dir: Path
    preset: str = "standard"
    device: torch.device = field(default_factory=lambda: make_device("cpu"))
    seed: int = 0
    on_progress: ProgressCallback = lambda fraction, message: None
    should_stop: StopCheck = lambda: False

    def work_dir(self, stage: str) -> Path:
        """``work/{stage}/`` of this job, created on first use."""
        path = self.job_dir / "work" / stage
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def input_dir(self) -> Path:
        return self.job_dir / "input"

    @property
    def output_dir(self) -> Path:
        path = self.job_dir / "output"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def check_stop(self) -> None:
        """Raise ``StageCancelled`` if the job was cancelled. Long loops call this at least once a second."""
        if self.should_stop():
            raise StageCancelled("stop requested")

    def within(self, low: float, high: float) -> StageContext:
        """This context with its progress mapped into [``low``, ``high``] of the stage's, for a step
        that reports its own progress from 0 to 1."""
        report = self.on_progress
        return dataclasses.replace(
            self, on_progress=lambda fraction, message: report(low + (high - low) * fraction, message)
        )


def make_device(name: str | None = None) -> torch.device:
    """The torch device ``name``; without one, CUDA when present, the CPU otherwise."""
    import torch

    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_device() -> torch.device:
    """CUDA when present, the CPU otherwise."""
    return make_device()


class Stopwatch:
    """Seconds since construction, for the per-stage timings in ``stage.json``."""

    def __init__(self) -> None:
        self._start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self._start


def write_stage_record(folder: Path, figures: dict) -> Path:
    """Write a stage's figures (seconds, device, sizes...) as ``folder/stage.json``."""
    path = folder / STAGE_RECORD
    path.write_text(json.dumps(figures, indent=2))
    return path
