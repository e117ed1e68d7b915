"""Cleanup (state machine input and status-change event) and the reconciler, from events/."""

from __future__ import annotations

import json
from typing import Any

import pytest
from handler_helpers import BUCKET, CONTEXT, INPUT_KEY, JOB_ID, OWNER, World, load_event

from handlers import cleanup, finishing
from jobstate.ids import new_job_id
from jobstate.layout import output_key, work_key


def _start(world: World, job_id: str) -> str:
    """QUEUED with a recorded (moto: RUNNING) execution."""
    world.deps.jobs.create(OWNER, job_id=job_id, status="QUEUED")
    payload = json.dumps({"job_id": job_id, "bucket": BUCKET, "input_key": INPUT_KEY})
    arn = world.deps.sfn.start_execution(
        stateMachineArn=world.deps.settings.state_machine_arn, name=job_id, input=payload
    )["executionArn"]
    world.deps.jobs.set_execution(job_id, arn)
    return arn


def _running(world: World, job_id: str = JOB_ID) -> str:
    arn = _start(world, job_id)
    world.deps.jobs.begin_stage(job_id, "hull")
    return arn


def _cancelling(world: World, job_id: str = JOB_ID) -> str:
    arn = _running(world, job_id)
    jobs = world.deps.jobs
    jobs.confirm_cancel(job_id, OWNER, jobs.request_cancel(job_id, OWNER).token)
    return arn


def _files(world: World, job_id: str = JOB_ID) -> list[str]:
    keys = [
        f"jobs/{job_id}/input/capture.zip",
        work_key(job_id, "hull", "grid.npz"),
        output_key(job_id, "model.glb"),
    ]
    for key in keys:
        world.put(key)
    return keys


def _status_change(status: str, job_id: str = JOB_ID) -> dict[str, Any]:
    event = load_event("cleanup_sfn_status_change.json")
    event["detail"]["status"] = status
    event["detail"]["name"] = job_id
    return event


def test_cancel_input_purges_the_prefix_and_marks_the_job_cancelled(world: World) -> None:
    _cancelling(world)
    keys = _files(world)
    neighbour = _files(world, new_job_id())

    result = cleanup.handler(load_event("cleanup_cancel.json"), CONTEXT)

    assert result["status"] == "CANCELLED"
    assert result["purged"]["versions"] == len(keys)
    assert world.keys(f"jobs/{JOB_ID}/") == []
    assert world.keys() == sorted(neighbour)
    job = world.job()
    assert job.status == "CANCELLED"
    assert job.purged["versions"] == len(keys)
    assert [item["sk"]["S"] for item in world.job_items()] == ["job"]  # cancel flags cleared
    # A repeat (a retried Lambda task) changes nothing.
    assert cleanup.handler(load_event("cleanup_cancel.json"), CONTEXT)["status"] == "CANCELLED"


def test_cancel_input_keeps_a_succeeded_job_and_its_outputs(world: World) -> None:
    _running(world)
    world.put(output_key(JOB_ID, "model.glb"))
    world.deps.jobs.succeed(JOB_ID, {"model.glb": output_key(JOB_ID, "model.glb")})

    result = cleanup.handler(load_event("cleanup_cancel.json"), CONTEXT)

    assert result == {"job_id": JOB_ID, "status": "SUCCEEDED", "purged": None}
    assert world.keys(f"jobs/{JOB_ID}/") == [output_key(JOB_ID, "model.glb")]


def test_fail_input_marks_the_job_failed_with_the_batch_reason(world: World) -> None:
    _running(world)

    result = cleanup.handler(load_event("cleanup_fail.json"), CONTEXT)

    assert result == {"job_id": JOB_ID, "status": "FAILED"}
    error = world.job().error
    assert error["code"] == "stage_failed"
    assert "Essential container in task exited" in error["message"]
    assert "exit code 1" in error["message"]


def test_fail_input_for_a_cancelling_job_purges_and_cancels(world: World) -> None:
    _cancelling(world)
    _files(world)

    result = cleanup.handler(load_event("cleanup_fail.json"), CONTEXT)

    assert result["status"] == "CANCELLED"
    assert world.keys(f"jobs/{JOB_ID}/") == []


def test_fail_input_keeps_the_error_the_container_recorded(world: World) -> None:
    _running(world)
    world.deps.jobs.fail(JOB_ID, "bad_capture", "transforms.json: frames[3] has no transform_matrix")

    assert cleanup.handler(load_event("cleanup_fail.json"), CONTEXT)["status"] == "FAILED"
    assert world.job().error["code"] == "bad_capture"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        ({"Error": "States.Timeout", "Cause": "stage took too long"}, "stage_timed_out"),
        ({"Error": "Batch.AWSBatchException", "Cause": "not JSON {"}, "pipeline_failed"),
        (None, "pipeline_failed"),
    ],
)
def test_fail_input_maps_other_errors(world: World, error: Any, code: str) -> None:
    _running(world)
    event = load_event("cleanup_fail.json") | {"error": error}

    cleanup.handler(event, CONTEXT)

    assert world.job().error["code"] == code


def test_fail_input_reads_a_batch_description_in_camel_case_too(world: World) -> None:
    _running(world)
    cause = json.dumps({"statusReason": "Host EC2 terminated", "container": {"exitCode": 137}})

    cleanup.handler(
        load_event("cleanup_fail.json") | {"error": {"Error": "States.TaskFailed", "Cause": cause}}, CONTEXT
    )

    assert world.job().error["message"] == (
        "States.TaskFailed: Host EC2 terminated; stage process killed by SIGKILL (exit 137)"
    )


def test_status_change_event_fails_a_running_job(world: World) -> None:
    _running(world)

    result = cleanup.handler(load_event("cleanup_sfn_status_change.json"), CONTEXT)

    assert result["status"] == "FAILED"
    error = world.job().error
    assert error["code"] == "execution_timed_out"
    assert "States.Timeout" in error["message"]


def test_status_change_event_for_a_cancelling_job_purges_and_cancels(world: World) -> None:
    _cancelling(world)
    _files(world)

    result = cleanup.handler(_status_change("ABORTED"), CONTEXT)

    assert result["status"] == "CANCELLED"
    assert world.keys(f"jobs/{JOB_ID}/") == []


@pytest.mark.parametrize(
    ("status", "name"),
    [("SUCCEEDED", JOB_ID), ("RUNNING", JOB_ID), ("FAILED", "not-a-job"), ("FAILED", new_job_id())],
)
def test_status_change_events_that_need_nothing_change_nothing(world: World, status: str, name: str) -> None:
    _running(world)

    result = cleanup.handler(_status_change(status, name), CONTEXT)

    assert "ignored" in result
    assert world.job().status == "RUNNING"


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"action": "explode", "job_id": JOB_ID}, "unknown cleanup action 'explode'"),
        ({"action": "cancel", "job_id": "../etc"}, "cleanup input without a valid job id"),
        ({"action": "cancel", "job_id": new_job_id()}, "cleanup input for an unknown job"),
        (
            {"hello": "world"},
            "neither a cleanup action, a Step Functions status change nor a Batch job state change",
        ),
        (["a", "list"], "event is a list, not an object"),
        (
            {"source": "aws.states", "detail-type": "Step Functions Execution Status Change"},
            "status change without a detail object",
        ),
    ],
)
def test_malformed_cleanup_input_is_dropped_with_its_reason(world: World, event: Any, reason: str) -> None:
    _running(world)

    answer = cleanup.handler(event, CONTEXT)

    assert answer["ignored"] == reason
    assert world.job().status == "RUNNING"


def test_a_status_change_of_another_state_machine_is_ignored(world: World) -> None:
    _running(world)
    event = _status_change("FAILED")
    event["detail"]["stateMachineArn"] = "arn:aws:states:us-east-1:123456789012:stateMachine:other"

    answer = cleanup.handler(event, CONTEXT)

    assert answer["ignored"] == "status change of another state machine"
    assert world.job().status == "RUNNING"


def test_reconcile_finishes_stuck_jobs_and_leaves_working_ones(world: World) -> None:
    sfn, grace = world.deps.sfn, world.deps.settings.cancel_grace_s
    stopped_cancel = new_job_id()  # CANCELLING, execution aborted: purge + CANCELLED
    sfn.stop_execution(executionArn=_cancelling(world, stopped_cancel))
    _files(world, stopped_cancel)
    ended_running = new_job_id()  # RUNNING, execution ended: FAILED
    sfn.stop_execution(executionArn=_running(world, ended_running))
    working = new_job_id()  # RUNNING, execution running: unchanged
    _running(world, working)
    stubborn = new_job_id()  # CANCELLING, execution still running after the grace: stopped, purged
    stubborn_arn = _cancelling(world, stubborn)
    never_started = new_job_id()  # QUEUED without an execution for longer than the grace: FAILED
    world.deps.jobs.create(OWNER, job_id=never_started, status="QUEUED")
    world.clock.advance(grace + 1)
    fresh_cancel = new_job_id()  # CANCELLING, execution running, within the grace: unchanged
    _cancelling(world, fresh_cancel)
    fresh_queued = new_job_id()  # QUEUED a moment ago, no execution yet: unchanged
    world.deps.jobs.create(OWNER, job_id=fresh_queued, status="QUEUED")

    report = cleanup.reconcile(load_event("reconcile_scheduled.json"), CONTEXT)

    status = {
        job_id: world.job(job_id).status for job_id in (stopped_cancel, ended_running, working, stubborn)
    }
    assert status == {
        stopped_cancel: "CANCELLED",
        ended_running: "FAILED",
        working: "RUNNING",
        stubborn: "CANCELLED",
    }
    assert world.job(never_started).error["code"] == "execution_not_started"
    assert world.job(ended_running).error["code"] == "execution_aborted"
    assert world.job(fresh_cancel).status == "CANCELLING"
    assert world.job(fresh_queued).status == "QUEUED"
    assert world.keys(f"jobs/{stopped_cancel}/") == []
    assert sfn.describe_execution(executionArn=stubborn_arn)["status"] == "ABORTED"
    assert report["stopped"] == [stubborn]
    assert report["errors"] == []
    assert sorted(f["job_id"] for f in report["finished"]) == sorted(
        [stopped_cancel, ended_running, stubborn, never_started]
    )
    # The next run finds nothing more to do.
    assert cleanup.reconcile(load_event("reconcile_scheduled.json"), CONTEXT)["finished"] == []


def test_reconcile_tries_every_job_and_then_reports_the_failures(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken, fine = new_job_id(), new_job_id()
    for job_id in (broken, fine):
        world.deps.sfn.stop_execution(executionArn=_running(world, job_id))
    describe = world.deps.sfn.describe_execution

    def describe_or_fail(executionArn: str) -> dict[str, Any]:  # noqa: N803 (boto3's name)
        if executionArn.endswith(broken):
            raise RuntimeError("boom")
        return describe(executionArn=executionArn)

    monkeypatch.setattr(world.deps.sfn, "describe_execution", describe_or_fail)
    with pytest.raises(cleanup.ReconcileIncompleteError):
        cleanup.reconcile(load_event("reconcile_scheduled.json"), CONTEXT)

    assert world.job(fine).status == "FAILED"
    assert world.job(broken).status == "RUNNING"


@pytest.mark.parametrize(
    ("exit_code", "said"),
    [
        (1, "exit code 1"),
        (137, "stage process killed by SIGKILL (exit 137)"),
        (143, "stage process killed by SIGTERM (exit 143)"),
        (3, "exit code 3"),
        (None, ""),
        ("x", "exit code x"),
    ],
)
def test_a_container_exit_code_is_said_in_words(exit_code: Any, said: str) -> None:
    assert finishing.exit_description(exit_code) == said


def test_reconcile_fails_a_created_job_whose_upload_never_came_and_purges_its_leftovers(world: World) -> None:
    settings = world.deps.settings
    window = settings.upload_url_expires_s + settings.upload_grace_s
    abandoned = world.deps.jobs.create(OWNER).job_id
    world.deps.s3.create_multipart_upload(Bucket=BUCKET, Key=f"jobs/{abandoned}/input/capture.zip")
    world.clock.advance(window - 10)
    recent = world.deps.jobs.create(OWNER).job_id  # its window is still open
    world.clock.advance(11)

    report = cleanup.reconcile(load_event("reconcile_scheduled.json"), CONTEXT)

    assert report["expired"] == [abandoned]
    job = world.job(abandoned)
    assert job.status == "FAILED"
    assert job.error["code"] == "upload_expired"
    assert str(window) in job.error["message"]
    assert world.deps.s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert world.job(recent).status == "CREATED"
