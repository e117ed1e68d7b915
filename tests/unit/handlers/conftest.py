"""Fixtures of the handler tests: moto's AWS with the table, the bucket and a state machine, the
handlers' dependencies on a settable clock, and the files of ``events/`` as the handlers get them.

moto and the boto3 clients start once per test module (making clients is most of a moto test's
cost); every test then gets emptied backends and freshly created resources.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from aws_fixtures import moto_aws
from handler_helpers import HANDLER_ENV, OWNER, FakeClock, World, create_handler_resources
from moto import mock_aws

from handlers import deps
from handlers.observability import metrics
from jobstate import aws as jobstate_aws
from jobstate.jobs import JobStore


@dataclasses.dataclass(frozen=True)
class MockedAws:
    mock: mock_aws
    deps: deps.Deps
    dynamodb: object


@pytest.fixture(scope="module")
def mocked_aws() -> Iterator[MockedAws]:
    with moto_aws(HANDLER_ENV) as mock:
        built = deps.build()
        yield MockedAws(mock, built, jobstate_aws.client("dynamodb", built.settings))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def world(mocked_aws: MockedAws, clock: FakeClock) -> Iterator[World]:
    """Empty table, versioned data bucket and a state machine; the handlers' deps on ``clock``."""
    mocked_aws.mock.reset()
    base = mocked_aws.deps
    create_handler_resources(base, mocked_aws.dynamodb)
    store = JobStore(settings=base.settings, dynamodb=mocked_aws.dynamodb, clock=clock)
    current = deps.Deps(base.settings, clock=clock, jobs=store, s3=base.s3, sfn=base.sfn)
    deps.use(current)
    yield World(deps=current, clock=clock, owner=OWNER)
    deps.reset()
    metrics.clear_metrics()
