"""Stages waiting for a GPU instance: the job says so, and past GPU_WAIT_TIMEOUT_S it fails
``no_gpu_capacity`` naming the queue and the quotas, and its Batch job is terminated."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from handler_helpers import OWNER, World, load_event

from handlers import capacity, cleanup, deps
from jobstate.ids import new_job_id
from jobstate.stages import stage_named

QUEUE = "arn:aws:batch:us-east-1:123456789012:job-queue/reconflow-gpu"


class QueueThatNeverStarts:
    """Batch's ListJobs/TerminateJob over jobs that stay in the status they were submitted with."""

    def __init__(self) -> None:
        self.jobs: list[dict[str, Any]] = []
        self.terminated: list[tuple[str, str]] = []

    def submit(self, job_name: str, created_at_s: float, status: str = "RUNNABLE") -> str:
        job_id = new_job_id()
        self.jobs.append(
            {"jobId": job_id, "jobName": job_name, "createdAt": int(created_at_s * 1000), "status": status}
        )
        return job_id

    def get_paginator(self, operation: str) -> Any:
        assert operation == "list_jobs"
        jobs = self.jobs

        class Pages:
            def paginate(self, jobQueue: str, jobStatus: str) -> list[dict[str, Any]]:  # noqa: N803
                assert jobQueue == QUEUE
                return [{"jobSummaryList": [dict(j) for j in jobs if j["status"] == jobStatus]}]

        return Pages()

    def terminate_job(self, jobId: str, reason: str) -> None:  # noqa: N803
        self.terminated.append((jobId, reason))
        self.jobs = [job for job in self.jobs if job["jobId"] != jobId]


def _watching(world: World, timeout_s: int = 900) -> tuple[deps.Deps, QueueThatNeverStarts]:
    queue = QueueThatNeverStarts()
    settings = dataclasses.replace(world.deps.settings, job_queue=QUEUE, gpu_wait_timeout_s=timeout_s)
    watched = deps.Deps(
        settings, clock=world.clock, jobs=world.deps.jobs, s3=world.deps.s3, sfn=world.deps.sfn, batch=queue
    )
    return watched, queue


def _running_after(world: World, stage: str) -> str:
    job = world.deps.jobs.create(OWNER, status="QUEUED")
    world.deps.jobs.begin_stage(job.job_id, stage)
    return job.job_id


def test_a_stage_waiting_for_an_instance_says_so_on_the_job(world: World) -> None:
    watched, queue = _watching(world)
    job_id = _running_after(world, "validate")
    queue.submit(f"reconflow-preprocess-{job_id}", world.clock() - 120)

    report = capacity.watch_capacity(watched)

    assert report.waiting == [job_id]
    job = world.job(job_id)
    assert job.status == "RUNNING"
    assert (
        job.message
        == "preprocess: waiting for a GPU instance (Batch job RUNNABLE for 120 s in queue reconflow-gpu)"
    )
    assert queue.terminated == []


def test_past_the_wait_limit_the_job_fails_no_gpu_capacity_and_the_batch_job_ends(world: World) -> None:
    watched, queue = _watching(world, timeout_s=600)
    job_id = _running_after(world, "hull")
    batch_job = queue.submit(f"reconflow-reconstruct-{job_id}", world.clock() - 601, status="STARTING")

    report = capacity.watch_capacity(watched)

    assert report.failed == [job_id]
    job = world.job(job_id)
    assert job.status == "FAILED"
    assert job.error["code"] == "no_gpu_capacity"
    assert "queue reconflow-gpu" in job.error["message"]
    assert "L-DB2E81BA" in job.error["message"]
    assert "within 600 s" in job.error["message"]
    assert [job for job, _ in queue.terminated] == [batch_job]


def test_jobs_of_other_names_are_left_alone_and_finished_jobs_keep_their_status(world: World) -> None:
    watched, queue = _watching(world, timeout_s=60)
    finished = _running_after(world, "export")
    world.deps.jobs.succeed(finished, {})
    leftover = queue.submit(f"reconflow-mesh-{finished}", world.clock() - 10)
    queue.submit("someone-elses-job", world.clock() - 10_000)

    report = capacity.watch_capacity(watched)

    assert report.waiting == []
    assert report.failed == []
    assert world.job(finished).status == "SUCCEEDED"
    # the finished job's stray stage job has no use for an instance; someone else's is not ours
    assert [job for job, _ in queue.terminated] == [leftover]


def test_stage_job_names_are_parsed_strictly() -> None:
    job_id = new_job_id()
    assert capacity.stage_job(f"reconflow-hull-{job_id}") == ("hull", job_id)
    assert capacity.stage_job(f"reconflow-hull-{job_id.upper()}") is None
    assert capacity.stage_job(f"other-hull-{job_id}") is None
    assert capacity.stage_job("") is None


# --- Batch's "Job State Change" event: the note at once, through the cleanup function -------------


def _batch_event(stage: str, job_id: str, status: str = "RUNNABLE", queue: str = QUEUE) -> dict[str, Any]:
    event = load_event("cleanup_batch_job_waiting.json")
    event["detail"] |= {"jobName": f"reconflow-{stage}-{job_id}", "status": status, "jobQueue": queue}
    return event


def test_a_runnable_stage_job_event_tells_the_job_at_once(world: World) -> None:
    watched, _ = _watching(world)
    job_id = _running_after(world, "validate")
    event = _batch_event("preprocess", job_id)
    event["detail"]["createdAt"] = int((world.clock() - 42) * 1000)

    answer = cleanup.process_cleanup(event, watched)

    assert answer["job_id"] == job_id
    assert world.job(job_id).message == (
        "preprocess: waiting for a GPU instance (Batch job RUNNABLE for 42 s in queue reconflow-gpu)"
    )


def test_a_late_event_never_overwrites_what_the_running_stage_reports(world: World) -> None:
    """The instance came and the stage began before the RUNNABLE event was delivered."""
    watched, _ = _watching(world)
    job_id = _running_after(world, "preprocess")
    assert world.deps.jobs.report_progress(
        job_id, stage_named("preprocess").progress_end, "preprocess: masks 3/48"
    )

    answer = cleanup.process_cleanup(_batch_event("preprocess", job_id, status="STARTING"), watched)

    assert "ignored" in answer
    assert world.job(job_id).message == "preprocess: masks 3/48"


def test_the_sweep_never_overwrites_a_stage_that_began_either(world: World) -> None:
    """ListJobs saw the job waiting; by the time of the note its stage had begun."""
    watched, queue = _watching(world)
    job_id = _running_after(world, "hull")
    queue.submit(f"reconflow-hull-{job_id}", world.clock() - 30)

    report = capacity.watch_capacity(watched)

    assert report.waiting == []
    assert world.job(job_id).message == "hull started"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"detail": "not an object"}, "batch job state change without a detail object"),
        ({"detail": {"jobQueue": "arn:aws:batch:us-east-1:123456789012:job-queue/other"}}, "another queue"),
    ],
)
def test_malformed_or_foreign_batch_events_are_dropped_with_their_reason(
    world: World, change: dict[str, Any], reason: str
) -> None:
    watched, _ = _watching(world)
    job_id = _running_after(world, "validate")
    event = _batch_event("preprocess", job_id)
    if isinstance(change["detail"], dict):
        event["detail"] |= change["detail"]
    else:
        event["detail"] = change["detail"]

    answer = cleanup.process_cleanup(event, watched)

    assert reason in answer["ignored"]
    assert world.job(job_id).message == "validate started"


def test_events_of_finished_jobs_and_other_job_names_change_nothing(world: World) -> None:
    watched, _ = _watching(world)
    finished = _running_after(world, "export")
    world.deps.jobs.succeed(finished, {})
    before = world.job(finished)

    for event in (_batch_event("export", finished), _batch_event("export", "not-a-job")):
        assert "ignored" in cleanup.process_cleanup(event, watched)

    assert world.job(finished) == before


def test_a_job_cancelled_while_its_stage_waits_has_the_batch_job_ended_at_once(world: World) -> None:
    """No container will ever poll the stop: the sweep ends the Batch job, the execution's Catch
    then runs the cancel's cleanup, long before the cancel grace would stop the execution."""
    watched, queue = _watching(world)
    job_id = _running_after(world, "validate")
    batch_job = queue.submit(f"reconflow-preprocess-{job_id}", world.clock() - 30)
    jobs = world.deps.jobs
    jobs.confirm_cancel(job_id, OWNER, jobs.request_cancel(job_id, OWNER).token)

    report = capacity.watch_capacity(watched)

    assert report.ended == [job_id]
    assert [job for job, _ in queue.terminated] == [batch_job]
    assert world.job(job_id).status == "CANCELLING"  # the cleanup function finishes it
