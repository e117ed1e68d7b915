"""The real ASL executed by moto's Step Functions interpreter: stages, cancel checks, failures."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping

import pytest
from moto.core.exceptions import AWSError
from statemachine_harness import OWNER, Pipeline, batch_submissions, entered_states

from jobstate.jobs import CANCELLED, CANCELLING, FAILED, QUEUED
from jobstate.stages import STAGE_NAMES

CLEANUP_HANDLER = "handlers.cleanup.handler"
FAILING_STAGE = "hull"
FAILURE_REASON = "Essential container in task exited: the hull is empty"


class BatchServiceFault(AWSError):
    """What Batch answers when its service fails (HTTP 500): the state machine should retry it."""

    TYPE = "ServerException"
    STATUS = 500


def new_job(pipeline: Pipeline) -> str:
    """A QUEUED job (as the upload function leaves it) with objects under its prefix."""
    job_id = str(uuid.uuid4())
    pipeline.store.create(OWNER, job_id=job_id, status=QUEUED)
    for key in ("input/capture.zip", "work/validate/manifest.json", "work/validate/manifest.json"):
        pipeline.s3.put_object(Bucket=pipeline.bucket, Key=f"jobs/{job_id}/{key}", Body=b"x")
    return job_id


def confirm_cancel(pipeline: Pipeline, job_id: str) -> None:
    """The two-step cancel as the API does it: request, then confirm with the token."""
    request = pipeline.store.request_cancel(job_id, OWNER)
    job = pipeline.store.confirm_cancel(job_id, OWNER, request.token)
    assert job.status == CANCELLING


def versions_under(pipeline: Pipeline, job_id: str) -> int:
    listed = pipeline.s3.list_object_versions(Bucket=pipeline.bucket, Prefix=f"jobs/{job_id}/")
    return len(listed.get("Versions", [])) + len(listed.get("DeleteMarkers", []))


def test_happy_path_runs_the_six_stages_in_order_with_the_job_id(pipeline: Pipeline) -> None:
    job_id = new_job(pipeline)

    execution = pipeline.wait(pipeline.start(job_id))

    assert execution["status"] == "SUCCEEDED"
    assert pipeline.stage_order() == [(stage, job_id) for stage in STAGE_NAMES]
    history = pipeline.history(execution["executionArn"])
    submitted = batch_submissions(history)
    assert [params["Parameters"] for params in submitted] == [
        {"stage": stage, "job_id": job_id} for stage in STAGE_NAMES
    ]
    assert all(
        params["JobName"] == f"reconflow-{p['stage']}-{job_id}"
        for params in submitted
        for p in [params["Parameters"]]
    )
    assert pipeline.runtime.invocations == {}  # no cleanup on the happy path
    # The stages' Batch descriptions stay out of the state data: only what the selector keeps.
    output = json.loads(execution["output"])
    assert output["last_stage"] == {
        "stage": "export",
        "batch_job_id": pipeline.executor.submitted[-1].batch_job_id,
        "status": "SUCCEEDED",
    }


@pytest.mark.parametrize("cancelled_before", ["validate", "reconstruct", "export"])
def test_cancel_confirmed_before_a_stage_runs_none_from_it_and_ends_cancelled(
    pipeline: Pipeline, cancelled_before: str
) -> None:
    job_id = new_job(pipeline)
    k = STAGE_NAMES.index(cancelled_before)
    if k == 0:
        confirm_cancel(pipeline, job_id)
    else:
        # The user confirms while the stage before is running; that stage still completes.
        def outcome(parameters: Mapping[str, str]) -> bool:
            if parameters["stage"] == STAGE_NAMES[k - 1]:
                confirm_cancel(pipeline, parameters["job_id"])
            return True

        pipeline.executor.outcome = outcome

    execution = pipeline.wait(pipeline.start(job_id))

    assert execution["status"] == "SUCCEEDED"
    assert [stage for stage, _ in pipeline.stage_order()] == list(STAGE_NAMES[:k])
    assert pipeline.runtime.invocations == {CLEANUP_HANDLER: 1}
    states = entered_states(pipeline.history(execution["executionArn"]))
    assert states[-2:] == ["CleanupCancelled", "Cancelled"]
    job = pipeline.store.get(job_id, consistent=True)
    assert job.status == CANCELLED
    assert versions_under(pipeline, job_id) == 0  # every version of every object is gone


def test_failing_batch_job_ends_failed_with_its_error_and_is_submitted_once(pipeline: Pipeline) -> None:
    job_id = new_job(pipeline)
    pipeline.executor.outcome = lambda parameters: (
        FAILURE_REASON if parameters["stage"] == FAILING_STAGE else True
    )

    execution = pipeline.wait(pipeline.start(job_id))

    assert execution["status"] == "FAILED"
    history = pipeline.history(execution["executionArn"])
    hull_submissions = [p for p in batch_submissions(history) if p["Parameters"]["stage"] == FAILING_STAGE]
    assert len(hull_submissions) == 1  # not retried by the state machine
    assert [stage for stage, _ in pipeline.stage_order()] == list(
        STAGE_NAMES[: STAGE_NAMES.index(FAILING_STAGE) + 1]
    )
    failed_tasks = [e["taskFailedEventDetails"] for e in history if e["type"] == "TaskFailed"]
    assert [task["error"] for task in failed_tasks] == ["States.TaskFailed"]
    assert entered_states(history)[-2:] == ["CleanupFailed", "Failed"]
    ended = next(e["executionFailedEventDetails"] for e in history if e["type"] == "ExecutionFailed")
    assert ended["error"] == "ReconFlow.JobFailed"
    assert FAILURE_REASON in ended["cause"]
    job = pipeline.store.get(job_id, consistent=True)
    assert job.status == FAILED
    assert job.error is not None
    assert job.error["code"] == "stage_failed"
    assert FAILURE_REASON in job.error["message"]
    assert pipeline.runtime.invocations == {CLEANUP_HANDLER: 1}


def test_failure_after_a_confirmed_cancel_ends_cancelled_not_failed(pipeline: Pipeline) -> None:
    """A container stopped by a cancel exits non-zero: the Catch must still end the job CANCELLED."""
    job_id = new_job(pipeline)

    def outcome(parameters: Mapping[str, str]) -> bool | str:
        if parameters["stage"] == FAILING_STAGE:
            confirm_cancel(pipeline, parameters["job_id"])
            return "stopped: the job was cancelled"
        return True

    pipeline.executor.outcome = outcome

    execution = pipeline.wait(pipeline.start(job_id))

    states = entered_states(pipeline.history(execution["executionArn"]))
    assert states[-2:] == ["CleanupCancelled", "Cancelled"]
    assert pipeline.store.get(job_id, consistent=True).status == CANCELLED
    assert versions_under(pipeline, job_id) == 0


def test_a_batch_service_fault_is_retried_and_the_stage_runs_once_it_succeeds(pipeline: Pipeline) -> None:
    job_id = new_job(pipeline)
    faults = iter([BatchServiceFault("service unavailable")])

    def outcome(parameters: Mapping[str, str]) -> bool:
        if parameters["stage"] == STAGE_NAMES[0]:
            fault = next(faults, None)
            if fault is not None:
                raise fault
        return True

    pipeline.executor.outcome = outcome

    execution = pipeline.wait(pipeline.start(job_id))

    assert execution["status"] == "SUCCEEDED"
    history = pipeline.history(execution["executionArn"])
    failed = [e["taskFailedEventDetails"]["error"] for e in history if e["type"] == "TaskFailed"]
    assert failed == ["Batch.ServerException"]
    first_stage = [p for p in batch_submissions(history) if p["Parameters"]["stage"] == STAGE_NAMES[0]]
    assert len(first_stage) == 2  # the fault, then the retry
    assert [stage for stage, _ in pipeline.stage_order()] == list(STAGE_NAMES)
