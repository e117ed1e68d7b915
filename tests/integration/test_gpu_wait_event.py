"""Batch's "Job State Change" event reaches the cleanup function through the template's rule: a
stage waiting for a GPU instance says so at once, with no reconciler run to find it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from reconflow.cli import make_sample_capture
from reconflow.client import ReconFlowClient
from reconflow.local.executor import ExecutorSettings
from reconflow.local.probe import JobObserver, wait_until
from reconflow.local.stack import LocalStack, StackSettings

NO_RECONCILE_S = 3600.0  # the reconciler never runs during the test


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    settings = replace(
        StackSettings(work_dir=tmp_path_factory.mktemp("gpu-wait-event"), engine_profile="tiny"),
        executor=ExecutorSettings(never_start_queues=("*",)),
        reconcile_interval_s=NO_RECONCILE_S,
    )
    with LocalStack(settings) as running:
        yield running


def test_a_stage_waiting_for_an_instance_says_so_from_batchs_event(stack: LocalStack, tmp_path: Path) -> None:
    client = ReconFlowClient(api_url=stack.api_url)
    capture = make_sample_capture(tmp_path / "sample.zip", ["--views", "8", "--size", "32"])
    job_id = client.submit(capture, preset="draft", name="waits")
    observer = JobObserver(client, job_id).start()

    waiting = wait_until(
        lambda: observer.first(lambda seen: "waiting for a GPU instance" in seen.message), timeout_s=60
    )

    assert waiting.message.startswith("validate: waiting for a GPU instance (Batch job RUNNABLE for ")
    assert waiting.status == "QUEUED"
    assert len(stack.executor.held) == 1
    assert stack.batch_events.sent == [(f"reconflow-validate-{job_id}", "RUNNABLE")]
