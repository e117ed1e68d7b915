"""Local stacks the integration tests share the shape of."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from reconflow.cli import make_sample_capture
from reconflow.client import ReconFlowClient
from reconflow.local.executor import ExecutorSettings
from reconflow.local.probe import JobObserver
from reconflow.local.stack import LocalStack, StackSettings


def no_capacity_stack(
    work_dir: Path, *, reconcile_interval_s: float, environment: dict[str, str] | None = None
) -> LocalStack:
    """A local stack whose GPU queue never starts a job (no GPU quota, no Spot capacity), with the
    tiny engine profile; enter it with ``with``."""
    settings = replace(
        StackSettings(work_dir=work_dir, engine_profile="tiny"),
        executor=ExecutorSettings(never_start_queues=("*",)),
        environment=environment or {},
        reconcile_interval_s=reconcile_interval_s,
    )
    return LocalStack(settings)


def running_no_capacity_stack(
    tmp_path_factory: pytest.TempPathFactory, folder: str, **options
) -> Iterator[LocalStack]:
    """A module fixture's body: ``yield from`` it to hold a started ``no_capacity_stack`` (``options``
    as there) for the module's tests."""
    with no_capacity_stack(tmp_path_factory.mktemp(folder), **options) as running:
        yield running


def submit_sample(stack: LocalStack, folder: Path, name: str) -> tuple[ReconFlowClient, str, JobObserver]:
    """Submit a tiny sample capture (8 views of 32 px, draft) to ``stack``; returns the client, the job
    id and a started observer of the job."""
    client = ReconFlowClient(api_url=stack.api_url)
    capture = make_sample_capture(folder / "sample.zip", ["--views", "8", "--size", "32"])
    job_id = client.submit(capture, preset="draft", name=name)
    return client, job_id, JobObserver(client, job_id).start()
