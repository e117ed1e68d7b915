"""moto's AWS for the handler fuzzers: the jobs table, the versioned data bucket and a state machine,
with the environment the template gives the functions. One per test; examples share it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aws_fixtures import REGION, TABLE_NAME, create_data_bucket, create_jobs_table
from handler_helpers import BUCKET, STATE_MACHINE_ARN, STATE_MACHINE_NAME
from hypothesis import HealthCheck, settings
from moto import mock_aws
from seeded_jobs import SeededJobs

from handlers import deps
from handlers.observability import metrics
from jobstate import aws as jobstate_aws
from jobstate.jobs import Job

# Bounded for CI: every fuzz test together stays well under a minute on two slow cores.
FUZZ_SETTINGS = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure in CI reproduces locally
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
PASS_DEFINITION = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})
HANDLER_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "TABLE_NAME": TABLE_NAME,
    "BUCKET_NAME": BUCKET,
    "STATE_MACHINE_ARN": STATE_MACHINE_ARN,
    "POWERTOOLS_TRACE_DISABLED": "1",
    "POWERTOOLS_SERVICE_NAME": "reconflow",
    "POWERTOOLS_METRICS_NAMESPACE": "ReconFlow",
    "POWERTOOLS_LOG_LEVEL": "CRITICAL",  # thousands of refused requests would flood the output
}


@dataclass
class FuzzWorld:
    deps: deps.Deps
    seeded: SeededJobs | None = None  # jobs a test seeded once; its examples share them

    def jobs(self) -> list[Job]:
        """Every job item in the table (a scan: the fuzzers' tables are small)."""
        items = self.deps.jobs._db.scan(TableName=TABLE_NAME, ConsistentRead=True)["Items"]
        return [
            self.deps.jobs.get(item["pk"]["S"], consistent=True) for item in items if item["sk"]["S"] == "job"
        ]

    def raw_items(self) -> list[dict[str, Any]]:
        return self.deps.jobs._db.scan(TableName=TABLE_NAME, ConsistentRead=True)["Items"]

    def executions(self) -> dict[str, dict[str, Any]]:
        listed = self.deps.sfn.list_executions(stateMachineArn=STATE_MACHINE_ARN)["executions"]
        return {e["executionArn"]: e for e in listed}

    def object_keys(self) -> list[str]:
        listed = self.deps.s3.list_object_versions(Bucket=BUCKET)
        return sorted(v["Key"] for v in listed.get("Versions", []) + listed.get("DeleteMarkers", []))


@pytest.fixture
def fuzz_world() -> Iterator[FuzzWorld]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in HANDLER_ENV.items():
            patch.setenv(name, value)
        for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
            patch.delenv(name, raising=False)
        jobstate_aws.reset_clients()
        with mock_aws():
            built = deps.build()
            create_jobs_table(jobstate_aws.client("dynamodb", built.settings), TABLE_NAME)
            create_data_bucket(built.s3, BUCKET, versioned=True)
            built.sfn.create_state_machine(
                name=STATE_MACHINE_NAME,
                definition=PASS_DEFINITION,
                roleArn=f"arn:aws:iam::123456789012:role/{STATE_MACHINE_NAME}",
            )
            deps.use(built)
            yield FuzzWorld(built)
            deps.reset()
            metrics.clear_metrics()
        jobstate_aws.reset_clients()
