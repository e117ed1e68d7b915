"""The end of a job outside the happy path: cancel (purge + CANCELLED) or fail, and the reconciler.

``handler`` takes either the state machine's cleanup input
    {"action": "cancel", "job_id": ...}
    {"action": "fail", "job_id": ..., "error": {"Error": ..., "Cause": ...}}
or EventBridge's "Step Functions Execution Status Change" event (ABORTED / TIMED_OUT / FAILED;
the execution's name is the job id) and ends the job the same way either way. It also takes
Batch's "Job State Change" event of a stage job gone RUNNABLE/STARTING and tells the job it waits
for a GPU instance (``handlers.capacity``). An event that no
retry could make right (not an object, no ``detail``, a bad job id, an unknown action or job, an
execution of another state machine) is dropped with a logged reason and the metric
``CleanupEventsDropped``, never raised: Lambda would retry it and then dead-letter it. AWS errors
still raise, so the event is delivered again.

``reconcile`` runs on a schedule because status-change events are best-effort: it finds jobs in
CANCELLING or RUNNING (and QUEUED for longer than the grace) whose execution is no longer
running and finishes them; a CANCELLING job whose execution still runs after the grace is
stopped (StopExecution) and purged. It also fails CREATED jobs whose capture never came
(``upload_expired``, after the upload window plus ``UPLOAD_GRACE_S``; what arrived is purged) and
watches the stages waiting for a GPU instance (``handlers.capacity``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from itertools import chain
from typing import TYPE_CHECKING, Any

from handlers import deps
from handlers.capacity import (
    BATCH_SOURCE,
    BATCH_STATE_CHANGE,
    note_waiting,
    queue_name,
    stage_job,
    watch_capacity,
)
from handlers.executions import RUNNING as EXECUTION_RUNNING
from handlers.executions import execution_arn, execution_status
from handlers.finishing import cancel_job, describe_sfn_error, expire_upload, fail_job, finish_after_execution
from handlers.observability import count, logger, metrics
from jobstate.errors import InvalidJobId, JobNotFound
from jobstate.ids import parse_job_id
from jobstate.jobs import CANCELLING, CREATED, QUEUED, RUNNING, Job, iso_utc

if TYPE_CHECKING:  # annotations only: powertools' typing module is not needed to run
    from aws_lambda_powertools.utilities.typing import LambdaContext

CANCEL = "cancel"
FAIL = "fail"
STATUS_CHANGE_DETAIL_TYPE = "Step Functions Execution Status Change"
SFN_SOURCE = "aws.states"
# Execution statuses after which the job must be finished by us (SUCCEEDED: the export did it).
ENDED_BADLY: frozenset[str] = frozenset({"ABORTED", "TIMED_OUT", "FAILED"})
NOT_STARTED = "NOT_STARTED"
# What StopExecution records on an execution the reconciler stops.
STOP_ERROR = "reconflow.CancelTimeout"
STOP_CAUSE = "the job was cancelled and its work did not stop within the grace period"


class ReconcileIncompleteError(Exception):
    """Some jobs could not be reconciled this run (logged one by one); the next run tries again."""


def _ignored(reason: str, **fields: Any) -> dict[str, Any]:
    """Drop an event that no retry could make right: logged with the reason, answered, not raised
    (a raise would make Lambda retry it, then dead-letter it)."""
    logger.warning("cleanup event dropped", extra={"reason": reason, **fields})
    count("CleanupEventsDropped")
    return {"job_id": fields.get("job_id"), "status": None, "ignored": reason}


def _state_machine_input(event: Mapping[str, Any], d: deps.Deps) -> dict[str, Any]:
    try:
        job_id = parse_job_id(event.get("job_id"))
    except InvalidJobId:
        return _ignored("cleanup input without a valid job id", job_id_given=str(event.get("job_id"))[:80])
    action = event.get("action")
    try:
        if action == CANCEL:
            return cancel_job(d, job_id)
        if action == FAIL:
            code, message = describe_sfn_error(event.get("error"))
            return fail_job(d, job_id, code, message)
    except JobNotFound:
        return _ignored("cleanup input for an unknown job", job_id=job_id)
    return _ignored(f"unknown cleanup action {str(action)[:40]!r}", job_id=job_id)


def _status_change(event: Mapping[str, Any], d: deps.Deps) -> dict[str, Any]:
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        return _ignored("status change without a detail object")
    machine = detail.get("stateMachineArn")
    if machine != d.settings.state_machine_arn:
        # Another state machine's execution may carry a job's id as its name: not ours to finish.
        return _ignored("status change of another state machine", state_machine=str(machine)[:300])
    status = str(detail.get("status"))
    try:
        job_id = parse_job_id(detail.get("name"))
    except InvalidJobId:
        return _ignored("execution not named after a job", execution_name=str(detail.get("name"))[:80])
    if status not in ENDED_BADLY:
        return {"job_id": job_id, "status": None, "ignored": f"execution {status}"}
    error, cause = (detail.get(name) for name in ("error", "cause"))
    try:
        return finish_after_execution(
            d, job_id, status, *(str(text) if text is not None else None for text in (error, cause))
        )
    except JobNotFound:
        return _ignored("status change for an unknown job", job_id=job_id)


def _batch_job_state_change(event: Mapping[str, Any], d: deps.Deps) -> dict[str, Any]:
    """A stage job of this stack's queue gone RUNNABLE/STARTING: its job is told at once."""
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        return _ignored("batch job state change without a detail object")
    queue = str(detail.get("jobQueue") or "")
    if not d.settings.job_queue or queue_name(queue) != queue_name(d.settings.job_queue):
        return _ignored("batch job of another queue", queue=queue[:300])
    created = detail.get("createdAt")
    created_ms = float(created) if isinstance(created, int | float) else d.clock() * 1000
    status = str(detail.get("status"))[:40]
    named = stage_job(str(detail.get("jobName") or ""))
    if named is None or not note_waiting(d, *named, status, created_ms, queue):
        # not a stage job, past waiting, or the stage began already
        return {"job_id": None, "status": None, "ignored": f"batch job {status}: nothing to tell"}
    job_id = named[1]
    return {"job_id": job_id, "status": None, "noted": f"waiting for a GPU instance ({status})"}


def process_cleanup(event: Any, d: deps.Deps | None = None) -> dict[str, Any]:
    """Dispatch on the event's shape (see the module docstring); anything else is dropped, logged."""
    d = d or deps.current()
    if not isinstance(event, Mapping):
        return _ignored(f"event is a {type(event).__name__}, not an object")
    if "action" in event:
        return _state_machine_input(event, d)
    if event.get("source") == SFN_SOURCE and event.get("detail-type") == STATUS_CHANGE_DETAIL_TYPE:
        return _status_change(event, d)
    if event.get("source") == BATCH_SOURCE and event.get("detail-type") == BATCH_STATE_CHANGE:
        return _batch_job_state_change(event, d)
    return _ignored("neither a cleanup action, a Step Functions status change nor a Batch job state change")


@logger.inject_lambda_context(clear_state=True, correlation_id_path="id || job_id")
@metrics.log_metrics
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    count("CleanupInvocations")
    return process_cleanup(event)


# --- the reconciler ----------------------------------------------------------------------------


@dataclass
class ReconcileReport:
    checked: int = 0
    finished: list[dict[str, Any]] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)  # CREATED jobs whose upload never came
    gpu_waiting: list[str] = field(default_factory=list)  # told they wait for a GPU instance
    no_gpu_capacity: list[str] = field(default_factory=list)  # failed: waited too long
    gpu_wait_ended: list[str] = field(default_factory=list)  # cancelled while waiting: Batch job ended

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _candidates(d: deps.Deps, grace_cutoff: float) -> Iterator[Job]:
    return chain(
        d.jobs.list_by_status(CANCELLING),
        d.jobs.list_by_status(RUNNING),
        d.jobs.list_by_status(QUEUED, updated_before=grace_cutoff),
    )


def reconcile_job(d: deps.Deps, job: Job, grace_cutoff: float, report: ReconcileReport) -> None:
    """Finish ``job`` if its execution has ended (or, for a stuck cancel, stop it first)."""
    arn = job.execution_arn or execution_arn(d.settings.state_machine_arn, job.job_id)
    status = execution_status(d.sfn, arn) or NOT_STARTED
    stale = job.updated_at < iso_utc(grace_cutoff)
    if status == EXECUTION_RUNNING:
        if job.status == CANCELLING and stale:
            d.sfn.stop_execution(executionArn=arn, error=STOP_ERROR, cause=STOP_CAUSE)
            report.stopped.append(job.job_id)
            report.finished.append(cancel_job(d, job.job_id))
        return
    if status == NOT_STARTED and not stale:
        return  # the upload function may be starting it right now
    report.finished.append(finish_after_execution(d, job.job_id, status))


def reconcile_jobs(d: deps.Deps | None = None) -> ReconcileReport:
    """One pass over the jobs that may be stuck; every job is tried even when one fails."""
    d = d or deps.current()
    grace_cutoff = d.clock() - d.settings.cancel_grace_s
    report = ReconcileReport()
    for job in _candidates(d, grace_cutoff):
        report.checked += 1
        try:
            reconcile_job(d, job, grace_cutoff, report)
        except Exception:
            logger.exception("job not reconciled", extra={"job_id": job.job_id})
            report.errors.append(job.job_id)
    expiry_cutoff = d.clock() - d.settings.upload_url_expires_s - d.settings.upload_grace_s
    for job in d.jobs.list_by_status(CREATED, updated_before=expiry_cutoff):
        report.checked += 1
        try:
            if expire_upload(d, job.job_id)["status"] == "FAILED":
                report.expired.append(job.job_id)
        except Exception:
            logger.exception("expired upload not finished", extra={"job_id": job.job_id})
            report.errors.append(job.job_id)
    try:
        capacity = watch_capacity(d)
        report.gpu_waiting, report.no_gpu_capacity = capacity.waiting, capacity.failed
        report.gpu_wait_ended = capacity.ended
    except Exception:
        logger.exception("GPU capacity not checked")
        report.errors.append("capacity")
    count("ReconcileChecked", report.checked)
    count("ReconcileFinished", len(report.finished))
    count("ReconcileErrors", len(report.errors))
    logger.info("reconciled", extra=report.as_dict())
    return report


@logger.inject_lambda_context(clear_state=True, correlation_id_path="id")
@metrics.log_metrics
def reconcile(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = reconcile_jobs()
    if report.errors:
        raise ReconcileIncompleteError(f"{len(report.errors)} of {report.checked} jobs not reconciled")
    return report.as_dict()
