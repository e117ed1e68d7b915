"""The process executor runs real moto Batch jobs (moto's in-process backend) as local processes."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from reconflow.local import moto_batch
from reconflow.local.executor import ProcessExecutor, substitute_parameters
from reconflow.local.probe import wait_until

REGION = "us-east-1"
# Exits with the code passed as the job parameter ``code``; prints an environment variable first.
EXIT_WITH = ["python", "-c", "import os, sys; print(os.environ['STAGE_NOTE']); sys.exit(int('Ref::code'))"]
SLEEP_FOREVER = ["python", "-c", "import time; time.sleep(60)"]
TERMINATE_WITHIN_S = 3.0


@pytest.fixture
def batch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[Any, ProcessExecutor, str]]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "t",
        "AWS_SECRET_ACCESS_KEY": "t",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    executor = ProcessExecutor(base_environment={"STAGE_NOTE": "from-the-stack"}, log_dir=tmp_path)
    with mock_aws(config={"batch": {"use_docker": False}}), moto_batch.patched(executor=executor.start):
        client = boto3.client("batch", region_name=REGION)
        iam = boto3.client("iam", region_name=REGION)
        role = iam.create_role(RoleName="batch", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        environment = client.create_compute_environment(
            computeEnvironmentName="local", type="UNMANAGED", state="ENABLED", serviceRole=role
        )["computeEnvironmentArn"]
        queue = client.create_job_queue(
            jobQueueName="q",
            state="ENABLED",
            priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": environment}],
        )["jobQueueArn"]
        yield client, executor, queue
        executor.shutdown()


def _define(client: Any, command: list[str]) -> str:
    return client.register_job_definition(
        jobDefinitionName="stage",
        type="container",
        containerProperties={"image": "local", "command": command, "vcpus": 1, "memory": 128},
    )["jobDefinitionArn"]


def _finished(client: Any, job_id: str) -> dict[str, Any] | None:
    job = client.describe_jobs(jobs=[job_id])["jobs"][0]
    return job if job["status"] in ("SUCCEEDED", "FAILED") else None


@pytest.mark.parametrize(("code", "status"), [("0", "SUCCEEDED"), ("3", "FAILED")])
def test_job_status_follows_the_process_exit_code(batch, code: str, status: str) -> None:
    client, executor, queue = batch
    definition = _define(client, EXIT_WITH)
    job_id = client.submit_job(
        jobName="j", jobQueue=queue, jobDefinition=definition, parameters={"code": code}
    )["jobId"]
    job = wait_until(lambda: _finished(client, job_id), timeout_s=30)
    assert job["status"] == status
    (run,) = executor.runs
    assert run.returncode == int(code)
    assert run.command[0] == sys.executable
    assert run.command[-1].endswith("sys.exit(int('" + code + "'))")
    assert "from-the-stack" in run.log_path.read_text()


def test_terminate_job_kills_the_process_and_fails_the_job(batch) -> None:
    client, executor, queue = batch
    job_id = client.submit_job(jobName="j", jobQueue=queue, jobDefinition=_define(client, SLEEP_FOREVER))[
        "jobId"
    ]
    wait_until(lambda: executor.running() == 1, timeout_s=10)
    asked = time.monotonic()
    client.terminate_job(jobId=job_id, reason="stop")
    job = wait_until(lambda: _finished(client, job_id), timeout_s=10)
    assert time.monotonic() - asked < TERMINATE_WITHIN_S
    assert job["status"] == "FAILED"
    assert executor.runs[0].terminated


def test_ref_parameters_are_substituted_inside_arguments() -> None:
    command = ["python", "-m", "gpu_container", "Ref::stage", "--job-id", "Ref::job_id", "x=Ref::stage"]
    assert substitute_parameters(command, {"stage": "hull", "job_id": "42"}) == [
        "python",
        "-m",
        "gpu_container",
        "hull",
        "--job-id",
        "42",
        "x=hull",
    ]
