"""Shared moto fixtures: the jobs table (both GSIs, TTL) and the data bucket, as template.yaml has them.

Use from any conftest under tests/unit (this folder is on sys.path through its conftest):

    from aws_fixtures import aws, aws_env, bucket, jobs_table, versioned_bucket  # noqa: F401

``aws`` is the moto context (``mock_aws``) with fake credentials and ``TABLE_NAME``/``BUCKET_NAME``
set; ``jobs_table`` and ``bucket`` create the resources inside it. ``moto_aws`` is the same context
for a fixture of another scope or environment (the handler tests, the fuzzers). The builders
(``create_jobs_table``, ``create_data_bucket``, ``create_pass_state_machine``) take a client, so a
benchmark or an integration test can make the same resources on a moto server; ``fill_versions``
writes a job's worth of object versions straight into moto's S3 (the purge test and its benchmark).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import pytest
from moto import mock_aws

from jobstate import aws as jobstate_aws

REGION = "us-east-1"
TABLE_NAME = "reconflow-jobs-test"
BUCKET_NAME = "reconflow-data-test"
ACCOUNT_ID = "123456789012"  # moto's default account

# Key schema and indexes of the jobs table (DESIGN.md, "DynamoDB: one table").
TABLE_ATTRIBUTES = (
    ("pk", "S"),
    ("sk", "S"),
    ("owner", "S"),
    ("created_at", "S"),
    ("status", "S"),
    ("updated_at", "S"),
)
OWNER_INDEX = "by-owner"
STATUS_INDEX = "by-status"
TTL_ATTRIBUTE = "expires_at"
# A state machine moto records executions of (it does not run them in the unit tests).
PASS_DEFINITION = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})
# Fake credentials and the region: what every moto test sets, whatever else its code reads.
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


def _index(name: str, hash_key: str, range_key: str) -> dict[str, Any]:
    return {
        "IndexName": name,
        "KeySchema": [
            {"AttributeName": hash_key, "KeyType": "HASH"},
            {"AttributeName": range_key, "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "ALL"},
    }


def create_jobs_table(dynamodb_client: Any, table_name: str = TABLE_NAME) -> None:
    """The jobs table: pk/sk, GSIs ``by-owner`` and ``by-status``, TTL on ``expires_at``."""
    dynamodb_client.create_table(
        TableName=table_name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": t} for n, t in TABLE_ATTRIBUTES],
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        GlobalSecondaryIndexes=[
            _index(OWNER_INDEX, "owner", "created_at"),
            _index(STATUS_INDEX, "status", "updated_at"),
        ],
    )
    dynamodb_client.update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
    )


def create_data_bucket(s3_client: Any, bucket: str = BUCKET_NAME, *, versioned: bool = False) -> None:
    """The data bucket (us-east-1 needs no location constraint), versioned when asked."""
    s3_client.create_bucket(Bucket=bucket)
    if versioned:
        s3_client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})


def create_pass_state_machine(sfn_client: Any, name: str) -> str:
    """A state machine of one Pass state; returns its ARN."""
    made = sfn_client.create_state_machine(
        name=name, definition=PASS_DEFINITION, roleArn=f"arn:aws:iam::{ACCOUNT_ID}:role/{name}"
    )
    return made["stateMachineArn"]


def moto_s3_backend() -> Any:
    """moto's S3 backend of its default account (``mock_aws``'s, or a moto server's in this process)."""
    from moto.s3.models import s3_backends

    return s3_backends[ACCOUNT_ID]["aws"]


def fill_versions(bucket: str, keys: Sequence[str], *, second_versions: int, delete_markers: int) -> None:
    """A version of each key, a second one of the first ``second_versions`` keys and a delete marker
    on the last ``delete_markers``, written to moto's backend directly: thousands of versions take
    seconds instead of minutes."""
    backend = moto_s3_backend()
    for key in keys:
        backend.put_object(bucket, key, b"v1")
    for key in keys[:second_versions]:
        backend.put_object(bucket, key, b"v2")
    for key in keys[len(keys) - delete_markers :]:
        backend.delete_object(bucket, key)


def start_unfinished_upload(s3_client: Any, bucket: str, key: str) -> None:
    """A multipart upload of ``key`` with one part, never completed."""
    upload = s3_client.create_multipart_upload(Bucket=bucket, Key=key)
    s3_client.upload_part(Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=b"part")


def set_fake_aws_env(patch: pytest.MonkeyPatch, env: Mapping[str, str]) -> None:
    """Fake credentials, the region and ``env``; no endpoint override, no profile."""
    for name, value in {**FAKE_AWS_ENV, **env}.items():
        patch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        patch.delenv(name, raising=False)


@contextmanager
def moto_aws(env: Mapping[str, str]) -> Iterator[Any]:
    """moto's in-process AWS (the ``mock_aws`` object) with fake credentials and ``env`` set until
    the end; the core's cached clients are dropped before and after."""
    with pytest.MonkeyPatch.context() as patch:
        set_fake_aws_env(patch, env)
        jobstate_aws.reset_clients()
        with mock_aws() as mock:
            yield mock
        jobstate_aws.reset_clients()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials, the region and the resource names; no endpoint override."""
    set_fake_aws_env(monkeypatch, {"TABLE_NAME": TABLE_NAME, "BUCKET_NAME": BUCKET_NAME})


@pytest.fixture
def aws(aws_env: None) -> Iterator[None]:
    """moto's in-process AWS; the core's cached clients are dropped before and after."""
    jobstate_aws.reset_clients()
    with mock_aws():
        yield
    jobstate_aws.reset_clients()


@pytest.fixture
def jobs_table(aws: None) -> str:
    """Creates the jobs table; returns its name."""
    create_jobs_table(jobstate_aws.client("dynamodb"), TABLE_NAME)
    return TABLE_NAME


@pytest.fixture
def bucket(aws: None) -> str:
    """Creates the (unversioned) data bucket; returns its name."""
    create_data_bucket(jobstate_aws.client("s3"), BUCKET_NAME)
    return BUCKET_NAME


@pytest.fixture
def versioned_bucket(aws: None) -> str:
    """Creates the data bucket with versioning enabled (as the template has it); returns its name."""
    create_data_bucket(jobstate_aws.client("s3"), BUCKET_NAME, versioned=True)
    return BUCKET_NAME
