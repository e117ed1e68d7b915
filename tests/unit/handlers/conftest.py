"""Fixtures of the handler tests: moto's AWS with the table, the bucket and a state machine, the
handlers' dependencies on a settable clock, and the files of ``events/`` as the handlers get them.

moto and the boto3 clients start once per test module (making clients is most of a moto test's
cost); every test then gets emptied backends and freshly created resources.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import pytest
from aws_fixtures import REGION, TABLE_NAME, create_data_bucket, create_jobs_table
from handler_helpers import BUCKET, OWNER, STATE_MACHINE_ARN, STATE_MACHINE_NAME, FakeClock, World
from moto import mock_aws

from handlers import deps
from handlers.observability import metrics
from jobstate import aws as jobstate_aws
from jobstate.jobs import JobStore

# A state machine moto records executions of (it does not run them here).
PASS_DEFINITION = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})

# The environment the template gives the functions (bucket and state machine as events/ name them).
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
}


@dataclasses.dataclass(frozen=True)
class MockedAws:
    mock: mock_aws
    deps: deps.Deps
    dynamodb: object


@pytest.fixture(scope="module")
def mocked_aws() -> Iterator[MockedAws]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in HANDLER_ENV.items():
            patch.setenv(name, value)
        for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
            patch.delenv(name, raising=False)
        jobstate_aws.reset_clients()
        with mock_aws() as mock:
            built = deps.build()
            yield MockedAws(mock, built, jobstate_aws.client("dynamodb", built.settings))
        jobstate_aws.reset_clients()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def world(mocked_aws: MockedAws, clock: FakeClock) -> Iterator[World]:
    """Empty table, versioned data bucket and a state machine; the handlers' deps on ``clock``."""
    mocked_aws.mock.reset()
    base = mocked_aws.deps
    create_jobs_table(mocked_aws.dynamodb, base.settings.table_name)
    create_data_bucket(base.s3, BUCKET, versioned=True)
    machine = base.sfn.create_state_machine(
        name=STATE_MACHINE_NAME,
        definition=PASS_DEFINITION,
        roleArn=f"arn:aws:iam::123456789012:role/{STATE_MACHINE_NAME}",
    )
    assert machine["stateMachineArn"] == STATE_MACHINE_ARN
    store = JobStore(settings=base.settings, dynamodb=mocked_aws.dynamodb, clock=clock)
    current = deps.Deps(base.settings, clock=clock, jobs=store, s3=base.s3, sfn=base.sfn)
    deps.use(current)
    yield World(deps=current, clock=clock, owner=OWNER)
    deps.reset()
    metrics.clear_metrics()
