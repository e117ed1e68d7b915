"""The two-step cancel: request, confirm in one transaction, expiry by the clock, should_stop."""

from __future__ import annotations

import pytest
from jobstate_helpers import FakeClock

from jobstate import aws as jobstate_aws
from jobstate.errors import CancelConflict, InvalidRequest, JobNotFound, StateConflict
from jobstate.ids import new_job_id
from jobstate.jobs import Job, JobStore
from jobstate.purge import PurgeReport


def raw_item(store: JobStore, job_id: str, sk: str) -> dict | None:
    found = jobstate_aws.client("dynamodb").get_item(
        TableName=store.table_name, Key={"pk": {"S": job_id}, "sk": {"S": sk}}, ConsistentRead=True
    )
    return found.get("Item")


def running_job(store: JobStore, owner: str = "alice") -> Job:
    job = store.create(owner)
    store.mark_queued(job.job_id)
    return store.begin_stage(job.job_id, "reconstruct")


def test_request_then_confirm_sets_cancelling_and_writes_the_confirm_flag(store: JobStore) -> None:
    job = running_job(store)
    request = store.request_cancel(job.job_id, "alice")
    assert len(request.token) >= 32
    assert request.expires_at == int(store._clock()) + store.settings.cancel_confirm_window_s
    assert store.pending_cancel(job.job_id) == request
    assert store.should_stop(job.job_id) is False  # a request alone stops nothing

    cancelling = store.confirm_cancel(job.job_id, "alice", request.token)
    assert cancelling.status == "CANCELLING"
    assert raw_item(store, job.job_id, "cancel#confirm")["confirmed_by"] == {"S": "alice"}
    assert store.should_stop(job.job_id) is True


def test_a_queued_job_can_be_cancelled_too(store: JobStore) -> None:
    job = store.create("alice", status="QUEUED")
    request = store.request_cancel(job.job_id, "alice")
    assert store.confirm_cancel(job.job_id, "alice", request.token).status == "CANCELLING"


def test_confirm_with_a_wrong_token_is_refused_and_changes_nothing(store: JobStore) -> None:
    job = running_job(store)
    request = store.request_cancel(job.job_id, "alice")
    with pytest.raises(CancelConflict):
        store.confirm_cancel(job.job_id, "alice", request.token[::-1])
    assert store.get(job.job_id).status == "RUNNING"
    assert raw_item(store, job.job_id, "cancel#confirm") is None
    with pytest.raises(InvalidRequest):
        store.confirm_cancel(job.job_id, "alice", "")


def test_confirm_after_expiry_is_refused_though_the_item_is_still_there(
    store: JobStore, clock: FakeClock
) -> None:
    job = running_job(store)
    request = store.request_cancel(job.job_id, "alice")
    clock.advance(store.settings.cancel_confirm_window_s + 1)
    assert raw_item(store, job.job_id, "cancel#request") is not None  # moto, like DynamoDB, keeps it for now
    assert store.pending_cancel(job.job_id) is None
    with pytest.raises(CancelConflict):
        store.confirm_cancel(job.job_id, "alice", request.token)
    assert store.get(job.job_id).status == "RUNNING"


def test_confirm_without_a_request_is_refused(store: JobStore) -> None:
    job = running_job(store)
    with pytest.raises(CancelConflict):
        store.confirm_cancel(job.job_id, "alice", "a" * 32)
    assert store.get(job.job_id).status == "RUNNING"


def test_a_repeated_request_replaces_the_token(store: JobStore) -> None:
    job = running_job(store)
    first = store.request_cancel(job.job_id, "alice")
    second = store.request_cancel(job.job_id, "alice")
    assert first.token != second.token
    with pytest.raises(CancelConflict):
        store.confirm_cancel(job.job_id, "alice", first.token)
    assert store.confirm_cancel(job.job_id, "alice", second.token).status == "CANCELLING"


def test_confirming_twice_is_harmless(store: JobStore) -> None:
    job = running_job(store)
    request = store.request_cancel(job.job_id, "alice")
    first = store.confirm_cancel(job.job_id, "alice", request.token)
    again = store.confirm_cancel(job.job_id, "alice", request.token)
    assert again.status == first.status == "CANCELLING"
    with pytest.raises(CancelConflict):
        store.confirm_cancel(job.job_id, "alice", "another-token-entirely-000000000")
    # Once cancelled (flags removed), the same confirm still answers with the job.
    store.mark_cancelled(job.job_id, PurgeReport())
    assert store.confirm_cancel(job.job_id, "alice", request.token).status == "CANCELLED"


def test_confirm_on_a_finished_job_is_a_state_conflict(store: JobStore) -> None:
    job = running_job(store)
    request = store.request_cancel(job.job_id, "alice")
    store.begin_stage(job.job_id, "export")
    store.succeed(job.job_id, {"model.glb": "k"})
    with pytest.raises(StateConflict) as refused:
        store.confirm_cancel(job.job_id, "alice", request.token)
    assert not isinstance(refused.value, CancelConflict)
    assert store.get(job.job_id).status == "SUCCEEDED"


def test_confirm_by_another_owner_is_not_found(store: JobStore) -> None:
    job = running_job(store)
    request = store.request_cancel(job.job_id, "alice")
    with pytest.raises(JobNotFound):
        store.confirm_cancel(job.job_id, "mallory", request.token)
    assert store.get(job.job_id).status == "RUNNING"
    with pytest.raises(JobNotFound):
        store.confirm_cancel(new_job_id(), "alice", request.token)


def test_request_on_a_finished_or_new_job_is_refused(store: JobStore) -> None:
    job = running_job(store)
    store.fail(job.job_id, "stage_failed", "boom")
    with pytest.raises(StateConflict):
        store.request_cancel(job.job_id, "alice")
    created = store.create("alice")
    with pytest.raises(StateConflict):
        store.request_cancel(created.job_id, "alice")
    assert raw_item(store, job.job_id, "cancel#request") is None
    assert raw_item(store, created.job_id, "cancel#request") is None


def test_request_by_another_owner_or_for_no_job_is_not_found(store: JobStore) -> None:
    job = running_job(store)
    with pytest.raises(JobNotFound):
        store.request_cancel(job.job_id, "mallory")
    with pytest.raises(JobNotFound):
        store.request_cancel(new_job_id(), "alice")
    assert store.pending_cancel(job.job_id) is None


def test_should_stop_follows_status_and_an_unexpired_confirm(store: JobStore, clock: FakeClock) -> None:
    assert store.should_stop(new_job_id()) is True  # no job: nothing to run for
    job = running_job(store)
    assert store.should_stop(job.job_id) is False
    # A confirm flag alone (the job item not yet CANCELLING) stops the work while it is fresh.
    jobstate_aws.client("dynamodb").put_item(
        TableName=store.table_name,
        Item={
            "pk": {"S": job.job_id},
            "sk": {"S": "cancel#confirm"},
            "expires_at": {"N": str(int(clock() + 60))},
        },
    )
    assert store.should_stop(job.job_id) is True
    clock.advance(61)
    assert store.should_stop(job.job_id) is False
    store.begin_stage(job.job_id, "export")
    store.succeed(job.job_id, {})
    assert store.should_stop(job.job_id) is True


def test_confirm_is_one_transaction_no_flag_without_the_status_change(store: JobStore) -> None:
    job = running_job(store)
    request = store.request_cancel(job.job_id, "alice")
    # Another writer finished the job a moment ago, its flags not yet cleared.
    jobstate_aws.client("dynamodb").update_item(
        TableName=store.table_name,
        Key={"pk": {"S": job.job_id}, "sk": {"S": "job"}},
        UpdateExpression="SET #status = :failed",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={":failed": {"S": "FAILED"}},
    )
    with pytest.raises(StateConflict):
        store.confirm_cancel(job.job_id, "alice", request.token)
    assert raw_item(store, job.job_id, "cancel#confirm") is None
    assert store.get(job.job_id).status == "FAILED"
