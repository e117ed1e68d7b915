"""A queue that never starts a job (no GPU quota, no Spot capacity), on the local stack: while the
stage waits the job says so, and past GPU_WAIT_TIMEOUT_S it FAILS ``no_gpu_capacity`` naming the
queue, its Batch job is terminated and the execution ends, instead of hanging for hours."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from stack_builders import running_no_capacity_stack, submit_sample

from reconflow.local.probe import wait_until
from reconflow.local.stack import LocalStack

GPU_WAIT_TIMEOUT_S = 6
RECONCILE_INTERVAL_S = 1.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    yield from running_no_capacity_stack(
        tmp_path_factory,
        "no-capacity",
        reconcile_interval_s=RECONCILE_INTERVAL_S,
        environment={"GPU_WAIT_TIMEOUT_S": str(GPU_WAIT_TIMEOUT_S)},
    )


def test_a_stage_that_never_gets_an_instance_fails_no_gpu_capacity(stack: LocalStack, tmp_path: Path) -> None:
    _, _, observer = submit_sample(stack, tmp_path, "no-gpu")

    waiting = wait_until(
        lambda: observer.first(lambda seen: "waiting for a GPU instance" in seen.message), timeout_s=60
    )
    final = observer.wait(60)

    assert waiting.message.startswith("validate: waiting for a GPU instance (Batch job ")
    assert waiting.message.split("Batch job ")[1].split()[0] in (
        "SUBMITTED",
        "PENDING",
        "RUNNABLE",
        "STARTING",
    )
    assert final["status"] == "FAILED"
    assert final["error"]["code"] == "no_gpu_capacity"
    queue_name = stack.physical_of_type("AWS::Batch::JobQueue").rsplit("/", 1)[-1]
    assert f"queue {queue_name}" in final["error"]["message"]
    assert "L-DB2E81BA" in final["error"]["message"]
    (held,) = stack.executor.held
    # The reconciler fails the job first, then terminates its Batch job: wait for the second write.
    batch_client = stack.client("batch")

    def failed_batch_job() -> dict | None:
        (job,) = batch_client.describe_jobs(jobs=[held])["jobs"]
        return job if job["status"] == "FAILED" else None

    batch = wait_until(failed_batch_job, timeout_s=30)
    assert batch["statusReason"].startswith("no_gpu_capacity")
    sfn = stack.client("stepfunctions")
    machine = stack.physical_of_type("AWS::StepFunctions::StateMachine")
    wait_until(
        lambda: all(
            e["status"] != "RUNNING" for e in sfn.list_executions(stateMachineArn=machine)["executions"]
        ),
        timeout_s=30,
    )
    assert stack.executor.runs == []  # no stage process ever started
