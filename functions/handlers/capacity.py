"""The wait for a GPU instance: stage jobs that Batch has not started yet.

Batch's attempt duration counts only RUNNING time, so a stage stuck SUBMITTED/PENDING/RUNNABLE/
STARTING (no GPU quota, no Spot capacity) would hold its execution until the stage's time limit.
Batch's "Job State Change" event for a stage job going RUNNABLE or STARTING (the cleanup function
takes it and calls ``note_waiting``) sets its job's message at once to say it waits for a GPU
instance. The reconciler calls ``watch_capacity`` on every run as the backstop: each waiting stage
job of the stack's queue (named ``reconflow-{stage}-{job_id}`` by the state machine) gets the same
note; one that has waited longer than ``GPU_WAIT_TIMEOUT_S`` fails its job ``no_gpu_capacity``,
naming the queue and the quotas to check, and is terminated (the execution's Catch then finds the
job FAILED already and leaves it so). A note is refused once the job has begun that stage, so a
late event never overwrites what the running stage reports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from handlers.deps import Deps
from handlers.observability import count, logger
from jobstate.errors import JobNotFound
from jobstate.ids import is_job_id
from jobstate.jobs import QUEUED, RUNNING

WAITING_STATUSES: tuple[str, ...] = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING")
BATCH_SOURCE = "aws.batch"
BATCH_STATE_CHANGE = "Batch Job State Change"
NO_GPU_CAPACITY = "no_gpu_capacity"
# The state machine's JobName: States.Format('reconflow-{stage}-{job id}').
_STAGE_JOB_NAME = re.compile(r"^reconflow-([a-z]+)-([0-9a-f-]{36})$")
# What limits GPU instances in an account (Service Quotas, EC2).
GPU_QUOTAS = (
    "'Running On-Demand G and VT instances' (L-DB2E81BA)",
    "'All G and VT Spot Instance Requests' (L-3819A6DF) when UseSpot is true",
)


@dataclass
class CapacityReport:
    waiting: list[str] = field(default_factory=list)  # job ids told they wait
    failed: list[str] = field(default_factory=list)  # job ids failed no_gpu_capacity
    ended: list[str] = field(default_factory=list)  # job ids cancelled while waiting: Batch job ended


def stage_job(job_name: str) -> tuple[str, str] | None:
    """``(stage, job id)`` of a stage job's name, None for any other job in the queue."""
    found = _STAGE_JOB_NAME.match(job_name or "")
    if found is None or not is_job_id(found.group(2)):
        return None
    return found.group(1), found.group(2)


def queue_name(queue: str) -> str:
    """A queue's name, from its name or ARN."""
    return queue.rsplit("/", 1)[-1]


def waiting_message(stage: str, batch_status: str, waited_s: float, queue: str) -> str:
    return (
        f"{stage}: waiting for a GPU instance (Batch job {batch_status} for {int(waited_s)} s "
        f"in queue {queue_name(queue)})"
    )


def no_capacity_message(stage: str, batch_status: str, timeout_s: int, queue: str) -> str:
    return (
        f"{stage}: no GPU instance started within {timeout_s} s (Batch job still {batch_status} in queue "
        f"{queue_name(queue)}); check the account's EC2 quota {' or '.join(GPU_QUOTAS)}, and the "
        "compute environment's instance types and subnets"
    )


def note_waiting(
    d: Deps, stage: str, job_id: str, batch_status: str, created_at_ms: float, queue: str
) -> bool:
    """Tell ``job_id`` that its ``stage`` waits for a GPU instance; False when refused (not waiting,
    the job no longer active, or the stage begun already)."""
    if batch_status not in WAITING_STATUSES:
        return False
    waited_s = max(0.0, d.clock() - created_at_ms / 1000)
    return d.jobs.note(job_id, waiting_message(stage, batch_status, waited_s, queue), before_stage=stage)


def _job_status(d: Deps, job_id: str) -> str | None:
    try:
        return d.jobs.get(job_id, consistent=True).status
    except JobNotFound:
        return None


def _waiting_jobs(batch: Any, queue: str) -> list[dict[str, Any]]:
    found = []
    for status in WAITING_STATUSES:
        for page in batch.get_paginator("list_jobs").paginate(jobQueue=queue, jobStatus=status):
            found += [
                summary | {"status": summary.get("status") or status} for summary in page["jobSummaryList"]
            ]
    return found


def watch_capacity(d: Deps) -> CapacityReport:
    """One look at the queue's waiting stage jobs (see the module docstring)."""
    report = CapacityReport()
    queue, timeout_s = d.settings.job_queue, d.settings.gpu_wait_timeout_s
    if not queue:
        return report
    now = d.clock()
    for summary in _waiting_jobs(d.batch, queue):
        named = stage_job(summary.get("jobName", ""))
        if named is None:
            continue
        stage, job_id = named
        waited_s = max(0.0, now - summary["createdAt"] / 1000)
        status = summary["status"]
        if waited_s <= timeout_s:
            if note_waiting(d, stage, job_id, status, summary["createdAt"], queue):
                report.waiting.append(job_id)
            elif _job_status(d, job_id) not in (QUEUED, RUNNING):
                # Cancelled (or ended) while its stage waited: no container will ever see the stop,
                # so end the Batch job now; the execution's Catch then runs the cancel's cleanup.
                d.batch.terminate_job(jobId=summary["jobId"], reason=f"job {job_id} is no longer active")
                report.ended.append(job_id)
            continue
        message = no_capacity_message(stage, status, timeout_s, queue)
        failed = d.jobs.fail(job_id, NO_GPU_CAPACITY, message, from_states=(QUEUED, RUNNING))
        # Terminated either way: a job that is cancelled or finished has no use for the instance.
        d.batch.terminate_job(jobId=summary["jobId"], reason=f"{NO_GPU_CAPACITY}: waited over {timeout_s} s")
        if failed is not None:
            report.failed.append(job_id)
            count("NoGpuCapacity")
            logger.warning("no GPU capacity", extra={"job_id": job_id, "stage": stage, "queue": queue})
    return report
