"""Every name and limit of the service, read once from the environment.

The template sets these on the functions and the Batch job definition; the local stack sets
them for its processes. Endpoints are not settings of ours: boto3 reads ``AWS_ENDPOINT_URL``
itself, which is how the emulated AWS on loopback is reached.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return default if raw in (None, "") else int(raw)


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return default if raw in (None, "") else float(raw)


@dataclass(frozen=True)
class Settings:
    table_name: str = field(default_factory=lambda: os.environ.get("TABLE_NAME", "reconflow-jobs"))
    bucket_name: str = field(default_factory=lambda: os.environ.get("BUCKET_NAME", "reconflow-data"))
    state_machine_arn: str = field(default_factory=lambda: os.environ.get("STATE_MACHINE_ARN", ""))
    # Two-step cancel: how long a cancel request can be confirmed, and how long a confirmed flag lives.
    cancel_confirm_window_s: int = field(default_factory=lambda: _int("CANCEL_CONFIRM_WINDOW_S", 3600))
    cancel_flag_ttl_s: int = field(default_factory=lambda: _int("CANCEL_FLAG_TTL_S", 86400))
    # Progress writes: at most one per job in this interval (stage start/end always write).
    progress_min_interval_s: float = field(default_factory=lambda: _float("PROGRESS_MIN_INTERVAL_S", 1.0))
    # Finished jobs are kept this long, then DynamoDB's TTL removes them.
    job_retention_days: int = field(default_factory=lambda: _int("JOB_RETENTION_DAYS", 30))
    # Uploads: the largest capture accepted, and how long a presigned upload stays valid.
    max_upload_bytes: int = field(default_factory=lambda: _int("MAX_UPLOAD_BYTES", 2 * 1024**3))
    upload_url_expires_s: int = field(default_factory=lambda: _int("UPLOAD_URL_EXPIRES_S", 900))
    download_url_expires_s: int = field(default_factory=lambda: _int("DOWNLOAD_URL_EXPIRES_S", 3600))
    # Listing: page size of GET /jobs.
    list_page_size: int = field(default_factory=lambda: _int("LIST_PAGE_SIZE", 50))
    list_page_size_max: int = field(default_factory=lambda: _int("LIST_PAGE_SIZE_MAX", 100))
    # Reconciler: a CANCELLING job whose execution still runs after this long is stopped by force.
    cancel_grace_s: int = field(default_factory=lambda: _int("CANCEL_GRACE_S", 120))
    # AWS calls: attempts per call in botocore's standard retry mode (backoff with jitter).
    aws_max_attempts: int = field(default_factory=lambda: _int("AWS_MAX_ATTEMPTS", 8))
    # Uploads that never come: a CREATED job fails ``upload_expired`` this long after its upload
    # form expired (the form's lifetime plus this grace), and whatever part of it arrived is purged.
    upload_grace_s: int = field(default_factory=lambda: _int("UPLOAD_GRACE_S", 3600))
    # GPU capacity: a stage's Batch job still SUBMITTED/PENDING/RUNNABLE/STARTING this long after it
    # was submitted fails the job ``no_gpu_capacity`` (and the Batch job is terminated).
    gpu_wait_timeout_s: int = field(default_factory=lambda: _int("GPU_WAIT_TIMEOUT_S", 900))
    # Each stage's limit in the state machine, covering the wait for an instance and the run
    # (Batch's attempt duration counts only RUNNING time): passed in the execution's input.
    stage_time_limit_s: int = field(default_factory=lambda: _int("STAGE_TIME_LIMIT_S", 5400))
    # The stages' Batch queue (the capacity watch lists its waiting jobs).
    job_queue: str = field(default_factory=lambda: os.environ.get("JOB_QUEUE", ""))
    # Job status events on EventBridge: the bus, the source, and attempts per PutEvents (backoff
    # with jitter); a publish that still fails is logged and never fails the status change.
    event_bus_name: str = field(default_factory=lambda: os.environ.get("EVENT_BUS_NAME", "default"))
    event_source: str = field(default_factory=lambda: os.environ.get("EVENT_SOURCE", "reconflow"))
    event_publish_attempts: int = field(default_factory=lambda: _int("EVENT_PUBLISH_ATTEMPTS", 3))
