"""The client builder: one cached client per service, standard retries with the configured attempts."""

from __future__ import annotations

import pytest

from jobstate import aws as jobstate_aws
from jobstate.settings import Settings


@pytest.mark.usefixtures("aws")
def test_clients_are_cached_per_service_with_standard_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    first = jobstate_aws.client("dynamodb")
    assert jobstate_aws.client("dynamodb") is first
    assert jobstate_aws.client("s3") is not first
    retries = first.meta.config.retries
    assert retries["mode"] == "standard"
    assert retries["total_max_attempts"] == Settings().aws_max_attempts
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
    other = jobstate_aws.client("dynamodb", Settings())
    assert other is not first
    assert other.meta.config.retries["total_max_attempts"] == 3
    jobstate_aws.reset_clients()
    assert jobstate_aws.client("dynamodb") is not first


@pytest.mark.usefixtures("aws")
def test_endpoint_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    jobstate_aws.reset_clients()
    assert jobstate_aws.client("s3").meta.endpoint_url == "http://127.0.0.1:4566"
    assert jobstate_aws.resource("dynamodb").meta.client.meta.endpoint_url == "http://127.0.0.1:4566"
