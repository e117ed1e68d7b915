"""Upload trigger: a capture landed in ``jobs/{job_id}/input/`` -> job QUEUED, execution started.

Accepts EventBridge "Object Created" events and classic S3 notifications (see ``notifications``).
Every step is idempotent, so duplicate and concurrent deliveries start one execution and leave
one consistent job item: the job is created with a conditional put, moved CREATED -> QUEUED with
a conditional update, and the execution is named after the job (a second StartExecution gets
ExecutionAlreadyExists, which is fine).

What is retried: a record that is wrong for good (a key outside ``input/``, a bad job id, an
oversize object, a job already started or finished) is logged, counted and dropped. A record
that hit an AWS error (after botocore's own retries) or a bug does not stop the other records;
once all were handled, the invocation raises, so Lambda's asynchronous retries (or the SQS
redrive) deliver the event again. The records that went through are no-ops the second time;
the retries are bounded by the function's retry and on-failure settings, so nothing loops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from handlers import deps
from handlers.executions import start_job_execution
from handlers.notifications import Upload, uploads_in
from handlers.observability import count, logger, metrics
from jobstate.errors import JobNotFound, JobStateError, StateConflict
from jobstate.jobs import CREATED, QUEUED, Job
from jobstate.layout import INPUT, parse_key

if TYPE_CHECKING:  # annotations only: powertools' typing module is not needed to run
    from aws_lambda_powertools.utilities.typing import LambdaContext

# Correlation id: EventBridge's event id, or the S3 request id of a classic notification.
CORRELATION_ID_PATH = 'id || Records[0].responseElements."x-amz-request-id"'
UPLOAD_TOO_LARGE = "upload_too_large"

# Outcomes of one upload, also the names of the metrics counting them.
STARTED = "UploadStarted"
DUPLICATE = "UploadDuplicate"
IGNORED = "UploadIgnored"
REJECTED = "UploadRejected"
ERRORED = "UploadErrored"


class UploadRetryError(Exception):
    """Some records hit transient errors; raised after every record was tried, so AWS delivers again."""


@dataclass(frozen=True)
class Handled:
    key: str
    outcome: str
    job_id: str | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "outcome": self.outcome, "job_id": self.job_id, "detail": self.detail}


def _job_for(d: deps.Deps, job_id: str, uploader: str) -> Job:
    """The job of an upload; one made as QUEUED (owned by the uploader) when the API never made it."""
    try:
        return d.jobs.get(job_id, consistent=True)
    except JobNotFound:
        pass
    try:
        job = d.jobs.create(uploader, job_id=job_id, status=QUEUED)
        logger.info("job created from an upload", extra={"job_id": job_id})
        return job
    except StateConflict:  # a concurrent delivery created it first
        return d.jobs.get(job_id, consistent=True)


def handle_upload(d: deps.Deps, upload: Upload) -> Handled:
    """Queue the job of one uploaded object and start its execution."""
    if upload.bucket != d.settings.bucket_name:
        return Handled(upload.key, IGNORED, detail=f"bucket {upload.bucket!r} is not the data bucket")
    try:
        key = parse_key(upload.key)
    except JobStateError as error:
        return Handled(upload.key, IGNORED, detail=error.message)
    if key.area != INPUT or "/" in key.rest:
        return Handled(upload.key, IGNORED, key.job_id, "not an input capture (jobs/{job_id}/input/<name>)")

    job = _job_for(d, key.job_id, upload.uploader)
    if job.status not in (CREATED, QUEUED):
        return Handled(upload.key, IGNORED, job.job_id, f"job is {job.status} already")
    if job.execution_arn:  # a later object in input/ never touches a job whose pipeline started
        return Handled(upload.key, DUPLICATE, job.job_id, "execution recorded already")

    limit = d.settings.max_upload_bytes
    if upload.size is not None and upload.size > limit:
        d.jobs.fail(job.job_id, UPLOAD_TOO_LARGE, f"{key.rest} is {upload.size} bytes; the limit is {limit}")
        return Handled(upload.key, REJECTED, job.job_id, f"{upload.size} bytes > {limit}")

    if job.status == CREATED and not d.jobs.mark_queued(
        job.job_id, capture_key=upload.key, capture_version=upload.version
    ):
        job = d.jobs.get(job.job_id, consistent=True)  # someone else moved it: queued, or cancelled/failed
        if job.status != QUEUED:
            return Handled(upload.key, IGNORED, job.job_id, f"job is {job.status} already")
    elif job.status == QUEUED and not job.capture_key:  # made QUEUED from this upload (no API job)
        d.jobs.set_capture(job.job_id, upload.key, upload.version)
    if job.execution_arn:
        return Handled(upload.key, DUPLICATE, job.job_id, "execution recorded already")

    arn, started = start_job_execution(
        d.sfn, d.settings.state_machine_arn, job.job_id, upload.bucket, upload.key, d.settings
    )
    d.jobs.set_execution(job.job_id, arn)
    return Handled(upload.key, STARTED if started else DUPLICATE, job.job_id, arn)


def process_event(event: Any, d: deps.Deps | None = None) -> list[Handled]:
    """Handle every upload of the event; raises UploadRetryError at the end if any hit a transient error."""
    d = d or deps.current()
    handled: list[Handled] = []
    for upload in uploads_in(event):
        try:
            outcome = handle_upload(d, upload)
        except JobStateError as error:  # wrong for good: retrying changes nothing
            outcome = Handled(upload.key, REJECTED, detail=f"{error.code}: {error.message}")
        except Exception as error:  # AWS or a bug: the others go on, then the event is retried
            logger.exception("upload not handled; the event will be retried", extra={"key": upload.key})
            outcome = Handled(upload.key, ERRORED, detail=type(error).__name__)
        log = logger.warning if outcome.outcome in (IGNORED, REJECTED) else logger.info
        log("upload handled", extra=outcome.as_dict())
        count(outcome.outcome)
        handled.append(outcome)
    errored = [h for h in handled if h.outcome == ERRORED]
    if errored:
        raise UploadRetryError(f"{len(errored)} of {len(handled)} uploads failed with transient errors")
    return handled


@logger.inject_lambda_context(clear_state=True, correlation_id_path=CORRELATION_ID_PATH)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    count("UploadEvents")
    return {"uploads": [h.as_dict() for h in process_event(event)]}
