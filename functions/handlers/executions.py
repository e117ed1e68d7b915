"""Step Functions calls of the handlers: start a job's execution (idempotently) and look one up."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from jobstate.settings import Settings

EXECUTION_ALREADY_EXISTS = "ExecutionAlreadyExists"
EXECUTION_DOES_NOT_EXIST = "ExecutionDoesNotExist"
RUNNING = "RUNNING"


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def execution_arn(state_machine_arn: str, name: str) -> str:
    """The ARN an execution called ``name`` of the state machine has (Step Functions' fixed format)."""
    prefix, marker, machine = state_machine_arn.partition(":stateMachine:")
    if not marker:
        raise ValueError("not a state machine ARN")
    return f"{prefix}:execution:{machine}:{name}"


def execution_input(job_id: str, bucket: str, input_key: str, settings: Settings) -> dict[str, Any]:
    """The state machine's input: the job, its capture, and the limits the definition reads
    (``limits.stage_time_limit_s``: each stage's TimeoutSecondsPath)."""
    return {
        "job_id": job_id,
        "bucket": bucket,
        "input_key": input_key,
        "limits": {"stage_time_limit_s": settings.stage_time_limit_s},
    }


def start_job_execution(
    sfn: Any, state_machine_arn: str, job_id: str, bucket: str, input_key: str, settings: Settings
) -> tuple[str, bool]:
    """StartExecution named after the job; ``(arn, True)`` when this call started it, ``(arn, False)``
    when an execution of that name exists already (a duplicate or concurrent delivery).
    """
    payload = json.dumps(execution_input(job_id, bucket, input_key, settings), separators=(",", ":"))
    try:
        started = sfn.start_execution(stateMachineArn=state_machine_arn, name=job_id, input=payload)
    except ClientError as error:
        if error_code(error) != EXECUTION_ALREADY_EXISTS:
            raise
        return execution_arn(state_machine_arn, job_id), False
    return started["executionArn"], True


def execution_status(sfn: Any, arn: str) -> str | None:
    """RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED, ...; None when there is no such execution."""
    try:
        return str(sfn.describe_execution(executionArn=arn)["status"])
    except ClientError as error:
        if error_code(error) == EXECUTION_DOES_NOT_EXIST:
            return None
        raise
