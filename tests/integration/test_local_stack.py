"""The local stack's parts working together: deployment from the template, event delivery, the
executor under the real state machine. Jobs use the ``tiny`` engine profile."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from reconflow.cli import make_sample_capture
from reconflow.client import ReconFlowClient
from reconflow.local import template
from reconflow.local.probe import JobObserver, wait_until
from reconflow.local.stack import LocalStack, StackSettings

STOP_WITHIN_S = 2.0  # confirm -> the stage's work stopped (the runner's "stage stopped" record)
PROCESS_EXIT_WITHIN_S = 10.0  # confirm -> the stage process gone (interpreter teardown included)
CONCURRENT_REQUESTS = 8
JOB_TIMEOUT_S = 300  # only bounds the waiting; jobs take about a minute here


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    settings = StackSettings(work_dir=tmp_path_factory.mktemp("stack"), engine_profile="tiny")
    with LocalStack(settings) as running:
        yield running


@pytest.fixture(scope="module")
def client(stack: LocalStack) -> ReconFlowClient:
    return ReconFlowClient(api_url=stack.api_url)


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sample_capture(
        tmp_path_factory.mktemp("captures") / "sample.zip", ["--views", "12", "--size", "64"]
    )


@pytest.fixture(scope="module")
def running_jobs(client: ReconFlowClient, capture: Path) -> dict[str, JobObserver]:
    """Two jobs started together: one whose stage process gets killed, one to cancel."""
    return {
        name: JobObserver(client, client.submit(capture, preset="draft", name=name)).start()
        for name in ("crash", "cancel")
    }


def _executions(stack: LocalStack, job_id: str) -> list[dict[str, Any]]:
    sfn = stack.client("stepfunctions")
    arn = stack.physical_of_type("AWS::StepFunctions::StateMachine")
    return [e for e in sfn.list_executions(stateMachineArn=arn)["executions"] if e["name"] == job_id]


def test_resources_come_from_the_template(stack: LocalStack) -> None:
    sam = template.load_template(stack.settings.template_path)
    handlers = template.function_handlers(sam)
    assert {info.logical_id: info.handler for info in stack.functions.values()} == handlers
    s3, dynamodb = stack.client("s3"), stack.client("dynamodb")
    bucket = stack.resource("DataBucket")
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    table = stack.resource("JobsTable")
    ttl = dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expires_at"
    indexes = dynamodb.describe_table(TableName=table)["Table"]["GlobalSecondaryIndexes"]
    assert {index["IndexName"] for index in indexes} == {"by-owner", "by-status"}
    arn = stack.physical_of_type("AWS::StepFunctions::StateMachine")
    definition = stack.client("stepfunctions").describe_state_machine(stateMachineArn=arn)["definition"]
    assert "${" not in definition
    assert table in definition
    assert stack.functions["CleanupFunction"].arn in definition
    assert stack.gateway is not None
    assert {route.route_key for route in stack.gateway.routes} == {
        "POST /jobs",
        "GET /jobs",
        "GET /jobs/{job_id}",
        "POST /jobs/{job_id}/cancel",
        "POST /jobs/{job_id}/cancel/confirm",
        "GET /openapi.json",  # the API's document, served beside its routes
    }


def test_concurrent_requests_each_get_their_own_answer(stack: LocalStack, client: ReconFlowClient) -> None:
    """The API handler keeps the request in a module global (powertools' resolver): the stack must
    run one event at a time per function, as one Lambda instance does."""
    names = [f"parallel-{index}" for index in range(CONCURRENT_REQUESTS)]
    with ThreadPoolExecutor(max_workers=CONCURRENT_REQUESTS) as pool:
        listing = [pool.submit(client.list_jobs) for _ in names]
        created = list(pool.map(lambda name: client.create_job(preset="high", name=name), names))
        assert all(future.result()["jobs"] is not None for future in listing)
    for name, answer in zip(names, created, strict=True):
        job = client.get_job(answer["job_id"])
        assert (job["name"], job["preset"]) == (name, "high")


def test_duplicate_upload_event_starts_one_execution(
    stack: LocalStack, client: ReconFlowClient, tmp_path: Path
) -> None:
    not_a_capture = tmp_path / "capture.zip"
    not_a_capture.write_bytes(b"this is not a zip archive")
    # create + upload, not submit(): the client's own check would refuse the file before the pipeline sees it
    created = client.create_job(preset="draft", name="duplicate")
    client.upload(created["upload"], not_a_capture)
    job_id = created["job_id"]
    wait_until(lambda: _executions(stack, job_id), timeout_s=30)
    bucket = stack.resource("DataBucket")
    head = stack.client("s3").head_object(Bucket=bucket, Key=f"jobs/{job_id}/input/capture.zip")
    duplicate = {
        "Source": "aws.s3",
        "DetailType": "Object Created",
        "Detail": json.dumps(
            {
                "bucket": {"name": bucket},
                "object": {"key": f"jobs/{job_id}/input/capture.zip", "size": head["ContentLength"]},
                "reason": "PutObject",
            }
        ),
        "Resources": [f"arn:aws:s3:::{bucket}"],
    }
    assert stack.poller is not None
    route = next(route.name for route in stack.poller.routes if route.handler == "handlers.upload.handler")
    delivered = stack.poller.delivered.get(route, 0)
    stack.client("events").put_events(Entries=[duplicate])
    wait_until(lambda: stack.poller.delivered.get(route, 0) > delivered, timeout_s=30)
    final = JobObserver(client, job_id).start().wait(60)
    assert final["status"] == "FAILED"
    assert len(_executions(stack, job_id)) == 1
    assert len([run for run in stack.executor.runs if run.parameters.get("job_id") == job_id]) == 1


def _wait_running(observer: JobObserver, stage: str) -> None:
    wait_until(
        lambda: observer.first(lambda seen: seen.stage == stage and seen.status == "RUNNING"),
        timeout_s=JOB_TIMEOUT_S,
        interval_s=0.01,
    )


def test_stage_process_killed_mid_stage_fails_the_job_and_leaves_nothing_stuck(
    stack: LocalStack, running_jobs: dict[str, JobObserver]
) -> None:
    observer = running_jobs["crash"]
    # Mid-stage: reconstruct has begun (the tiny profile's stage lasts a few seconds even on a
    # quiet machine; waiting for its loop's progress could see it only as it ends).
    _wait_running(observer, "reconstruct")
    run = stack.executor.run_of(observer.job_id, "reconstruct")
    assert run is not None
    assert run.pid is not None
    os.killpg(run.pid, signal.SIGKILL)
    final = observer.wait(60)
    assert final["status"] == "FAILED"
    assert "stage process killed by SIGKILL (exit 137)" in final["error"]["message"]
    assert "message" not in final["error"]["message"].split("SIGKILL")[0]  # no log fragment in it
    assert run.returncode == -signal.SIGKILL
    wait_until(lambda: _executions(stack, observer.job_id)[0]["status"] != "RUNNING", timeout_s=30)
    assert _executions(stack, observer.job_id)[0]["status"] == "FAILED"
    assert stack.executor.run_of(observer.job_id, "mesh") is None
    table = stack.resource("JobsTable")
    for status in ("QUEUED", "RUNNING", "CANCELLING"):
        items = stack.client("dynamodb").query(
            TableName=table,
            IndexName="by-status",
            KeyConditionExpression="#s = :s",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": {"S": status}},
        )["Items"]
        assert observer.job_id not in {item["pk"]["S"] for item in items}


def test_cancel_confirmed_during_reconstruct_stops_the_stage_within_two_seconds(
    stack: LocalStack, client: ReconFlowClient, running_jobs: dict[str, JobObserver]
) -> None:
    observer = running_jobs["cancel"]
    # Reconstruct has begun: the stop watcher ends it wherever it is (set-up or the loop).
    _wait_running(observer, "reconstruct")
    run = stack.executor.run_of(observer.job_id, "reconstruct")
    assert run is not None
    token = client.request_cancel(observer.job_id)["token"]
    confirmed = time.time()
    assert client.confirm_cancel(observer.job_id, token)["status"] == "CANCELLING"
    wait_until(lambda: run.ended_at, timeout_s=30, interval_s=0.02)
    stopped = run.stopped_at()
    assert stopped is not None
    assert stopped - confirmed <= STOP_WITHIN_S
    assert run.ended_at - confirmed <= PROCESS_EXIT_WITHIN_S
    assert run.returncode == 3  # the stop watcher ended the stage: nothing written after the confirm
    final = observer.wait(60)
    assert final["status"] == "CANCELLED"
    assert stack.job_events is not None
    published = wait_until(
        lambda: [e["status"] for e in stack.job_events.for_job(observer.job_id)][-1:] == ["CANCELLED"],
        timeout_s=30,
    )
    assert published
    statuses = [e["status"] for e in stack.job_events.for_job(observer.job_id)]
    assert statuses[0] == "QUEUED"
    assert statuses[-2:] == ["CANCELLING", "CANCELLED"]
    assert [e["stage"] for e in stack.job_events.for_job(observer.job_id) if e["status"] == "RUNNING"][
        :4
    ] == [
        "validate",
        "preprocess",
        "hull",
        "reconstruct",
    ]
    listing = stack.client("s3").list_object_versions(
        Bucket=stack.resource("DataBucket"), Prefix=f"jobs/{observer.job_id}/"
    )
    assert listing.get("Versions", []) == []
    assert listing.get("DeleteMarkers", []) == []
    assert stack.executor.run_of(observer.job_id, "mesh") is None


def test_execution_stopped_from_outside_is_finished_by_the_status_change_event(
    stack: LocalStack, client: ReconFlowClient, capture: Path
) -> None:
    job_id = client.submit(capture, preset="draft", name="stopped")
    execution = wait_until(lambda: _executions(stack, job_id), timeout_s=30)[0]
    stack.client("stepfunctions").stop_execution(
        executionArn=execution["executionArn"], error="Operator.Stop"
    )
    observer = JobObserver(client, job_id).start()
    final = observer.wait(120)
    assert final["status"] in ("FAILED", "CANCELLED"), observer.observations
    sent = stack.status_events[0].sent
    # moto reports a stopped execution ABORTED, or FAILED when its .sync Batch thread raises on the
    # stop; either way the status-change event reached cleanup and finished the job.
    assert {(job_id, "ABORTED"), (job_id, "FAILED")} & set(sent), sent
