"""Claims about who may do what in AWS, read from ``template.yaml`` (the deployed truth):
every route behind the JWT authorizer, a private encrypted bucket reachable over TLS only, and
each role limited to the actions and resources its code uses."""

from __future__ import annotations

import json
from typing import Any

import pytest

from reconflow.local import template

SAM = template.load_template(template.TEMPLATE_PATH)
RESOURCES = SAM["Resources"]
FUNCTIONS = template.resources_of_type(SAM, template.FUNCTION_TYPES)
# The only statements allowed a Resource of "*": APIs that take no resource ARN.
STAR_RESOURCE_ACTIONS = frozenset(
    {
        "batch:DescribeJobs",
        "batch:ListJobs",
        "logs:CreateLogDelivery",
        "logs:GetLogDelivery",
        "logs:UpdateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:DescribeResourcePolicies",
        "logs:DescribeLogGroups",
    }
)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(logical_id: str) -> list[dict[str, Any]]:
    """Inline policy statements of a function, state machine or role."""
    properties = RESOURCES[logical_id]["Properties"]
    statements: list[dict[str, Any]] = []
    for policy in properties.get("Policies", []):
        if "Statement" in policy:
            statements += policy["Statement"]
        if "PolicyDocument" in policy:
            statements += policy["PolicyDocument"]["Statement"]
    return statements


def _text(value: Any) -> str:
    return json.dumps(value, default=str)


def _actions(logical_id: str) -> set[str]:
    return {action for s in _statements(logical_id) for action in _as_list(s["Action"])}


def test_every_api_route_is_behind_the_jwt_authorizer() -> None:
    auth = RESOURCES["Api"]["Properties"]["Auth"]
    assert auth["DefaultAuthorizer"] == "JwtAuthorizer"
    jwt = auth["Authorizers"]["JwtAuthorizer"]
    assert jwt["IdentitySource"] == "$request.header.Authorization"
    assert set(jwt["JwtConfiguration"]) == {"issuer", "audience"}
    routes = [
        e
        for f in FUNCTIONS.values()
        for e in f["Properties"].get("Events", {}).values()
        if e["Type"] == "HttpApi"
    ]
    assert len(routes) == 5
    for route in routes:
        assert "Auth" not in route["Properties"], route  # no route opts out (Authorizer: NONE)


def test_the_bucket_is_private_encrypted_and_tls_only() -> None:
    bucket = RESOURCES["DataBucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    assert bucket["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]  # no ACLs
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    (statement,) = RESOURCES["DataBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Principal"] == "*"
    assert statement["Action"] == "s3:*"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert len(statement["Resource"]) == 2  # the bucket and its objects


@pytest.mark.parametrize("logical_id", [*sorted(FUNCTIONS), "StateMachine", "StageJobRole"])
def test_no_role_grants_a_wildcard_action_or_an_unlisted_wildcard_resource(logical_id: str) -> None:
    for statement in _statements(logical_id):
        assert statement["Effect"] == "Allow"
        actions = _as_list(statement["Action"])
        assert not [a for a in actions if a == "*" or a.endswith(":*")], statement
        if "*" in _as_list(statement["Resource"]):
            assert set(actions) <= STAR_RESOURCE_ACTIONS, statement


def test_the_api_can_only_sign_uploads_to_input_and_downloads_from_output() -> None:
    s3 = [s for s in _statements("ApiFunction") if any(a.startswith("s3:") for a in _as_list(s["Action"]))]
    granted = {(s["Action"], _text(s["Resource"])) for s in s3}
    assert granted == {
        ("s3:PutObject", _text({"Fn::Sub": "${DataBucket.Arn}/jobs/*/input/*"})),
        ("s3:GetObject", _text({"Fn::Sub": "${DataBucket.Arn}/jobs/*/output/*"})),
    }
    assert "dynamodb:Scan" not in _actions("ApiFunction")
    queries = [s for s in _statements("ApiFunction") if s["Action"] == "dynamodb:Query"]
    assert [_text(s["Resource"]) for s in queries] == [_text({"Fn::Sub": "${JobsTable.Arn}/index/by-owner"})]


def test_only_the_cleanup_role_can_delete_objects_and_only_under_jobs() -> None:
    deleters = {
        logical_id
        for logical_id in [*FUNCTIONS, "StateMachine", "StageJobRole"]
        if {"s3:DeleteObject", "s3:DeleteObjectVersion"} & _actions(logical_id)
    }
    assert deleters == {"CleanupFunction"}
    assert RESOURCES["ReconcileFunction"]["Properties"]["Role"] == {
        "Fn::GetAtt": ["CleanupFunctionRole", "Arn"]
    }
    (purge,) = [s for s in _statements("CleanupFunction") if "s3:DeleteObject" in s["Action"]]
    assert purge["Resource"] == {"Fn::Sub": "${DataBucket.Arn}/jobs/*"}


def test_the_upload_function_cannot_write_objects_and_starts_only_its_state_machine() -> None:
    actions = _actions("UploadFunction")
    assert not [a for a in actions if a.startswith("s3:") and a != "s3:GetObject"]
    (start,) = [s for s in _statements("UploadFunction") if s["Action"] == "states:StartExecution"]
    assert start["Resource"] == {"Ref": "StateMachine"}


def test_the_gpu_stages_reach_only_job_objects_and_the_jobs_table() -> None:
    for statement in _statements("StageJobRole"):
        resources = _text(statement["Resource"])
        if statement["Action"] == "events:PutEvents":  # the job status events, default bus only
            assert resources.endswith(':event-bus/default"}'), resources
            continue
        assert (
            "${DataBucket.Arn}/jobs/*" in resources or "DataBucket" in resources or "JobsTable" in resources
        )
    assert not [a for a in _actions("StageJobRole") if a.startswith(("states:", "batch:", "iam:"))]
