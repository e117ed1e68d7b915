"""A stage waiting for a GPU instance: Batch's "Job State Change" event reaches the cleanup function
through the template's rule, so the job says so at once, with no reconciler run to find it; and a
job cancelled while it waits ends CANCELLED and purged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from stack_builders import running_no_capacity_stack, submit_sample

from jobstate.settings import Settings
from reconflow.local.probe import wait_until
from reconflow.local.stack import LocalStack

NO_RECONCILE_S = 3600.0  # the reconciler never runs during the first test
RECONCILE_INTERVAL_S = 1.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    yield from running_no_capacity_stack(
        tmp_path_factory, "gpu-wait-event", reconcile_interval_s=NO_RECONCILE_S
    )


def test_a_stage_waiting_for_an_instance_says_so_from_batchs_event(stack: LocalStack, tmp_path: Path) -> None:
    _, job_id, observer = submit_sample(stack, tmp_path, "waits")

    waiting = wait_until(
        lambda: observer.first(lambda seen: "waiting for a GPU instance" in seen.message), timeout_s=60
    )

    assert waiting.message.startswith("validate: waiting for a GPU instance (Batch job RUNNABLE for ")
    assert waiting.status == "QUEUED"
    assert len(stack.executor.held) == 1
    assert stack.batch_events.sent == [(f"reconflow-validate-{job_id}", "RUNNABLE")]
    observer.stop()  # the job waits for good: no reconciler here to end it


@pytest.fixture(scope="module")
def reconciled_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    yield from running_no_capacity_stack(
        tmp_path_factory, "gpu-wait-cancel", reconcile_interval_s=RECONCILE_INTERVAL_S
    )


def test_a_job_cancelled_while_its_stage_waits_ends_cancelled_without_the_grace(
    reconciled_stack: LocalStack, tmp_path: Path
) -> None:
    """No container polls the stop: the reconciler ends the waiting Batch job, the execution's
    Catch runs the cancel's cleanup (not CANCEL_GRACE_S later, by StopExecution)."""
    client, job_id, observer = submit_sample(reconciled_stack, tmp_path, "cancelled-while-waiting")
    wait_until(lambda: observer.first(lambda seen: "waiting for a GPU" in seen.message), timeout_s=60)

    client.confirm_cancel(job_id, client.request_cancel(job_id)["token"])
    final = observer.wait(60)

    assert final["status"] == "CANCELLED"
    listed = reconciled_stack.client("s3").list_object_versions(
        Bucket=Settings().bucket_name, Prefix=f"jobs/{job_id}/"
    )
    assert listed.get("Versions", []) == []
    assert listed.get("DeleteMarkers", []) == []
