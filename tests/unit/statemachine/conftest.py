"""Fixtures of the state machine tests: the real ASL in moto's interpreter, run in this process."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from aws_fixtures import BUCKET_NAME, TABLE_NAME, aws_env  # noqa: F401
from moto import mock_aws
from statemachine_harness import MOTO_CONFIG, REGION, Pipeline, build_pipeline

from handlers import deps
from handlers.observability import metrics
from jobstate import aws as jobstate_aws
from reconflow.local import moto_batch

SERVICES = ("iam", "dynamodb", "s3", "lambda", "batch", "stepfunctions")


@pytest.fixture
def pipeline(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:  # noqa: F811
    for name, value in {
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }.items():
        monkeypatch.setenv(name, value)
    jobstate_aws.reset_clients()
    deps.reset()
    with mock_aws(config=MOTO_CONFIG):
        clients = {service: boto3.client(service, region_name=REGION) for service in SERVICES}
        built = build_pipeline(clients, TABLE_NAME, BUCKET_NAME)
        with moto_batch.patched(executor=built.executor), built.runtime.patch_moto():
            yield built
    deps.reset()
    jobstate_aws.reset_clients()
    metrics.clear_metrics()
