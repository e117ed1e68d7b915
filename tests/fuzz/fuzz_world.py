"""moto's AWS for the handler fuzzers: the jobs table, the versioned data bucket and a state machine,
with the environment the template gives the functions. One per test; examples share it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aws_fixtures import TABLE_NAME, moto_aws
from handler_helpers import BUCKET, HANDLER_ENV, STATE_MACHINE_ARN, create_handler_resources
from hypothesis import HealthCheck, settings
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
# The functions' environment; thousands of refused requests would flood the output with logs.
FUZZ_ENV = {**HANDLER_ENV, "POWERTOOLS_LOG_LEVEL": "CRITICAL"}


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
    with moto_aws(FUZZ_ENV):
        built = deps.build()
        create_handler_resources(built, jobstate_aws.client("dynamodb", built.settings))
        deps.use(built)
        yield FuzzWorld(built)
        deps.reset()
        metrics.clear_metrics()
