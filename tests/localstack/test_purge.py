"""The purge on LocalStack's S3: a versioned bucket, several versions and delete markers per key,
incomplete multipart uploads, more than one DeleteObjects batch, and neighbours that must stay."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from localstack_world import LocalStackWorld

from jobstate.ids import new_job_id
from jobstate.layout import input_key, job_prefix, output_key, work_key
from jobstate.purge import DELETE_BATCH_MAX, purge_job

KEYS = 600  # x2 versions + markers: more than one DeleteObjects batch and one listing page
DELETED_KEYS = 40  # of them, deleted once more: a delete marker on top of the versions
UPLOADS = 3  # incomplete multipart uploads under the prefix
WRITERS = 8


def _keys(job_id: str) -> list[str]:
    keys = [input_key(job_id, "capture.zip"), output_key(job_id, "model.glb")]
    keys += [work_key(job_id, "hull", f"chunks/{index:04d}.npz") for index in range(KEYS - len(keys))]
    return keys


def _listed(s3, bucket: str, prefix: str) -> tuple[list[str], list[str]]:
    versions, uploads = [], []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        versions += [v["Key"] for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix):
        uploads += [u["Key"] for u in page.get("Uploads", [])]
    return versions, uploads


def test_purge_removes_every_version_marker_and_upload_and_nothing_else(localstack: LocalStackWorld) -> None:
    s3, bucket = localstack.client("s3"), localstack.bucket
    job_id, other_id = new_job_id(), new_job_id()
    keys = _keys(job_id)
    neighbours = [
        input_key(other_id, "capture.zip"),
        f"jobs/{job_id}x/input/capture.zip",  # shares the prefix without the slash
        f"jobs/{job_id}",  # the prefix without its slash, as an object
        "jobs/readme.txt",
    ]

    def write(key: str) -> None:
        s3.put_object(Bucket=bucket, Key=key, Body=b"first")
        s3.put_object(Bucket=bucket, Key=key, Body=b"second")

    with ThreadPoolExecutor(WRITERS) as pool:
        list(pool.map(write, keys))
        list(pool.map(lambda key: s3.delete_object(Bucket=bucket, Key=key), keys[-DELETED_KEYS:]))
        list(pool.map(lambda key: s3.put_object(Bucket=bucket, Key=key, Body=b"keep"), neighbours))
    for index in range(UPLOADS):
        s3.create_multipart_upload(Bucket=bucket, Key=work_key(job_id, "reconstruct", f"big-{index}.npz"))
    other_upload = s3.create_multipart_upload(Bucket=bucket, Key=input_key(other_id, "large.zip"))

    report = purge_job(s3, bucket, job_id)

    assert (report.objects, report.versions, report.delete_markers, report.multipart_uploads) == (
        KEYS,
        2 * KEYS,
        DELETED_KEYS,
        UPLOADS,
    )
    assert report.versions + report.delete_markers > DELETE_BATCH_MAX  # more than one batch
    assert _listed(s3, bucket, job_prefix(job_id)) == ([], [])
    versions, uploads = _listed(s3, bucket, "jobs/")
    assert sorted(set(versions)) == sorted(neighbours)
    assert uploads == [input_key(other_id, "large.zip")]
    s3.abort_multipart_upload(
        Bucket=bucket, Key=input_key(other_id, "large.zip"), UploadId=other_upload["UploadId"]
    )

    again = purge_job(s3, bucket, job_id)
    assert again.deleted == 0
