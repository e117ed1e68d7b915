"""Finishing a job whose work has stopped: purge + CANCELLED for a cancel, FAILED otherwise.

Shared by the state machine's cleanup step, the Step Functions status-change event and the
reconciler, so all three end a job the same way. Each function is idempotent: a job that is
finished already is left as it is (a cancelled one is purged again, which deletes what a late
writer may have left).
"""

from __future__ import annotations

import json
import signal
from typing import Any

from handlers.deps import Deps
from handlers.observability import count, logger
from jobstate.jobs import CANCELLED, CANCELLING, CREATED, QUEUED, RUNNING, Job
from jobstate.purge import purge_job

# A job in one of these may be cancelled (purge + CANCELLED).
CANCELLABLE: tuple[str, ...] = (QUEUED, RUNNING, CANCELLING, CANCELLED)

# Error codes on a job that the pipeline did not fail itself (the container records its own).
CODE_BY_SFN_ERROR: dict[str, str] = {
    "States.Timeout": "stage_timed_out",
    "States.TaskFailed": "stage_failed",
    "States.HeartbeatTimeout": "stage_timed_out",
}
DEFAULT_FAILURE_CODE = "pipeline_failed"
UPLOAD_EXPIRED = "upload_expired"
# A process ended by signal N exits 128 + N in a container (the shell's and Docker's convention).
SIGNAL_EXIT_BASE = 128
CODE_BY_EXECUTION_STATUS: dict[str, str] = {
    "ABORTED": "execution_aborted",
    "TIMED_OUT": "execution_timed_out",
    "FAILED": "execution_failed",
    "SUCCEEDED": "execution_ended_without_result",
    "NOT_STARTED": "execution_not_started",
}


def outcome(job: Job, **extra: Any) -> dict[str, Any]:
    return {"job_id": job.job_id, "status": job.status, **extra}


def cancel_job(d: Deps, job_id: str) -> dict[str, Any]:
    """Purge ``jobs/{job_id}/`` and mark the job CANCELLED with the counts; a SUCCEEDED/FAILED job is kept."""
    job = d.jobs.get(job_id, consistent=True)
    if job.status not in CANCELLABLE:
        logger.info("nothing to cancel", extra={"job_id": job_id, "status": job.status})
        return outcome(job, purged=None)
    report = purge_job(d.s3, d.settings.bucket_name, job_id)
    job = d.jobs.mark_cancelled(job_id, report)
    count("JobCancelled")
    logger.info("job cancelled", extra={"job_id": job_id, "purged": report.as_dict()})
    return outcome(job, purged=report.as_dict())


def expire_upload(d: Deps, job_id: str) -> dict[str, Any]:
    """A CREATED job whose capture never came: purge what part of it arrived, then FAILED
    ``upload_expired`` (a job that moved on meanwhile is left as it is)."""
    window = d.settings.upload_url_expires_s + d.settings.upload_grace_s
    message = f"no capture arrived within {window} s of the job's creation"
    failed = d.jobs.fail(job_id, UPLOAD_EXPIRED, message, from_states=(CREATED,))
    if failed is None:  # the capture came after all: the pipeline has it
        return outcome(d.jobs.get(job_id, consistent=True))
    report = purge_job(d.s3, d.settings.bucket_name, job_id)
    count("UploadExpired")
    logger.info("upload expired", extra={"job_id": job_id, "purged": report.as_dict()})
    return outcome(failed, purged=report.as_dict())


def fail_job(d: Deps, job_id: str, code: str, message: str) -> dict[str, Any]:
    """FAILED with the error; a CANCELLING job is cancelled instead; a finished one is left alone."""
    job = d.jobs.get(job_id, consistent=True)
    if job.status == CANCELLING:
        return cancel_job(d, job_id)
    if job.is_terminal:
        logger.info("job finished already", extra={"job_id": job_id, "status": job.status})
        return outcome(job)
    failed = d.jobs.fail(job_id, code, message)
    if failed is None:  # it moved meanwhile: finished, or a cancel was confirmed
        current = d.jobs.get(job_id, consistent=True)
        return cancel_job(d, job_id) if current.status == CANCELLING else outcome(current)
    count("JobFailed")
    logger.info("job failed", extra={"job_id": job_id, "code": code})
    return outcome(failed)


def _field(document: dict[str, Any], name: str) -> Any:
    """``name`` in Step Functions' PascalCase, or in Batch's own camelCase."""
    return document.get(name, document.get(name[0].lower() + name[1:]))


def exit_description(exit_code: Any) -> str:
    """``exit code 1``; a container killed by a signal exits 128 + its number, said in words:
    ``stage process killed by SIGKILL (exit 137)``."""
    if exit_code is None:
        return ""
    try:
        number = int(exit_code)
        name = signal.Signals(number - SIGNAL_EXIT_BASE).name if number > SIGNAL_EXIT_BASE else None
    except (TypeError, ValueError):
        return f"exit code {str(exit_code)[:20]}"
    return f"stage process killed by {name} (exit {number})" if name else f"exit code {number}"


def describe_sfn_error(error: Any) -> tuple[str, str]:
    """(code, message) for a state machine's caught error ``{"Error", "Cause"}``.

    A Batch task's Cause is the job description as JSON: its status reason and the container's
    exit code say more than the whole document.
    """
    if not isinstance(error, dict):
        return DEFAULT_FAILURE_CODE, "the pipeline failed without an error description"
    name = str(error.get("Error") or "Error")
    cause = error.get("Cause")
    reason = cause if isinstance(cause, str) else ""
    try:
        described = json.loads(reason) if reason.startswith("{") else None
    except ValueError:
        described = None
    if isinstance(described, dict):
        container = _field(described, "Container")
        container = container if isinstance(container, dict) else {}
        exit_code = _field(container, "ExitCode")
        parts = [
            str(_field(described, "StatusReason") or ""),
            exit_description(exit_code),
            str(_field(container, "Reason") or ""),
        ]
        reason = "; ".join(part for part in parts if part)
    code = CODE_BY_SFN_ERROR.get(name, DEFAULT_FAILURE_CODE)
    return code, f"{name}: {reason}" if reason else name


def finish_after_execution(
    d: Deps, job_id: str, execution_status: str, error: str | None = None, cause: str | None = None
) -> dict[str, Any]:
    """The execution of the job ended (or never started): end the job to match."""
    code = CODE_BY_EXECUTION_STATUS.get(execution_status, DEFAULT_FAILURE_CODE)
    message = f"the execution ended {execution_status}"
    if error or cause:
        message += ": " + ": ".join(part for part in (error, cause) if part)
    return fail_job(d, job_id, code, message)
