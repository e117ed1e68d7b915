"""The job item: create, read, list and the conditional transitions (moto, fake clock)."""

from __future__ import annotations

import base64
import json

import pytest
from jobstate_helpers import START, FakeClock

from jobstate import aws as jobstate_aws
from jobstate.errors import InvalidJobId, InvalidRequest, JobNotFound, StateConflict
from jobstate.ids import new_job_id
from jobstate.jobs import SECONDS_PER_DAY, Job, JobStore, iso_utc
from jobstate.purge import PurgeReport


def raw_item(store: JobStore, job_id: str, sk: str = "job") -> dict | None:
    found = jobstate_aws.client("dynamodb").get_item(
        TableName=store.table_name, Key={"pk": {"S": job_id}, "sk": {"S": sk}}, ConsistentRead=True
    )
    return found.get("Item")


def running_job(store: JobStore, owner: str = "alice", stage: str = "validate") -> Job:
    job = store.create(owner)
    assert store.mark_queued(job.job_id)
    return store.begin_stage(job.job_id, stage)


def test_create_then_get_returns_the_job_with_clock_timestamps(store: JobStore) -> None:
    created = store.create("alice", preset="draft", name="teapot")
    fetched = store.get(created.job_id, consistent=True)
    assert fetched == created
    assert fetched.status == "CREATED"
    assert fetched.progress == 0.0
    assert fetched.created_at == fetched.updated_at == iso_utc(START) == "2026-11-18T11:06:40.000Z"
    assert (fetched.owner, fetched.preset, fetched.name) == ("alice", "draft", "teapot")


def test_create_with_an_existing_id_is_a_state_conflict(store: JobStore) -> None:
    job_id = new_job_id()
    store.create("alice", job_id=job_id, status="QUEUED")
    with pytest.raises(StateConflict):
        store.create("bob", job_id=job_id, status="QUEUED")
    assert store.get(job_id).owner == "alice"


def test_create_refuses_a_bad_id_status_or_owner(store: JobStore) -> None:
    with pytest.raises(InvalidJobId):
        store.create("alice", job_id="jobs/../x")
    with pytest.raises(InvalidRequest):
        store.create("alice", status="RUNNING")
    with pytest.raises(InvalidRequest):
        store.create("")
    with pytest.raises(InvalidRequest):
        store.create("alice", preset="ultra")


def test_get_of_an_unknown_job_is_not_found_and_a_bad_id_invalid(store: JobStore) -> None:
    with pytest.raises(JobNotFound):
        store.get(new_job_id())
    with pytest.raises(InvalidJobId):
        store.get("not-an-id")


def test_get_owned_hides_another_owners_job(store: JobStore) -> None:
    job = store.create("alice")
    assert store.get_owned(job.job_id, "alice") == job
    with pytest.raises(JobNotFound):
        store.get_owned(job.job_id, "mallory")


def test_to_public_is_json_ready_without_internal_keys(store: JobStore) -> None:
    job = running_job(store)
    store.set_execution(job.job_id, "arn:aws:states:us-east-1:123456789012:execution:sm:" + job.job_id)
    public = store.get(job.job_id).to_public()
    json.dumps(public)
    assert public["job_id"] == job.job_id
    assert public["status"] == "RUNNING"
    assert not {"owner", "execution_arn", "pk", "sk", "expires_at", "cancel_token"} & set(public)


def test_set_execution_records_the_arn_and_needs_the_job(store: JobStore) -> None:
    job = store.create("alice")
    store.set_execution(job.job_id, "arn:exec")
    assert store.get(job.job_id).execution_arn == "arn:exec"
    with pytest.raises(JobNotFound):
        store.set_execution(new_job_id(), "arn:exec")
    assert raw_item(store, job.job_id) is not None


def test_mark_queued_moves_only_a_created_job(store: JobStore) -> None:
    job = store.create("alice")
    assert store.mark_queued(job.job_id) is True
    assert store.mark_queued(job.job_id) is False
    assert store.mark_queued(new_job_id()) is False
    assert store.get(job.job_id).status == "QUEUED"


def test_begin_stage_sets_the_stage_and_its_start_progress(store: JobStore, clock: FakeClock) -> None:
    job = running_job(store, stage="validate")
    assert (job.status, job.stage, job.stage_index, job.progress) == ("RUNNING", "validate", 1, 0.0)
    assert job.started_at == iso_utc(START)
    clock.advance(60)
    hull = store.begin_stage(job.job_id, "hull")
    assert (hull.stage, hull.stage_index, hull.progress) == ("hull", 3, 25.0)
    assert hull.started_at == iso_utc(START)  # set once
    assert hull.updated_at == iso_utc(START + 60)


def test_begin_stage_never_lowers_progress(store: JobStore) -> None:
    job = running_job(store, stage="hull")
    assert store.report_progress(job.job_id, 38.5, "carving")
    rerun = store.begin_stage(job.job_id, "preprocess")
    assert rerun.stage == "preprocess"
    assert rerun.progress == 38.5


def test_begin_stage_refuses_a_job_that_is_not_queued_or_running(store: JobStore) -> None:
    created = store.create("alice")
    with pytest.raises(StateConflict):
        store.begin_stage(created.job_id, "validate")
    with pytest.raises(InvalidRequest):
        store.begin_stage(created.job_id, "render")
    job = running_job(store)
    request = store.request_cancel(job.job_id, "alice")
    store.confirm_cancel(job.job_id, "alice", request.token)
    with pytest.raises(StateConflict):
        store.begin_stage(job.job_id, "preprocess")
    assert store.get(job.job_id).status == "CANCELLING"


def test_two_writers_never_undo_each_other(store: JobStore) -> None:
    # The user cancels while the container finishes: the later success is refused.
    job = running_job(store, stage="export")
    request = store.request_cancel(job.job_id, "alice")
    store.confirm_cancel(job.job_id, "alice", request.token)
    with pytest.raises(StateConflict):
        store.succeed(job.job_id, {"model.glb": "k"})
    assert store.report_progress(job.job_id, 99, "late") is False
    assert store.fail(job.job_id, "stage_failed", "late failure") is None  # the cancel finishes it
    assert store.get(job.job_id).status == "CANCELLING"

    # A success is not undone by a late failure or cancel.
    other = running_job(store, stage="export")
    store.succeed(other.job_id, {"model.glb": "k"})
    assert store.fail(other.job_id, "stage_failed", "late") is None
    with pytest.raises(StateConflict):
        store.mark_cancelled(other.job_id, PurgeReport())
    with pytest.raises(StateConflict):
        store.request_cancel(other.job_id, "alice")
    assert store.get(other.job_id).status == "SUCCEEDED"


def test_succeed_records_result_full_progress_and_retention(store: JobStore, clock: FakeClock) -> None:
    job = running_job(store, stage="export")
    clock.advance(30)
    done = store.succeed(job.job_id, {"model.glb": f"jobs/{job.job_id}/output/model.glb"})
    assert done.status == "SUCCEEDED"
    assert done.progress == 100.0
    assert done.result == {"model.glb": f"jobs/{job.job_id}/output/model.glb"}
    assert done.finished_at == iso_utc(START + 30)
    item = raw_item(store, job.job_id)
    assert (
        int(item["expires_at"]["N"]) == int(START + 30) + store.settings.job_retention_days * SECONDS_PER_DAY
    )


def test_terminal_writes_clear_the_cancel_flags_and_set_retention(store: JobStore) -> None:
    for finish in ("fail", "cancel"):
        job = running_job(store)
        request = store.request_cancel(job.job_id, "alice")
        if finish == "fail":
            assert store.fail(job.job_id, "bad_input", "transforms.json is missing").status == "FAILED"
        else:
            store.confirm_cancel(job.job_id, "alice", request.token)
            assert raw_item(store, job.job_id, "cancel#confirm") is not None
            store.mark_cancelled(job.job_id, PurgeReport(objects=3, versions=4, requests=5))
        assert raw_item(store, job.job_id, "cancel#request") is None
        assert raw_item(store, job.job_id, "cancel#confirm") is None
        assert store.pending_cancel(job.job_id) is None
        assert "expires_at" in raw_item(store, job.job_id)


def test_fail_records_the_error_from_any_unfinished_state(store: JobStore) -> None:
    created = store.create("alice")
    failed = store.fail(created.job_id, "upload_invalid", "not a zip")
    assert failed.status == "FAILED"
    assert failed.error == {"code": "upload_invalid", "message": "not a zip"}
    assert failed.to_public()["error"] == {"code": "upload_invalid", "message": "not a zip"}
    assert store.fail(created.job_id, "again", "no change") is None
    assert store.get(created.job_id).error["code"] == "upload_invalid"
    with pytest.raises(JobNotFound):
        store.fail(new_job_id(), "x", "y")


def test_mark_cancelled_records_the_purge_and_is_idempotent(store: JobStore) -> None:
    job = running_job(store)
    report = PurgeReport(objects=10, versions=12, delete_markers=2, multipart_uploads=1, requests=6)
    cancelled = store.mark_cancelled(job.job_id, report)
    assert cancelled.status == "CANCELLED"
    assert cancelled.purged == report.as_dict()
    assert "12 object versions" in cancelled.message
    assert store.mark_cancelled(job.job_id, PurgeReport()) == cancelled


def test_list_for_owner_pages_newest_first(store: JobStore, clock: FakeClock) -> None:
    mine = []
    for index in range(7):
        clock.advance(1)
        mine.append(store.create("alice", name=f"job {index}").job_id)
        store.create("bob")
    seen: list[Job] = []
    cursor = None
    for _ in range(10):  # bounded: 7 jobs in pages of 3
        page, cursor = store.list_for_owner("alice", limit=3, cursor=cursor)
        assert len(page) <= 3
        seen.extend(page)
        if cursor is None:
            break
    assert cursor is None
    assert [job.job_id for job in seen] == list(reversed(mine))
    assert {job.owner for job in seen} == {"alice"}


def test_list_for_owner_refuses_a_bad_cursor_or_limit(store: JobStore) -> None:
    for index in range(3):
        store.create("alice", name=str(index))
    _, cursor = store.list_for_owner("alice", limit=1)
    assert cursor is not None
    forged = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    forged["owner"] = "bob"
    forged_cursor = base64.urlsafe_b64encode(json.dumps(forged).encode()).decode()
    for bad in (
        "garbage!",
        "e30",
        base64.urlsafe_b64encode(b"[1,2]").decode(),
        forged_cursor,
        "",
        "x" * 5000,
    ):
        with pytest.raises(InvalidRequest):
            store.list_for_owner("alice", limit=1, cursor=bad)
    with pytest.raises(InvalidRequest):
        store.list_for_owner("bob", limit=1, cursor=cursor)  # alice's cursor
    for limit in (0, store.settings.list_page_size_max + 1, True):
        with pytest.raises(InvalidRequest):
            store.list_for_owner("alice", limit=limit)


def test_list_by_status_finds_jobs_and_filters_by_last_update(store: JobStore, clock: FakeClock) -> None:
    old = running_job(store)
    clock.advance(600)
    new = running_job(store)
    queued = store.create("bob", status="QUEUED")
    assert {job.job_id for job in store.list_by_status("RUNNING")} == {old.job_id, new.job_id}
    assert [job.job_id for job in store.list_by_status("RUNNING", updated_before=START + 300)] == [old.job_id]
    assert [job.job_id for job in store.list_by_status("QUEUED")] == [queued.job_id]
    assert list(store.list_by_status("CANCELLING")) == []
    with pytest.raises(InvalidRequest):
        list(store.list_by_status("PAUSED"))
