"""Helpers of the handler tests: the example ids of ``events/``, loading and editing those events,
and the functions' environment and resources in moto (shared with the fuzzers)."""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_fixtures import TABLE_NAME, create_data_bucket, create_jobs_table, create_pass_state_machine

from handlers.deps import Deps
from jobstate.jobs import Job

EVENTS_DIR = Path(__file__).resolve().parents[3] / "events"

# The ids the files in events/ share, so they chain.
JOB_ID = "0b6f4c2e-5d1a-4f8e-9b3c-7a2d1e6f8c90"
OWNER = "7d3e9f21-4c6b-4a8d-b2e5-0f1a9c8d7e6b"
BUCKET = "reconflow-data"
STATE_MACHINE_NAME = "reconflow-reconstruction"
STATE_MACHINE_ARN = f"arn:aws:states:us-east-1:123456789012:stateMachine:{STATE_MACHINE_NAME}"
INPUT_KEY = f"jobs/{JOB_ID}/input/capture.zip"
OTHER_OWNER = "5a1b2c3d-0e9f-4a8b-9c7d-6e5f4a3b2c1d"

# The environment the template gives the functions (bucket and state machine as events/ name them).
HANDLER_ENV = {
    "TABLE_NAME": TABLE_NAME,
    "BUCKET_NAME": BUCKET,
    "STATE_MACHINE_ARN": STATE_MACHINE_ARN,
    "POWERTOOLS_TRACE_DISABLED": "1",
    "POWERTOOLS_SERVICE_NAME": "reconflow",
    "POWERTOOLS_METRICS_NAMESPACE": "ReconFlow",
}

API_EVENTS = (
    "api_create_job.json",
    "api_list_jobs.json",
    "api_get_job.json",
    "api_request_cancel.json",
    "api_confirm_cancel.json",
)
UPLOAD_EVENTS = ("upload_s3_put.json", "upload_eventbridge_object_created.json")


def create_handler_resources(base: Deps, dynamodb: Any) -> None:
    """The jobs table, the versioned data bucket and a Pass state machine, as ``HANDLER_ENV`` names them."""
    create_jobs_table(dynamodb, base.settings.table_name)
    create_data_bucket(base.s3, BUCKET, versioned=True)
    assert create_pass_state_machine(base.sfn, STATE_MACHINE_NAME) == STATE_MACHINE_ARN


class FakeClock:
    """Epoch seconds that only move when a test says so."""

    def __init__(self, start: float | None = None) -> None:
        self.now = float(int(start if start is not None else time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class World:
    deps: Deps
    clock: FakeClock
    owner: str

    def job(self, job_id: str = JOB_ID) -> Job:
        return self.deps.jobs.get(job_id, consistent=True)

    def executions(self) -> list[dict[str, Any]]:
        return self.deps.sfn.list_executions(stateMachineArn=STATE_MACHINE_ARN)["executions"]

    def job_items(self, job_id: str = JOB_ID) -> list[dict[str, Any]]:
        """Every table item of the job (the job and its flags), raw."""
        found = self.deps.jobs._db.query(
            TableName=self.deps.settings.table_name,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": job_id}},
            ConsistentRead=True,
        )
        return found["Items"]

    def keys(self, prefix: str = "jobs/") -> list[str]:
        listed = self.deps.s3.list_object_versions(Bucket=BUCKET, Prefix=prefix)
        return sorted(v["Key"] for v in listed.get("Versions", []) + listed.get("DeleteMarkers", []))

    def put(self, key: str, body: bytes = b"x") -> None:
        self.deps.s3.put_object(Bucket=BUCKET, Key=key, Body=body)


@dataclass(frozen=True)
class FakeContext:
    """What powertools' Logger reads from a Lambda context."""

    function_name: str = "reconflow-test"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:reconflow-test"
    aws_request_id: str = "52fdfc07-2182-454f-963f-5f0f9a621d72"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


CONTEXT = FakeContext()


def load_event(name: str) -> dict[str, Any]:
    """A fresh copy of ``events/<name>``."""
    return json.loads((EVENTS_DIR / name).read_text())


def api_event(
    name: str,
    *,
    job_id: str | None = None,
    sub: str | None = OWNER,
    body: Any = ...,
    query: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``events/<name>`` for another job, caller, body or query (``sub=None``: no identity)."""
    event = load_event(name)
    if job_id is not None:
        old = event["pathParameters"]["job_id"]
        event["pathParameters"]["job_id"] = job_id
        event["rawPath"] = event["rawPath"].replace(old, job_id)
        event["requestContext"]["http"]["path"] = event["rawPath"]
    if sub is None:
        del event["requestContext"]["authorizer"]
    else:
        event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = sub
    if body is not ...:
        event["body"] = body if isinstance(body, str) or body is None else json.dumps(body)
    if query is not None:
        event["queryStringParameters"] = query
        event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in query.items())
    return event


def call_api(event: dict[str, Any]) -> tuple[int, Any]:
    """Run the API handler; (status, decoded JSON body)."""
    from handlers import api

    response = api.handler(copy.deepcopy(event), CONTEXT)
    body = json.loads(response["body"]) if response.get("body") else None
    return response["statusCode"], body


def error_code(body: Any) -> str:
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    return body["error"]["code"]
