"""The template's state machine on LocalStack's Step Functions: the paths that need no GPU.

The definition is the real one, filled from ``template.yaml`` by ``reconflow.local.template``.
Its DynamoDB cancel checks are real: LocalStack's DynamoDB API, with the table kept in a moto
server in place of DynamoDB Local. LocalStack cannot run Lambda or Batch here (both need
Docker): the cleanup function's answer and, in one case, the validate stage's failure come from
``sfn_mock_config.json`` (LocalStack's mocked service integrations). The tests then run the real
cleanup handler with the exact payload the execution sent, and check it answers what the mock
answered and leaves the job as the execution's end says.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from handler_helpers import CONTEXT
from localstack_world import LocalStackWorld

from handlers import cleanup
from handlers.executions import execution_input
from jobstate.ids import new_job_id
from jobstate.jobs import CANCELLED, CANCELLING, FAILED, QUEUED, RUNNING
from jobstate.layout import input_key, work_key
from jobstate.settings import Settings

EXECUTION_TIMEOUT_S = 60
LAMBDA_MOCKED = "LambdaMocked"  # test cases of sfn_mock_config.json
VALIDATE_FAILS = "ValidateFails"
CANCEL_DURING_STAGE = "CancelDuringStage"


@pytest.fixture(scope="module")
def state_machine(localstack: LocalStackWorld) -> str:
    return localstack.real_state_machine()


def _start(localstack: LocalStackWorld, state_machine: str, test_case: str, job_id: str) -> str:
    sfn = localstack.client("stepfunctions")
    payload = execution_input(job_id, localstack.bucket, input_key(job_id, "capture.zip"), Settings())
    started = sfn.start_execution(
        stateMachineArn=f"{state_machine}#{test_case}", name=job_id, input=json.dumps(payload)
    )
    return started["executionArn"]


def _finished(localstack: LocalStackWorld, execution_arn: str) -> dict[str, Any]:
    sfn = localstack.client("stepfunctions")
    deadline = time.monotonic() + EXECUTION_TIMEOUT_S
    while True:
        described = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] != "RUNNING":
            return described
        assert time.monotonic() < deadline, "execution still running"
        time.sleep(0.2)


def _history(localstack: LocalStackWorld, execution_arn: str) -> list[dict[str, Any]]:
    sfn = localstack.client("stepfunctions")
    return sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]


def _entered(history: list[dict[str, Any]]) -> list[str]:
    return [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]


def _scheduled(history: list[dict[str, Any]], resource_type: str) -> list[dict[str, Any]]:
    return [
        json.loads(e["taskScheduledEventDetails"]["parameters"])
        for e in history
        if e.get("taskScheduledEventDetails", {}).get("resourceType") == resource_type
    ]


def _mocked_answer(history: list[dict[str, Any]], state: str) -> dict[str, Any]:
    exited = next(e for e in history if e.get("stateExitedEventDetails", {}).get("name") == state)
    return json.loads(exited["stateExitedEventDetails"]["output"])["cleanup"]


def _job_with_input(localstack: LocalStackWorld, status: str) -> str:
    store, s3 = localstack.store(), localstack.client("s3")
    job = store.create("owner-1", job_id=new_job_id(), status=QUEUED)
    s3.put_object(Bucket=localstack.bucket, Key=input_key(job.job_id, "capture.zip"), Body=b"zip")
    s3.put_object(Bucket=localstack.bucket, Key=work_key(job.job_id, "validate", "manifest.json"), Body=b"{}")
    if status == RUNNING:
        store.begin_stage(job.job_id, "validate")
    if status == CANCELLING:
        request = store.request_cancel(job.job_id, "owner-1")
        store.confirm_cancel(job.job_id, "owner-1", request.token)
    assert store.get(job.job_id, consistent=True).status == status
    return job.job_id


def _execute(
    localstack: LocalStackWorld, state_machine: str, test_case: str, status: str
) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """A job in ``status`` with its input, run to the end under ``test_case`` of the mock config:
    the job id, the finished execution and its history."""
    job_id = _job_with_input(localstack, status)
    execution = _finished(localstack, _start(localstack, state_machine, test_case, job_id))
    return job_id, execution, _history(localstack, execution["executionArn"])


def _run_cleanup_as_the_execution_asked(
    localstack: LocalStackWorld, history: list[dict[str, Any]]
) -> dict[str, Any]:
    (invoke,) = _scheduled(history, "lambda")
    assert invoke["FunctionName"].endswith(":function:reconflow-localstack-cleanup")
    localstack.use_handler_deps()
    return cleanup.handler(invoke["Payload"], CONTEXT)


def test_a_job_cancelled_before_the_first_stage_is_purged_and_cancelled(
    localstack: LocalStackWorld, state_machine: str
) -> None:
    job_id, execution, history = _execute(localstack, state_machine, LAMBDA_MOCKED, CANCELLING)

    assert execution["status"] == "SUCCEEDED"
    assert _entered(history) == [
        "CheckCancelBeforeValidate",
        "IsCancelledBeforeValidate",
        "CleanupCancelled",
        "Cancelled",
    ]
    (get_item,) = _scheduled(history, "dynamodb")
    assert get_item["TableName"] == localstack.table
    assert get_item["Key"] == {"pk": {"S": job_id}, "sk": {"S": "job"}}
    assert json.loads(execution["output"])["check"] == {"status": CANCELLING}  # read from the table

    answer = _run_cleanup_as_the_execution_asked(localstack, history)
    assert answer["status"] == _mocked_answer(history, "CleanupCancelled")["status"] == CANCELLED
    assert localstack.store().get(job_id, consistent=True).status == CANCELLED
    s3 = localstack.client("s3")
    listed = s3.list_object_versions(Bucket=localstack.bucket, Prefix=f"jobs/{job_id}/")
    assert not listed.get("Versions")
    assert not listed.get("DeleteMarkers")


def test_a_failed_stage_fails_the_job_with_its_error(localstack: LocalStackWorld, state_machine: str) -> None:
    job_id, execution, history = _execute(localstack, state_machine, VALIDATE_FAILS, RUNNING)

    assert execution["status"] == "FAILED"
    assert execution["error"] == "ReconFlow.JobFailed"
    assert _entered(history) == [
        "CheckCancelBeforeValidate",
        "IsCancelledBeforeValidate",
        "Validate",
        "CheckCancelAfterError",
        "IsCancelledAfterError",
        "CleanupFailed",
        "Failed",
    ]
    (invoke,) = _scheduled(history, "lambda")
    assert invoke["Payload"]["action"] == "fail"
    # A mock may not throw a States.* error (LocalStack refuses it), so the stage fails the way
    # a rejected submission does: Batch.ClientException, which the Retry does not cover.
    assert invoke["Payload"]["error"]["Error"] == "Batch.ClientException"
    assert execution["cause"].startswith("JobQueue reconflow-localstack-gpu not found")

    answer = _run_cleanup_as_the_execution_asked(localstack, history)
    assert answer["status"] == _mocked_answer(history, "CleanupFailed")["status"] == FAILED
    job = localstack.store().get(job_id, consistent=True)
    assert job.status == FAILED
    assert job.error is not None
    assert job.error["code"]


def test_a_job_cancelled_while_its_stage_fails_is_cancelled_not_failed(
    localstack: LocalStackWorld, state_machine: str
) -> None:
    """The real check after the stage's error reads CANCELLING and takes the cancel branch.

    The cancel lands while the stage runs; a static mock stands for the first check having seen
    the job still QUEUED (the table already says CANCELLING when the execution starts).
    """
    job_id, execution, history = _execute(localstack, state_machine, CANCEL_DURING_STAGE, CANCELLING)

    assert execution["status"] == "SUCCEEDED"
    assert _entered(history) == [
        "CheckCancelBeforeValidate",
        "IsCancelledBeforeValidate",
        "Validate",
        "CheckCancelAfterError",
        "IsCancelledAfterError",
        "CleanupCancelled",
        "Cancelled",
    ]
    get_item = _scheduled(history, "dynamodb")[-1]  # the real read after the error
    assert get_item["Key"] == {"pk": {"S": job_id}, "sk": {"S": "job"}}

    answer = _run_cleanup_as_the_execution_asked(localstack, history)
    assert answer["status"] == CANCELLED
    assert localstack.store().get(job_id, consistent=True).status == CANCELLED
