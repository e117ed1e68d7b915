"""Fixtures of the core's tests: moto's AWS, the table and bucket, a store with a settable clock."""

from __future__ import annotations

import pytest
from aws_fixtures import aws, aws_env, bucket, jobs_table, versioned_bucket  # noqa: F401
from jobstate_helpers import FakeClock

from jobstate import aws as jobstate_aws
from jobstate.jobs import JobStore
from jobstate.settings import Settings


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(aws_env: None) -> Settings:  # noqa: F811
    return Settings()


@pytest.fixture
def store(jobs_table: str, clock: FakeClock, settings: Settings) -> JobStore:  # noqa: F811
    return JobStore(jobs_table, clock=clock, settings=settings)


@pytest.fixture
def s3(aws: None):  # noqa: F811
    return jobstate_aws.client("s3")
