"""Every status change and stage start is announced on EventBridge, and a failed announcement never
fails the change (DESIGN.md, "Events")."""

from __future__ import annotations

import json
from typing import Any

import pytest

from jobstate import aws as jobstate_aws
from jobstate.events import DETAIL_TYPE, StatusEvents
from jobstate.jobs import JobStore
from jobstate.settings import Settings

OWNER = "owner-events"


@pytest.fixture
def delivered(store: JobStore, settings: Settings) -> Any:
    """A queue behind a rule for the service's status events on the default bus; returns a reader."""
    events, sqs = jobstate_aws.client("events"), jobstate_aws.client("sqs")
    queue_url = sqs.create_queue(QueueName="job-status-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    pattern = {"source": [settings.event_source], "detail-type": [DETAIL_TYPE]}
    events.put_rule(Name="job-status", EventPattern=json.dumps(pattern))
    events.put_targets(Rule="job-status", Targets=[{"Id": "queue", "Arn": queue_arn}])

    def read() -> list[dict[str, Any]]:
        found = []
        while True:
            batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not batch:
                return found
            found += [json.loads(message["Body"])["detail"] for message in batch]
            for message in batch:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])

    return read


def test_each_status_change_and_stage_start_is_published_in_order(store: JobStore, delivered: Any) -> None:
    job = store.create(OWNER)
    store.mark_queued(job.job_id)
    store.begin_stage(job.job_id, "validate")
    store.begin_stage(job.job_id, "preprocess")
    store.fail(job.job_id, "bad_capture", "no transforms.json")

    details = delivered()

    assert [(d["status"], d["stage"]) for d in details] == [
        ("QUEUED", None),
        ("RUNNING", "validate"),
        ("RUNNING", "preprocess"),
        ("FAILED", "preprocess"),
    ]
    assert {d["job_id"] for d in details} == {job.job_id}
    assert {d["owner"] for d in details} == {OWNER}
    assert details[-1]["error"] == {"code": "bad_capture", "message": "no transforms.json"}


def test_a_confirmed_cancel_and_its_end_are_published(store: JobStore, delivered: Any) -> None:
    job = store.create(OWNER, status="QUEUED")
    request = store.request_cancel(job.job_id, OWNER)
    store.confirm_cancel(job.job_id, OWNER, request.token)
    store.mark_cancelled(job.job_id, {"objects": 0})

    assert [d["status"] for d in delivered()] == ["CANCELLING", "CANCELLED"]


def test_a_refused_change_publishes_nothing(store: JobStore, delivered: Any) -> None:
    job = store.create(OWNER)
    assert store.mark_queued(job.job_id)
    assert not store.mark_queued(job.job_id)

    assert [d["status"] for d in delivered()] == ["QUEUED"]


class _DownEventBridge:
    def __init__(self) -> None:
        self.calls = 0

    def put_events(self, **_: Any) -> dict[str, Any]:
        self.calls += 1
        raise ConnectionError("EventBridge unreachable")


def test_a_failed_publish_never_fails_the_change(jobs_table: str, settings: Settings) -> None:
    down = _DownEventBridge()
    store = JobStore(jobs_table, settings=settings, events=StatusEvents(settings, client=down))
    job = store.create(OWNER, status="QUEUED")

    started = store.begin_stage(job.job_id, "validate")

    assert started.status == "RUNNING"
    assert store.get(job.job_id, consistent=True).stage == "validate"
    assert (down.calls, store.events.failed, store.events.published) == (1, 1, 0)


def test_the_client_retries_with_the_publish_attempts_setting(settings: Settings) -> None:
    events = StatusEvents(Settings(event_publish_attempts=2))

    assert events.client.meta.config.retries == {"mode": "standard", "total_max_attempts": 2}
