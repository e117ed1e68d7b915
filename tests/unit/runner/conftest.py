"""Fixtures of the stage runner's tests: moto's table and bucket, a QUEUED job, a runner factory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from aws_fixtures import aws, aws_env, bucket, jobs_table  # noqa: F401

from gpu_container.runner import RunnerSettings, StageFunction, StageRunner
from jobstate import aws as jobstate_aws
from jobstate import layout
from jobstate.jobs import QUEUED, JobStore

OWNER = "user-1"


class RecordingStore(JobStore):
    """The real store, counting the container's table reads and keeping every progress write."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.stop_checks = 0
        self.progress_writes: list[tuple[float, str, bool]] = []

    def should_stop(self, job_id: str) -> bool:
        self.stop_checks += 1
        return super().should_stop(job_id)

    def report_progress(self, job_id: str, progress: float, message: str) -> bool:
        written = super().report_progress(job_id, progress, message)
        self.progress_writes.append((progress, message, written))
        return written


@dataclass
class FakeClock:
    """Monotonic seconds that a test moves by hand."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def store(jobs_table: str, bucket: str) -> RecordingStore:  # noqa: F811
    return RecordingStore(jobs_table)


@pytest.fixture
def s3(bucket: str):  # noqa: F811
    return jobstate_aws.client("s3")


@pytest.fixture
def job_id(store: RecordingStore) -> str:
    """A QUEUED job with the draft preset (its capture is the test's business)."""
    return store.create(OWNER, preset="draft", status=QUEUED).job_id


@pytest.fixture
def make_runner(store: RecordingStore, s3, bucket: str, tmp_path) -> Callable[..., StageRunner]:  # noqa: F811
    """A runner on the CPU against moto; ``stage_functions`` stand in for engine stages by name.

    ``make.exits`` lists the exit codes the stop watcher asked for (the process is not ended).
    """
    exits: list[int] = []

    def make(
        stage_functions: dict[str, StageFunction] | None = None,
        clock: Callable[[], float] | None = None,
        exit_process: Callable[[int], None] | None = None,
        **settings,
    ) -> StageRunner:
        options: dict = {"clock": clock} if clock is not None else {}
        # The stop watcher would end the test process (os._exit): by default it only records.
        options["exit_process"] = exit_process or exits.append
        work_root = tmp_path / "jobs"
        work_root.mkdir(exist_ok=True)
        return StageRunner(
            store=store,
            s3=s3,
            bucket=bucket,
            device=torch.device("cpu"),
            settings=RunnerSettings(work_root=str(work_root), **settings),
            stage_functions=stage_functions,
            **options,
        )

    make.exits = exits  # type: ignore[attr-defined]
    return make


def keys_under(s3, bucket_name: str, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket_name, Prefix=prefix)
    return sorted(entry["Key"] for page in pages for entry in page.get("Contents", []))


def put_capture(s3, bucket_name: str, job_id: str, data: bytes, name: str = "capture.zip") -> str:
    key = layout.input_key(job_id, name)
    s3.put_object(Bucket=bucket_name, Key=key, Body=data)
    return key
