"""The S3 layout of a job: everything under ``jobs/{job_id}/`` (DESIGN.md, "S3: one prefix per job").

Every key the service builds or reads comes from here; a key that does not parse back to a
job id, an area and a safe relative name is rejected before anything uses it.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobstate.errors import InvalidRequest
from jobstate.ids import parse_job_id
from jobstate.stages import STAGE_NAMES

ROOT = "jobs/"
INPUT = "input"
WORK = "work"
OUTPUT = "output"
AREAS: tuple[str, ...] = (INPUT, WORK, OUTPUT)
# Objects the pipeline writes carry their area as a tag: S3 lifecycle filters cannot match
# ``jobs/*/work/``, so the bucket's rule that expires intermediate objects filters on this tag.
AREA_TAG_KEY = "reconflow-area"


def area_tagging(area: str) -> str:
    """The ``Tagging`` value (URL query form) for an object of ``area``."""
    if area not in AREAS:
        raise ValueError(f"unknown area {area!r}")
    return f"{AREA_TAG_KEY}={area}"


# What the export stage may write; the job's ``result`` lists the ones it did write.
OUTPUT_FILES: tuple[str, ...] = (
    "model.glb",
    "model.obj",
    "model.mtl",
    "model.png",
    "model.ply",
    "preview.png",
    "cameras.json",
    "report.json",
)
MAX_KEY_BYTES = 1024  # S3's own limit on a key
_FORBIDDEN_SEGMENTS = frozenset({"", ".", ".."})


@dataclass(frozen=True)
class JobKey:
    """A key of the layout taken apart: ``jobs/{job_id}/{area}/{rest}``."""

    job_id: str
    area: str  # one of AREAS
    rest: str  # the relative name inside the area, e.g. "capture.zip" or "hull/grid.npz"


def check_name(name: str) -> str:
    """A relative object name: '/'-separated segments, none empty, '.' or '..', no backslash or NUL."""
    if not isinstance(name, str) or not name:
        raise InvalidRequest("object name must be a non-empty string")
    if "\\" in name or "\x00" in name or name.startswith("/"):
        raise InvalidRequest("object name must be a plain relative path")
    if any(segment in _FORBIDDEN_SEGMENTS for segment in name.split("/")):
        raise InvalidRequest("object name must not contain empty, '.' or '..' segments")
    return name


def _stage(stage: str) -> str:
    if stage not in STAGE_NAMES:
        raise InvalidRequest(f"unknown stage {stage!r}")
    return stage


def job_prefix(job_id: str) -> str:
    """``jobs/{job_id}/``; the trailing slash keeps ``jobs/{job_id}x`` out of it."""
    return f"{ROOT}{parse_job_id(job_id)}/"


def input_prefix(job_id: str) -> str:
    return f"{job_prefix(job_id)}{INPUT}/"


def input_key(job_id: str, name: str) -> str:
    return input_prefix(job_id) + check_name(name)


def work_prefix(job_id: str, stage: str) -> str:
    return f"{job_prefix(job_id)}{WORK}/{_stage(stage)}/"


def work_key(job_id: str, stage: str, name: str) -> str:
    return work_prefix(job_id, stage) + check_name(name)


def output_prefix(job_id: str) -> str:
    return f"{job_prefix(job_id)}{OUTPUT}/"


def output_key(job_id: str, name: str) -> str:
    return output_prefix(job_id) + check_name(name)


def parse_key(key: object) -> JobKey:
    """Split ``jobs/{job_id}/{area}/{rest}``; InvalidJobId for a bad id, InvalidRequest otherwise."""
    if not isinstance(key, str) or not key.startswith(ROOT):
        raise InvalidRequest("key is not under jobs/")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidRequest("key is too long")
    parts = key[len(ROOT) :].split("/", 2)
    if len(parts) != 3:
        raise InvalidRequest("key must be jobs/{job_id}/{area}/{name}")
    raw_id, area, rest = parts
    job_id = parse_job_id(raw_id)
    if area not in AREAS:
        raise InvalidRequest(f"unknown area {area!r}")
    return JobKey(job_id, area, check_name(rest))
