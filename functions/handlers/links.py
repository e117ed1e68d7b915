"""Presigned S3 links: the capture upload of a new job and the downloads of a finished one."""

from __future__ import annotations

from typing import Any

from handlers.observability import logger
from jobstate.captures import capture_name
from jobstate.errors import JobStateError
from jobstate.jobs import SUCCEEDED, Job
from jobstate.layout import OUTPUT, input_key, parse_key
from jobstate.settings import Settings

MIN_UPLOAD_BYTES = 1


def upload_form(s3: Any, settings: Settings, job_id: str, capture_format: str) -> dict[str, Any]:
    """A presigned POST form for ``jobs/{job_id}/input/capture.<format>`` and that key only; its
    policy bounds the size."""
    form = s3.generate_presigned_post(
        Bucket=settings.bucket_name,
        Key=input_key(job_id, capture_name(capture_format)),
        Conditions=[["content-length-range", MIN_UPLOAD_BYTES, settings.max_upload_bytes]],
        ExpiresIn=settings.upload_url_expires_s,
    )
    return {
        "url": form["url"],
        "fields": form["fields"],
        "expires_in": settings.upload_url_expires_s,
        "max_bytes": settings.max_upload_bytes,
    }


def download_links(s3: Any, settings: Settings, job: Job) -> dict[str, str]:
    """``{file name: presigned GET URL}`` for each output of a SUCCEEDED job; {} otherwise.

    Only keys inside the job's own ``output/`` area are signed, whatever the result item says.
    """
    if job.status != SUCCEEDED or not job.result:
        return {}
    links: dict[str, str] = {}
    for name, key in sorted(job.result.items()):
        try:
            parsed = parse_key(key)
        except JobStateError:
            parsed = None
        if parsed is None or parsed.job_id != job.job_id or parsed.area != OUTPUT:
            logger.warning("result entry outside the job's output area not signed", extra={"entry": name})
            continue
        links[name] = s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": settings.bucket_name, "Key": key},
            ExpiresIn=settings.download_url_expires_s,
        )
    return links
