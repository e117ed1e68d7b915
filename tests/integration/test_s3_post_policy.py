"""Presigned POST uploads to moto's S3 are held to their policy, as S3 holds them (s3_post_policy)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer

from reconflow.local.s3_post_policy import check_post_policy, enforced

BUCKET = "uploads"
KEY = "jobs/0f8fad5b-d9cb-469f-a165-70867728950e/input/capture.zip"
MAX_BYTES = 64
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def s3(monkeypatch_module: pytest.MonkeyPatch) -> Iterator[Any]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch_module.setenv(name, value)
    client = boto3.client("s3", region_name="us-east-1", endpoint_url=f"http://{host}:{port}")
    client.create_bucket(Bucket=BUCKET)
    with enforced():
        yield client
    server.stop()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def _form(s3: Any, expires_in: int = 60) -> dict[str, Any]:
    return s3.generate_presigned_post(
        Bucket=BUCKET,
        Key=KEY,
        Conditions=[["content-length-range", 1, MAX_BYTES]],
        ExpiresIn=expires_in,
    )


def _post(form: dict[str, Any], content: bytes, **extra_fields: str) -> requests.Response:
    files = {"file": ("capture.zip", content, "application/zip")}
    return requests.post(form["url"], data={**form["fields"], **extra_fields}, files=files, timeout=10)


def _exists(s3: Any) -> bool:
    return s3.list_objects_v2(Bucket=BUCKET, Prefix=KEY).get("KeyCount", 0) > 0


@pytest.fixture(autouse=True)
def empty_bucket(s3: Any) -> None:
    s3.delete_object(Bucket=BUCKET, Key=KEY)


def test_a_zero_byte_upload_is_refused_with_entity_too_small(s3: Any) -> None:
    response = _post(_form(s3), b"")
    assert response.status_code == 400
    assert "<Code>EntityTooSmall</Code>" in response.text
    assert "<MinSizeAllowed>1</MinSizeAllowed>" in response.text
    assert not _exists(s3)


def test_an_upload_over_the_range_is_refused_with_entity_too_large(s3: Any) -> None:
    response = _post(_form(s3), b"x" * (MAX_BYTES + 1))
    assert response.status_code == 400
    assert "<Code>EntityTooLarge</Code>" in response.text
    assert not _exists(s3)


@pytest.mark.parametrize("size", [1, MAX_BYTES])
def test_uploads_at_both_ends_of_the_range_are_stored(s3: Any, size: int) -> None:
    response = _post(_form(s3), b"z" * size)
    assert response.status_code == 204
    assert s3.get_object(Bucket=BUCKET, Key=KEY)["ContentLength"] == size


def test_another_key_than_the_policys_is_refused(s3: Any) -> None:
    response = _post(_form(s3), b"zip", key="jobs/other/input/capture.zip")
    assert response.status_code == 403
    assert "Policy Condition failed" in response.text
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0


def test_a_field_the_policy_does_not_name_is_refused(s3: Any) -> None:
    response = _post(_form(s3), b"zip", acl="public-read")
    assert response.status_code == 403
    assert "Extra input fields: acl" in response.text


def test_an_expired_policy_is_refused(s3: Any) -> None:
    form = _form(s3)
    policy = json.loads(base64.b64decode(form["fields"]["policy"]))
    policy["expiration"] = (datetime.now(UTC) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    form["fields"]["policy"] = base64.b64encode(json.dumps(policy).encode()).decode()
    response = _post(form, b"zip")
    assert response.status_code == 403
    assert "Policy expired" in response.text


def test_a_policy_that_is_not_base64_json_is_refused(s3: Any) -> None:
    form = _form(s3)
    form["fields"]["policy"] = "not a policy"
    assert _post(form, b"zip").status_code == 400


def test_starts_with_conditions_are_matched_on_the_prefix() -> None:
    policy = {
        "expiration": "2026-12-01T10:00:00Z",
        "conditions": [["starts-with", "$key", "jobs/"], {"bucket": BUCKET}],
    }
    fields = {"bucket": BUCKET}
    assert check_post_policy(policy, {**fields, "key": "jobs/a"}, 3, NOW) is None
    refusal = check_post_policy(policy, {**fields, "key": "other/a"}, 3, NOW)
    assert refusal is not None
    assert refusal.code == "AccessDenied"
