"""The six pipeline stages, in order, with the progress band each one covers (DESIGN.md), and the presets.

Pure Python: the Lambda handlers, the stage runner and the engine all read these names from here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    name: str
    index: int  # 1..6
    progress_start: float  # job progress (0-100) when the stage begins
    progress_end: float  # job progress when it is done

    def job_progress(self, fraction: float) -> float:
        """Map a fraction (0..1) of this stage's work onto the job's 0-100 scale."""
        fraction = min(max(fraction, 0.0), 1.0)
        return round(self.progress_start + fraction * (self.progress_end - self.progress_start), 1)


STAGES: tuple[Stage, ...] = (
    Stage("validate", 1, 0.0, 10.0),
    Stage("preprocess", 2, 10.0, 25.0),
    Stage("hull", 3, 25.0, 40.0),
    Stage("reconstruct", 4, 40.0, 80.0),
    Stage("mesh", 5, 80.0, 90.0),
    Stage("export", 6, 90.0, 100.0),
)
# Quality presets a job may ask for; every engine stage has parameters for each.
PRESETS: tuple[str, ...] = ("draft", "standard", "high")
DEFAULT_PRESET = "standard"

STAGE_NAMES: tuple[str, ...] = tuple(stage.name for stage in STAGES)
_BY_NAME = {stage.name: stage for stage in STAGES}


def stage_named(name: str) -> Stage:
    """The stage called ``name``; ``KeyError`` for anything else."""
    return _BY_NAME[name]
