"""Purging a job: delete everything under ``jobs/{job_id}/`` and nothing else.

Every object version and delete marker (``ListObjectVersions`` also lists the objects of an
unversioned bucket, with version id ``null``) goes in ``DeleteObjects`` batches of up to 1,000
keys, and every incomplete multipart upload under the prefix is aborted. The prefix ends with
"/" and every listed key is checked against it again, so ``jobs/{job_id}x/`` or a neighbour is
never touched. A second purge finds nothing and deletes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from jobstate.errors import JobStateError
from jobstate.layout import job_prefix

DELETE_BATCH_MAX = 1000  # S3's limit on keys per DeleteObjects request
LIST_PAGE_MAX = 1000  # S3's limit on keys per listing page
# Passes over the prefix: a pass that deletes nothing ends the purge. A second pass catches an
# upload that completed while the first one ran; the bound keeps a misbehaving writer from
# keeping the purge busy for ever.
MAX_PASSES = 3


class PurgeError(JobStateError):
    """S3 refused to delete some keys of the prefix."""

    code = "purge_failed"


@dataclass
class PurgeReport:
    """How much one purge deleted, and how many S3 requests it took."""

    objects: int = 0  # distinct keys that had a version or delete marker
    versions: int = 0  # object versions deleted (the objects themselves when unversioned)
    delete_markers: int = 0
    multipart_uploads: int = 0  # incomplete uploads aborted
    requests: int = 0  # S3 requests the purge made, listings included

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @property
    def deleted(self) -> int:
        """Everything removed: versions, delete markers and aborted uploads."""
        return self.versions + self.delete_markers + self.multipart_uploads


def purge_job(s3_client: Any, bucket: str, job_id: str) -> PurgeReport:
    """Delete every version, delete marker and incomplete upload under ``jobs/{job_id}/``."""
    prefix = job_prefix(job_id)  # validates the id; ends with "/"
    report = PurgeReport()
    for _ in range(MAX_PASSES):
        before = report.deleted
        _abort_uploads(s3_client, bucket, prefix, report)
        _delete_versions(s3_client, bucket, prefix, report)
        if report.deleted == before:
            break
    return report


def _abort_uploads(s3_client: Any, bucket: str, prefix: str, report: PurgeReport) -> None:
    for page in _pages(s3_client, "list_multipart_uploads", report, Bucket=bucket, Prefix=prefix):
        for upload in page.get("Uploads", []):
            if not upload["Key"].startswith(prefix):
                continue
            report.requests += 1
            s3_client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            report.multipart_uploads += 1


def _delete_versions(s3_client: Any, bucket: str, prefix: str, report: PurgeReport) -> None:
    """Delete the listed versions and markers, one page behind the listing.

    A page's entries are deleted only after the next page has been fetched, so the key and
    version-id markers of every listing request still name entries that exist.
    """
    deleter = _BatchDeleter(s3_client, bucket, prefix, report)
    behind: dict[str, Any] | None = None
    for page in _pages(
        s3_client, "list_object_versions", report, Bucket=bucket, Prefix=prefix, MaxKeys=LIST_PAGE_MAX
    ):
        if behind is not None:
            deleter.add_page(behind)
        behind = page
    if behind is not None:
        deleter.add_page(behind)
    deleter.flush()
    report.objects += len(deleter.keys)


class _BatchDeleter:
    """Collects (key, version) pairs and deletes them in DeleteObjects batches of DELETE_BATCH_MAX."""

    def __init__(self, s3_client: Any, bucket: str, prefix: str, report: PurgeReport) -> None:
        self.s3_client, self.bucket, self.prefix, self.report = s3_client, bucket, prefix, report
        self.batch: list[dict[str, str]] = []
        self.markers_in_batch = 0
        self.keys: set[str] = set()

    def add_page(self, page: dict[str, Any]) -> None:
        for kind, is_marker in (("Versions", False), ("DeleteMarkers", True)):
            for entry in page.get(kind, []):
                key = entry["Key"]
                if not key.startswith(self.prefix):  # S3 filtered by prefix already; never trust it blindly
                    continue
                self.batch.append({"Key": key, "VersionId": entry.get("VersionId") or "null"})
                self.markers_in_batch += is_marker
                self.keys.add(key)
                if len(self.batch) == DELETE_BATCH_MAX:
                    self.flush()

    def flush(self) -> None:
        if not self.batch:
            return
        batch, markers = self.batch, self.markers_in_batch
        self.batch, self.markers_in_batch = [], 0
        self.report.requests += 1
        answer = self.s3_client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        errors = answer.get("Errors", [])
        if errors:
            first = errors[0]
            raise PurgeError(
                f"S3 refused to delete {len(errors)} of {len(batch)} keys "
                f"(first: {first.get('Key')}: {first.get('Code')} {first.get('Message')})"
            )
        self.report.delete_markers += markers
        self.report.versions += len(batch) - markers


def _pages(s3_client: Any, operation: str, report: PurgeReport, **params: Any) -> Iterator[dict[str, Any]]:
    """The pages of a listing, each one counted as a request."""
    for page in s3_client.get_paginator(operation).paginate(**params):
        report.requests += 1
        yield page
