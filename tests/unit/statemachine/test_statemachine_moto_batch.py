"""reconflow.local.moto_batch: the executor decides each job, and describing a job changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aws_fixtures import aws_env  # noqa: F401
from moto import mock_aws
from moto.batch.models import Job
from moto.batch_simple.models import BatchSimpleBackend
from statemachine_harness import MOTO_CONFIG, REGION

from reconflow.local import moto_batch

DEFINITION_ENVIRONMENT = [{"name": "TABLE_NAME", "value": "jobs"}]


@pytest.fixture
def batch(aws_env: None) -> Iterator[tuple[Any, str, str]]:  # noqa: F811
    """A Batch client with a queue and a job definition in moto (no Docker)."""
    with mock_aws(config=MOTO_CONFIG):
        iam, client = boto3.client("iam", region_name=REGION), boto3.client("batch", region_name=REGION)
        role = iam.create_role(RoleName="batch", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        environment = client.create_compute_environment(
            computeEnvironmentName="gpu-ce", type="UNMANAGED", state="ENABLED", serviceRole=role
        )["computeEnvironmentArn"]
        queue = client.create_job_queue(
            jobQueueName="gpu-queue",
            state="ENABLED",
            priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": environment}],
        )["jobQueueArn"]
        definition = client.register_job_definition(
            jobDefinitionName="stage",
            type="container",
            containerProperties={
                "image": "img",
                "command": ["python", "-m", "gpu_container", "Ref::stage"],
                "environment": DEFINITION_ENVIRONMENT,
                "resourceRequirements": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "512"}],
            },
        )["jobDefinitionArn"]
        yield client, queue, definition


def submit(client: Any, queue: str, definition: str, stage: str) -> str:
    return client.submit_job(
        jobName=f"job-{stage}",
        jobQueue=queue,
        jobDefinition=definition,
        parameters={"stage": stage},
        containerOverrides={
            "environment": [{"name": "MANAGED_BY_AWS", "value": "STARTED_BY_STEP_FUNCTIONS"}]
        },
    )["jobId"]


def test_the_executor_decides_each_jobs_outcome(batch: tuple[Any, str, str]) -> None:
    client, queue, definition = batch
    executor = moto_batch.OutcomeExecutor(outcome=lambda p: True if p["stage"] == "hull" else "no masks")
    with moto_batch.patched(executor=executor):
        ok, failed = (submit(client, queue, definition, stage) for stage in ("hull", "mesh"))
        described = {job["jobId"]: job for job in client.describe_jobs(jobs=[ok, failed])["jobs"]}
    assert described[ok]["status"] == "SUCCEEDED"
    assert described[failed]["status"] == "FAILED"
    assert described[failed]["statusReason"] == "no masks"
    assert [(job.parameters["stage"], job.succeeded) for job in executor.submitted] == [
        ("hull", True),
        ("mesh", False),
    ]


def test_describing_a_job_again_does_not_grow_its_environment(batch: tuple[Any, str, str]) -> None:
    client, queue, definition = batch
    with moto_batch.patched(executor=moto_batch.OutcomeExecutor()):
        job_id = submit(client, queue, definition, "hull")
        descriptions = [client.describe_jobs(jobs=[job_id])["jobs"][0] for _ in range(3)]
    names = [[item["name"] for item in d["container"]["environment"]] for d in descriptions]
    assert names == [["MANAGED_BY_AWS", "TABLE_NAME", "AWS_BATCH_JOB_ID"]] * 3


def test_leaving_the_context_restores_moto(batch: tuple[Any, str, str]) -> None:
    originals = (BatchSimpleBackend.submit_job, Job._get_container_property)
    with moto_batch.patched(executor=moto_batch.OutcomeExecutor()):
        assert (BatchSimpleBackend.submit_job, Job._get_container_property) != originals
    assert (BatchSimpleBackend.submit_job, Job._get_container_property) == originals
