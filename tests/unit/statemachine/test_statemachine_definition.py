"""The ASL file's shape: the stage chain, a cancel check before each stage, Retry/Catch policies,
and every value it takes from the template resolving to a resource the template declares."""

from __future__ import annotations

import json
from typing import Any

import pytest

from jobstate.stages import STAGE_NAMES
from reconflow.local import template

BATCH_SYNC = "arn:aws:states:::batch:submitJob.sync"
DYNAMODB_GET = "arn:aws:states:::dynamodb:getItem"
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
# Errors of the Batch API itself (throttling, service faults): the only ones worth retrying.
BATCH_SERVICE_ERRORS = {"Batch.AWSBatchException", "Batch.ServerException", "Batch.TooManyRequestsException"}
# What each substitution must name in the template: (resource type, attribute or None for Ref).
SUBSTITUTION_TARGETS = {
    "JobsTableName": ("AWS::DynamoDB::Table", None),
    "JobQueueArn": ("AWS::Batch::JobQueue", None),
    "JobDefinitionArn": ("AWS::Batch::JobDefinition", None),
    "CleanupFunctionArn": ("AWS::Serverless::Function", "Arn"),
}


@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    return template.load_template()


@pytest.fixture(scope="module")
def definition_text(sam: dict[str, Any]) -> str:
    return template.definition_path(template.TEMPLATE_PATH, "StateMachine", sam).read_text()


@pytest.fixture(scope="module")
def states(definition_text: str) -> dict[str, Any]:
    return json.loads(definition_text)["States"]


def stage_chain(definition: dict[str, Any]) -> list[str]:
    """Names of the Batch tasks met when every stage succeeds and no cancel is seen."""
    states, name, chain = definition["States"], definition["StartAt"], []
    while name is not None:
        state = states[name]
        if state.get("Resource") == BATCH_SYNC:
            chain.append(name)
        name = state.get("Default") if state["Type"] == "Choice" else state.get("Next")
    return chain


def batch_tasks(states: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: state for name, state in states.items() if state.get("Resource") == BATCH_SYNC}


def test_the_six_stages_run_in_order_each_with_its_stage_and_the_job_id(definition_text: str) -> None:
    definition = json.loads(definition_text)
    chain = stage_chain(definition)
    parameters = [definition["States"][name]["Parameters"]["Parameters"] for name in chain]
    assert parameters == [{"stage": stage, "job_id.$": "$.job_id"} for stage in STAGE_NAMES]


def test_every_stage_is_preceded_by_a_consistent_read_of_the_job_status(states: dict[str, Any]) -> None:
    for name in batch_tasks(states):
        choices = [n for n, s in states.items() if s["Type"] == "Choice" and s.get("Default") == name]
        assert len(choices) == 1, name
        choice = states[choices[0]]
        assert choice["Choices"] == [
            {"Variable": "$.check.status", "StringEquals": "CANCELLING", "Next": "CleanupCancelled"}
        ]
        (check,) = [s for s in states.values() if s.get("Next") == choices[0]]
        assert check["Resource"] == DYNAMODB_GET  # a read, no Lambda
        assert check["Parameters"]["ConsistentRead"] is True
        assert check["Parameters"]["Key"] == {"pk": {"S.$": "$.job_id"}, "sk": {"S": "job"}}


def test_batch_tasks_retry_only_batch_service_errors_with_backoff_and_jitter(states: dict[str, Any]) -> None:
    for name, task in batch_tasks(states).items():
        (retry,) = task["Retry"]
        assert set(retry["ErrorEquals"]) == BATCH_SERVICE_ERRORS, name
        assert retry["BackoffRate"] > 1
        assert retry["JitterStrategy"] == "FULL"
        assert retry["MaxDelaySeconds"] >= retry["IntervalSeconds"]


def test_every_stage_catches_into_the_cancel_or_fail_decision(states: dict[str, Any]) -> None:
    for name, task in batch_tasks(states).items():
        assert task["Catch"] == [
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "CheckCancelAfterError"}
        ]
        assert set(task["ResultSelector"]) == {"stage", "batch_job_id.$", "status.$"}, name
        assert task["ResultPath"] == "$.last_stage"
    decision = states[states["CheckCancelAfterError"]["Next"]]
    assert decision["Choices"][0]["Next"] == "CleanupCancelled"
    assert decision["Default"] == "CleanupFailed"
    assert states["CleanupFailed"]["Parameters"]["Payload"] == {
        "action": "fail",
        "job_id.$": "$.job_id",
        "error": {"Error.$": "$.error.Error", "Cause.$": "$.error.Cause"},
    }
    assert states["CleanupCancelled"]["Parameters"]["Payload"] == {"action": "cancel", "job_id.$": "$.job_id"}


def test_the_state_machine_never_marks_a_job_succeeded_itself(states: dict[str, Any]) -> None:
    lambda_payloads = [
        s["Parameters"]["Payload"] for s in states.values() if s.get("Resource") == LAMBDA_INVOKE
    ]
    assert {payload["action"] for payload in lambda_payloads} == {"cancel", "fail"}


def test_every_placeholder_is_a_substitution_naming_a_declared_resource(
    sam: dict[str, Any], definition_text: str
) -> None:
    substitutions = template.definition_substitutions(sam, "StateMachine")
    assert template.placeholders(definition_text) == set(substitutions) == set(SUBSTITUTION_TARGETS)
    for name, value in substitutions.items():
        resource_type, attribute = SUBSTITUTION_TARGETS[name]
        if attribute is None:
            logical = value["Ref"]
        else:
            logical, got_attribute = value["Fn::GetAtt"]
            assert got_attribute == attribute
        assert template.resource(sam, logical)["Type"] == resource_type, name


def test_every_lambda_and_table_in_the_definition_is_a_substitution(states: dict[str, Any]) -> None:
    functions = {
        s["Parameters"]["FunctionName"] for s in states.values() if s.get("Resource") == LAMBDA_INVOKE
    }
    tables = {s["Parameters"]["TableName"] for s in states.values() if s.get("Resource") == DYNAMODB_GET}
    assert functions == {"${CleanupFunctionArn}"}
    assert tables == {"${JobsTableName}"}
    queues = {s["Parameters"]["JobQueue"] for s in batch_tasks(states).values()}
    definitions = {s["Parameters"]["JobDefinition"] for s in batch_tasks(states).values()}
    assert (queues, definitions) == ({"${JobQueueArn}"}, {"${JobDefinitionArn}"})


def test_the_state_machine_role_allows_what_the_definition_calls(sam: dict[str, Any]) -> None:
    policies = template.resource(sam, "StateMachine")["Properties"]["Policies"]
    statements = [st for policy in policies if "Statement" in policy for st in policy["Statement"]]
    invoke = next(st for st in statements if st["Action"] == "lambda:InvokeFunction")
    assert invoke["Resource"][0] == {"Fn::GetAtt": ["CleanupFunction", "Arn"]}
    actions = {
        action
        for st in statements
        for action in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])
    }
    assert {"batch:SubmitJob", "batch:DescribeJobs", "batch:TerminateJob", "dynamodb:GetItem"} <= actions
    assert {"events:PutTargets", "events:PutRule", "events:DescribeRule"} <= actions


def test_filling_fails_loudly_when_a_substitution_is_missing(definition_text: str) -> None:
    with pytest.raises(template.UnresolvedError, match="JobQueueArn"):
        template.fill_placeholders(
            definition_text, {"JobsTableName": "t", "JobDefinitionArn": "d", "CleanupFunctionArn": "f"}
        )
