"""The IAM policies of the transformed template, as AWS will evaluate them.

parliament finds nothing the template does not justify in place, and the cleanup role allows each
S3 request ``purge_job`` makes: the action, the resource, and every condition of the statement
that allows it, evaluated against the condition keys that action carries (IAM's service reference
data as parliament ships it). A condition on a key the action does not carry never matches: that
is how ``s3:prefix`` on ``s3:ListBucketMultipartUploads`` denied every cancel's purge.
"""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from aws_fixtures import (
    FAKE_AWS_ENV,
    REGION,
    create_data_bucket,
    fill_versions,
    moto_aws,
    start_unfinished_upload,
)

from jobstate.ids import new_job_id
from jobstate.layout import input_key, work_key
from jobstate.purge import purge_job
from reconflow.local import iam_lint, policies, template

CFN = policies.transformed_template()
BUCKET = policies.resolver_for(CFN).ref("DataBucket")
# The S3 operations purge_job calls and the IAM action each needs (the service authorization
# reference: ListObjectVersions is authorised as s3:ListBucketVersions, and so on).
ACTION_OF_OPERATION = {
    "ListObjectVersions": "s3:ListBucketVersions",
    "ListObjects": "s3:ListBucket",
    "ListObjectsV2": "s3:ListBucket",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
}


@dataclass(frozen=True)
class Request:
    """One authorisation IAM makes: an action on a resource with the request's condition keys."""

    action: str
    resource: str
    context: Mapping[str, str] = field(default_factory=dict)


def _privilege(action: str) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import parliament

    service, name = action.split(":")
    definition = next(s for s in parliament.iam_definition if s["prefix"] == service)
    return next(p for p in definition["privileges"] if p["privilege"] == name)


def condition_keys(action: str) -> set[str]:
    """The condition keys IAM evaluates for ``action`` (per resource type, plus the global aws:*)."""
    return {key for resource in _privilege(action)["resource_types"] for key in resource["condition_keys"]}


def requests_of_call(operation: str, params: Mapping[str, Any]) -> Iterator[Request]:
    """The authorisations one S3 call needs, with only the condition keys its action carries."""
    bucket_arn = f"arn:aws:s3:::{params['Bucket']}"
    if operation == "DeleteObjects":
        for entry in params["Delete"]["Objects"]:
            action = "s3:DeleteObjectVersion" if entry.get("VersionId") else "s3:DeleteObject"
            yield Request(action, f"{bucket_arn}/{entry['Key']}")
        return
    action = ACTION_OF_OPERATION[operation]
    if "Key" in params:
        yield Request(action, f"{bucket_arn}/{params['Key']}")
        return
    offered = {"s3:prefix": params.get("Prefix", ""), "s3:max-keys": str(params.get("MaxKeys", ""))}
    keys = condition_keys(action)
    yield Request(action, bucket_arn, {k: v for k, v in offered.items() if k in keys})


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _condition_holds(condition: Mapping[str, Mapping[str, Any]], context: Mapping[str, str]) -> bool:
    for operator, tests in condition.items():
        for key, wanted in tests.items():
            if key not in context:  # IAM: a key absent from the request fails the condition
                return False
            if operator == "StringLike":
                matched = any(fnmatch.fnmatchcase(context[key], pattern) for pattern in _listed(wanted))
            elif operator == "StringEquals":
                matched = context[key] in _listed(wanted)
            else:
                raise AssertionError(f"this test does not evaluate {operator}; extend it")
            if not matched:
                return False
    return True


def allowed(statements: list[dict[str, Any]], request: Request) -> bool:
    """Some Allow statement matches action, resource and conditions, and no Deny matches."""

    def matches(statement: dict[str, Any]) -> bool:
        return (
            any(fnmatch.fnmatchcase(request.action, a) for a in _listed(statement["Action"]))
            and any(fnmatch.fnmatchcase(request.resource, r) for r in _listed(statement["Resource"]))
            and _condition_holds(statement.get("Condition", {}), request.context)
        )

    if any(s["Effect"] == "Deny" and matches(s) for s in statements):
        return False
    return any(s["Effect"] == "Allow" and matches(s) for s in statements)


def role_statements(role: str) -> list[dict[str, Any]]:
    return [
        statement
        for policy in policies.policy_documents(CFN)
        if policy.resource == role
        for statement in policy.statements()
    ]


@pytest.fixture
def recorded_purge(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Every S3 call of a purge over versions, delete markers and an unfinished upload."""
    calls: list[tuple[str, dict[str, Any]]] = []
    with moto_aws(FAKE_AWS_ENV):
        s3 = boto3.client("s3", region_name=REGION)
        create_data_bucket(s3, BUCKET, versioned=True)
        job_id = new_job_id()
        keys = [work_key(job_id, "hull", f"part-{i}.bin") for i in range(5)]
        fill_versions(BUCKET, keys, second_versions=2, delete_markers=2)
        start_unfinished_upload(s3, BUCKET, input_key(job_id, "capture.zip"))

        def record(params: dict[str, Any], model: Any, **_: Any) -> None:
            calls.append((model.name, dict(params)))

        s3.meta.events.register("before-parameter-build.s3.*", record)
        report = purge_job(s3, BUCKET, job_id)
    assert report.multipart_uploads == 1
    assert report.delete_markers == 2
    assert report.versions == 7
    return calls


def test_parliament_finds_nothing_the_template_does_not_justify() -> None:
    unjustified, stale = iam_lint.check(
        iam_lint.findings(CFN), iam_lint.justifications(template.load_template())
    )
    assert [str(f) for f in unjustified] == []
    assert stale == []


def test_a_policy_the_fix_replaced_is_flagged_by_the_lint() -> None:
    """The statement that denied every purge: parliament must keep catching it."""
    document = policies.as_json(
        policies.NamedPolicy(
            "Probe",
            "probe",
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "s3:ListBucketMultipartUploads",
                        "Resource": f"arn:aws:s3:::{BUCKET}",
                        "Condition": {"StringLike": {"s3:prefix": "jobs/*"}},
                    }
                ],
            },
        )
    )
    assert any(issue == "UNKNOWN_CONDITION_FOR_ACTION" for issue, _ in iam_lint.analyze(document))


def test_the_cleanup_role_allows_every_s3_request_of_a_purge(
    recorded_purge: list[tuple[str, dict[str, Any]]],
) -> None:
    statements = role_statements("CleanupFunctionRole")
    operations = {operation for operation, _ in recorded_purge}
    assert {
        "ListObjectVersions",
        "ListMultipartUploads",
        "DeleteObjects",
        "AbortMultipartUpload",
    } <= operations
    requests = [r for operation, params in recorded_purge for r in requests_of_call(operation, params)]
    denied = [r for r in requests if not allowed(statements, r)]
    assert denied == []


def test_a_prefix_condition_on_listing_uploads_would_deny_the_purge(
    recorded_purge: list[tuple[str, dict[str, Any]]],
) -> None:
    """The evaluator above is strict enough to catch the original bug."""
    assert "s3:prefix" not in condition_keys("s3:ListBucketMultipartUploads")
    old_statement = {
        "Effect": "Allow",
        "Action": ["s3:ListBucket", "s3:ListBucketVersions", "s3:ListBucketMultipartUploads"],
        "Resource": f"arn:aws:s3:::{BUCKET}",
        "Condition": {"StringLike": {"s3:prefix": "jobs/*"}},
    }
    uploads = next(params for operation, params in recorded_purge if operation == "ListMultipartUploads")
    (request,) = requests_of_call("ListMultipartUploads", uploads)
    assert not allowed([old_statement], request)
    versions = next(params for operation, params in recorded_purge if operation == "ListObjectVersions")
    (request,) = requests_of_call("ListObjectVersions", versions)
    assert allowed([old_statement], request)


def test_the_cleanup_role_cannot_list_or_delete_outside_jobs() -> None:
    statements = role_statements("CleanupFunctionRole")
    assert not allowed(statements, Request("s3:DeleteObject", f"arn:aws:s3:::{BUCKET}/other/key"))
    assert not allowed(
        statements, Request("s3:ListBucketVersions", f"arn:aws:s3:::{BUCKET}", {"s3:prefix": "other/"})
    )
