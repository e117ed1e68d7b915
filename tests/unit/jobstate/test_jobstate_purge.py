"""Purging jobs/{job_id}/: every version, delete marker and unfinished upload, nothing else."""

from __future__ import annotations

from typing import Any

import pytest
from aws_fixtures import fill_versions, moto_s3_backend, start_unfinished_upload

from jobstate.errors import InvalidJobId
from jobstate.ids import new_job_id
from jobstate.layout import input_key, job_prefix, output_key, work_key
from jobstate.purge import DELETE_BATCH_MAX, PurgeError, purge_job

KEYS = 2_500
KEYS_WITH_SECOND_VERSION = 300
KEYS_DELETED = 100  # their latest version is a delete marker


def all_versions(bucket: str, prefix: str = "") -> list[tuple[str, str]]:
    """Every (key, version id) in moto's store, delete markers included, without paging."""
    entries = moto_s3_backend().get_bucket(bucket).keys.iterlists()
    return sorted(
        (key, str(version.version_id))
        for key, versions in entries
        if key.startswith(prefix)
        for version in versions
    )


def uploads(s3: Any, bucket: str) -> list[str]:
    return [upload["Key"] for upload in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def test_purge_of_a_versioned_prefix_deletes_everything_under_it_and_nothing_else(
    s3: Any, versioned_bucket: str
) -> None:
    job_id, neighbour_id = new_job_id(), new_job_id()
    keys = [work_key(job_id, "hull", f"grid/{i:05d}.bin") for i in range(KEYS)]
    fill_versions(
        versioned_bucket, keys, second_versions=KEYS_WITH_SECOND_VERSION, delete_markers=KEYS_DELETED
    )
    s3.put_object(Bucket=versioned_bucket, Key=input_key(job_id, "capture.zip"), Body=b"zip")
    start_unfinished_upload(s3, versioned_bucket, output_key(job_id, "model.glb"))
    # Neighbours: another job, a key that merely starts with the id, and an upload elsewhere.
    kept = [input_key(neighbour_id, "capture.zip"), f"jobs/{job_id}x/input/capture.zip", f"jobs/{job_id}"]
    for key in kept:
        s3.put_object(Bucket=versioned_bucket, Key=key, Body=b"keep")
    s3.create_multipart_upload(Bucket=versioned_bucket, Key=output_key(neighbour_id, "model.glb"))
    before_outside = [
        entry for entry in all_versions(versioned_bucket) if not entry[0].startswith(job_prefix(job_id))
    ]

    report = purge_job(s3, versioned_bucket, job_id)

    assert all_versions(versioned_bucket, job_prefix(job_id)) == []
    assert uploads(s3, versioned_bucket) == [output_key(neighbour_id, "model.glb")]
    assert all_versions(versioned_bucket) == before_outside
    assert report.objects == KEYS + 1
    assert report.versions == KEYS + KEYS_WITH_SECOND_VERSION + 1
    assert report.delete_markers == KEYS_DELETED
    assert report.multipart_uploads == 1
    entries = report.versions + report.delete_markers
    deletes = -(-entries // DELETE_BATCH_MAX)
    lists_per_pass = deletes + 1  # version pages, and one page of uploads
    # First pass: lists, deletes and one abort; second pass finds nothing (two listings).
    assert report.requests == lists_per_pass + deletes + 1 + 2

    again = purge_job(s3, versioned_bucket, job_id)
    assert (again.objects, again.versions, again.delete_markers, again.multipart_uploads) == (0, 0, 0, 0)
    assert again.requests == 2
    assert all_versions(versioned_bucket) == before_outside


def test_purge_of_an_unversioned_bucket_deletes_the_objects(s3: Any, bucket: str) -> None:
    job_id, neighbour_id = new_job_id(), new_job_id()
    keys = [input_key(job_id, "capture.zip")] + [
        output_key(job_id, f"model.{ext}") for ext in ("glb", "obj", "ply")
    ]
    for key in [*keys, input_key(neighbour_id, "capture.zip")]:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")

    report = purge_job(s3, bucket, job_id)

    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    assert [entry["Key"] for entry in listed] == [input_key(neighbour_id, "capture.zip")]
    assert (report.objects, report.versions, report.delete_markers) == (4, 4, 0)
    assert purge_job(s3, bucket, job_id).versions == 0


def test_purge_of_a_bad_job_id_makes_no_request(s3: Any, bucket: str) -> None:
    class NoCalls:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"purge called {name}")

    for job_id in ("", "..", "*", new_job_id().upper()):
        with pytest.raises(InvalidJobId):
            purge_job(NoCalls(), bucket, job_id)


def test_purge_raises_when_s3_refuses_keys(s3: Any, bucket: str) -> None:
    job_id = new_job_id()
    s3.put_object(Bucket=bucket, Key=input_key(job_id, "capture.zip"), Body=b"x")

    class RefusingS3:
        def __getattr__(self, name: str) -> Any:
            return getattr(s3, name)

        def delete_objects(self, **params: Any) -> dict[str, Any]:
            key = params["Delete"]["Objects"][0]["Key"]
            return {"Errors": [{"Key": key, "Code": "AccessDenied", "Message": "Access Denied"}]}

    with pytest.raises(PurgeError, match="AccessDenied"):
        purge_job(RefusingS3(), bucket, job_id)
