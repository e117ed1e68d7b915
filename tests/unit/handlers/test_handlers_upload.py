"""The upload trigger: both notification shapes from events/, duplicates, races, bad keys, oversize."""

from __future__ import annotations

import copy
import json
import threading
from typing import Any
from urllib.parse import quote_plus

import pytest
from botocore.exceptions import ClientError
from handler_helpers import BUCKET, CONTEXT, INPUT_KEY, JOB_ID, OWNER, UPLOAD_EVENTS, World, load_event

from handlers import upload
from handlers.executions import execution_arn
from jobstate.ids import new_job_id
from jobstate.jobs import JobStore
from jobstate.settings import Settings

UPLOADER_BY_EVENT = {
    "upload_s3_put.json": "AWS:AIDAJDPLRKLG7UEXAMPLE",
    "upload_eventbridge_object_created.json": "123456789012",
}


def _with_key(name: str, key: str, *, size: int | None = None) -> dict[str, Any]:
    """events/<name> for another (already URL-encoded) key and size."""
    event = load_event(name)
    target = event["Records"][0]["s3"]["object"] if "Records" in event else event["detail"]["object"]
    target["key"] = key
    if size is not None:
        target["size"] = size
    return event


def _s3_event_for(*keys: str) -> dict[str, Any]:
    """A classic notification with one record per key (S3 batches records like this)."""
    event = load_event("upload_s3_put.json")
    record = event["Records"][0]
    event["Records"] = []
    for key in keys:
        copied = copy.deepcopy(record)
        copied["s3"]["object"]["key"] = quote_plus(key, safe="/")
        event["Records"].append(copied)
    return event


@pytest.mark.parametrize("name", UPLOAD_EVENTS)
def test_upload_of_a_created_job_queues_it_and_starts_one_execution(world: World, name: str) -> None:
    world.deps.jobs.create(OWNER, job_id=JOB_ID)

    answer = upload.handler(load_event(name), CONTEXT)

    assert [u["outcome"] for u in answer["uploads"]] == [upload.STARTED]
    job = world.job()
    (execution,) = world.executions()
    assert execution["name"] == JOB_ID
    assert job.execution_arn == execution["executionArn"]
    assert job.status == "QUEUED"
    assert job.owner == OWNER
    # The version the stages will read, whatever is written to input/ later (both events carry it).
    assert (job.capture_key, job.capture_version) == (INPUT_KEY, "3HL4kqtJlcpXroDTDmjVBH40Nrjfkd")
    described = world.deps.sfn.describe_execution(executionArn=job.execution_arn)
    assert json.loads(described["input"]) == {
        "job_id": JOB_ID,
        "bucket": BUCKET,
        "input_key": INPUT_KEY,
        "limits": {"stage_time_limit_s": Settings().stage_time_limit_s},
    }


@pytest.mark.parametrize("name", UPLOAD_EVENTS)
def test_upload_of_a_job_never_made_through_the_api_creates_it_queued(world: World, name: str) -> None:
    upload.handler(load_event(name), CONTEXT)

    job = world.job()
    assert job.status == "QUEUED"
    assert job.owner == UPLOADER_BY_EVENT[name]
    assert len(world.executions()) == 1
    assert job.execution_arn


def test_duplicate_deliveries_in_both_shapes_start_one_execution_and_leave_one_item(world: World) -> None:
    world.deps.jobs.create(OWNER, job_id=JOB_ID)
    outcomes = []
    for name in (*UPLOAD_EVENTS, *UPLOAD_EVENTS):
        outcomes += [u["outcome"] for u in upload.handler(load_event(name), CONTEXT)["uploads"]]

    assert outcomes == [upload.STARTED, upload.DUPLICATE, upload.DUPLICATE, upload.DUPLICATE]
    assert len(world.executions()) == 1
    assert [item["sk"]["S"] for item in world.job_items()] == ["job"]
    assert world.job().execution_arn == world.executions()[0]["executionArn"]


REDELIVERIES = 10  # template.yaml: the upload rule's RetryPolicy.MaximumRetryAttempts


@pytest.mark.usefixtures("atomic_moto_updates")
@pytest.mark.parametrize("made_by_api", [True, False])
def test_concurrent_deliveries_start_one_execution(world: World, made_by_api: bool) -> None:
    if made_by_api:
        world.deps.jobs.create(OWNER, job_id=JOB_ID)
    events = [load_event(UPLOAD_EVENTS[i % 2]) for i in range(8)]
    barrier = threading.Barrier(len(events))
    failures: list[BaseException] = []

    def deliver(event: dict[str, Any]) -> None:
        barrier.wait()
        for _ in range(1 + REDELIVERIES):
            try:
                upload.process_event(event)
                return
            except upload.UploadRetryError:  # a transient error: EventBridge delivers the event again
                continue
            except BaseException as error:  # collected: a thread's exception would vanish
                failures.append(error)
                return
        failures.append(AssertionError(f"still failing after {REDELIVERIES} redeliveries"))

    threads = [threading.Thread(target=deliver, args=(event,)) for event in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    (execution,) = world.executions()
    assert [item["sk"]["S"] for item in world.job_items()] == ["job"]
    job = world.job()
    assert job.status == "QUEUED"
    assert job.execution_arn == execution["executionArn"]


@pytest.mark.parametrize(
    "key",
    [
        f"jobs/{JOB_ID}/work/hull/grid.npz",
        f"jobs/{JOB_ID}/output/model.glb",
        f"jobs/{JOB_ID}/input/nested/capture.zip",
        f"jobs/{JOB_ID}/input/",
        f"jobs/{JOB_ID}/capture.zip",
        "uploads/capture.zip",
        "capture.zip",
        f"jobs/{JOB_ID}/input/../output/x.zip",
    ],
)
@pytest.mark.parametrize("name", UPLOAD_EVENTS)
def test_keys_outside_a_jobs_input_are_ignored(world: World, name: str, key: str) -> None:
    answer = upload.handler(_with_key(name, quote_plus(key, safe="/")), CONTEXT)

    assert [u["outcome"] for u in answer["uploads"]] == [upload.IGNORED]
    assert world.executions() == []
    assert world.job_items() == []


@pytest.mark.parametrize(
    "job_id",
    [JOB_ID.upper(), "not-a-job", "0b6f4c2e-5d1a-1f8e-9b3c-7a2d1e6f8c90", JOB_ID + "0", "", ".."],
)
def test_keys_with_a_bad_job_id_are_ignored(world: World, job_id: str) -> None:
    answer = upload.handler(_with_key("upload_s3_put.json", f"jobs/{job_id}/input/capture.zip"), CONTEXT)

    assert [u["outcome"] for u in answer["uploads"]] == [upload.IGNORED]
    assert world.executions() == []


def test_an_object_of_another_bucket_is_ignored(world: World) -> None:
    event = load_event("upload_eventbridge_object_created.json")
    event["detail"]["bucket"]["name"] = "someone-elses-bucket"

    assert upload.handler(event, CONTEXT)["uploads"][0]["outcome"] == upload.IGNORED
    assert world.job_items() == []


def test_url_encoded_keys_are_decoded(world: World) -> None:
    job_id = new_job_id()
    key = f"jobs/{job_id}/input/my capture (1)+final.zip"

    upload.handler(_with_key("upload_s3_put.json", quote_plus(key, safe="/")), CONTEXT)

    described = world.deps.sfn.describe_execution(executionArn=world.job(job_id).execution_arn)
    assert json.loads(described["input"])["input_key"] == key


@pytest.mark.parametrize("made_by_api", [True, False])
@pytest.mark.parametrize("name", UPLOAD_EVENTS)
def test_an_oversize_capture_fails_the_job_with_a_reason(world: World, name: str, made_by_api: bool) -> None:
    if made_by_api:
        world.deps.jobs.create(OWNER, job_id=JOB_ID)
    too_big = world.deps.settings.max_upload_bytes + 1

    answer = upload.handler(_with_key(name, INPUT_KEY, size=too_big), CONTEXT)

    assert answer["uploads"][0]["outcome"] == upload.REJECTED
    job = world.job()
    assert job.status == "FAILED"
    assert job.error["code"] == "upload_too_large"
    assert str(too_big) in job.error["message"]
    assert world.executions() == []


@pytest.mark.parametrize("status", ["RUNNING", "SUCCEEDED", "CANCELLING", "FAILED"])
def test_an_upload_to_a_started_or_finished_job_starts_nothing(world: World, status: str) -> None:
    jobs: JobStore = world.deps.jobs
    jobs.create(OWNER, job_id=JOB_ID, status="QUEUED")
    if status != "FAILED":
        jobs.begin_stage(JOB_ID, "validate")
    if status == "SUCCEEDED":
        jobs.succeed(JOB_ID, {})
    elif status == "CANCELLING":
        jobs.confirm_cancel(JOB_ID, OWNER, jobs.request_cancel(JOB_ID, OWNER).token)
    elif status == "FAILED":
        jobs.fail(JOB_ID, "bad_capture", "no transforms.json")

    answer = upload.handler(load_event("upload_s3_put.json"), CONTEXT)

    assert answer["uploads"][0]["outcome"] == upload.IGNORED
    assert world.executions() == []
    assert world.job().status == status


def test_a_transient_failure_on_one_record_keeps_the_others_and_asks_for_a_retry(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    flaky, steady = new_job_id(), new_job_id()
    event = _s3_event_for(f"jobs/{flaky}/input/capture.zip", f"jobs/{steady}/input/capture.zip")
    start = world.deps.sfn.start_execution

    def start_or_throttle(**request: Any) -> dict[str, Any]:
        if request["name"] == flaky:
            raise ClientError(
                {"Error": {"Code": "ServiceUnavailable", "Message": "try later"}}, "StartExecution"
            )
        return start(**request)

    monkeypatch.setattr(world.deps.sfn, "start_execution", start_or_throttle)
    with pytest.raises(upload.UploadRetryError):
        upload.handler(event, CONTEXT)
    assert world.job(steady).execution_arn
    assert world.job(flaky).execution_arn is None

    monkeypatch.setattr(world.deps.sfn, "start_execution", start)
    outcomes = [u["outcome"] for u in upload.handler(event, CONTEXT)["uploads"]]  # the redelivery

    assert outcomes == [upload.STARTED, upload.DUPLICATE]
    assert sorted(e["name"] for e in world.executions()) == sorted([flaky, steady])


def test_a_lost_execution_arn_is_recovered_from_the_execution_name(world: World) -> None:
    world.deps.jobs.create(OWNER, job_id=JOB_ID, status="QUEUED")
    payload = json.dumps({"job_id": JOB_ID, "bucket": BUCKET, "input_key": "jobs/x"})
    world.deps.sfn.start_execution(
        stateMachineArn=world.deps.settings.state_machine_arn, name=JOB_ID, input=payload
    )

    assert (
        upload.handler(load_event("upload_s3_put.json"), CONTEXT)["uploads"][0]["outcome"] == upload.DUPLICATE
    )
    assert world.job().execution_arn == execution_arn(world.deps.settings.state_machine_arn, JOB_ID)


@pytest.mark.parametrize(
    "event",
    [
        {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": BUCKET},
        {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectRemoved:Delete", "s3": {}}]},
        {"Records": [{"s3": {"object": {}}}]},
        {"Records": [{"body": "{not json"}]},
        {"source": "aws.s3", "detail-type": "Object Created", "detail": {}},
        {},
    ],
)
def test_events_that_name_no_upload_are_skipped_without_error(world: World, event: dict[str, Any]) -> None:
    assert upload.handler(event, CONTEXT) == {"uploads": []}


def test_notifications_wrapped_in_sqs_messages_are_handled(world: World) -> None:
    inner = load_event("upload_s3_put.json")
    event = {"Records": [{"messageId": "1", "eventSource": "aws:sqs", "body": json.dumps(inner)}]}

    assert upload.handler(event, CONTEXT)["uploads"][0]["outcome"] == upload.STARTED
    assert world.job().status == "QUEUED"
