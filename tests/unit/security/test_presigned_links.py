"""Claim: the presigned upload form writes exactly ``jobs/{job_id}/input/capture.zip`` of the data
bucket, bounded in size, and expires; download links are GETs of the job's own output keys only,
and expire. Checked by decoding the POST policy and parsing the GET URLs."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from urllib.parse import parse_qs, unquote, urlsplit

from fuzz_world import FuzzWorld
from handler_helpers import api_event, call_api
from seeded_jobs import OWNER_A

from jobstate.ids import new_job_id
from jobstate.layout import input_key, output_key

CLOCK_SLACK_S = 30  # between the API's clock and this test's


def _policy(fields: dict[str, str]) -> dict:
    return json.loads(base64.b64decode(fields["policy"]))


def test_the_upload_form_is_for_the_jobs_own_capture_key_only_and_expires(fuzz_world: FuzzWorld) -> None:
    settings = fuzz_world.deps.settings
    status, body = call_api(api_event("api_create_job.json", sub=OWNER_A, body={}))
    assert status == 201
    job_id, form = body["job_id"], body["upload"]

    policy = _policy(form["fields"])
    conditions = policy["conditions"]
    assert {"bucket": settings.bucket_name} in conditions
    assert {"key": input_key(job_id, "capture.zip")} in conditions  # exact: no starts-with, no ${filename}
    assert not [c for c in conditions if isinstance(c, list) and c[0] == "starts-with"]
    assert ["content-length-range", 1, settings.max_upload_bytes] in conditions
    assert form["fields"]["key"] == input_key(job_id, "capture.zip")
    assert form["fields"]["x-amz-algorithm"] == "AWS4-HMAC-SHA256"

    expires = datetime.strptime(policy["expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    left = (expires - datetime.now(UTC)).total_seconds()
    assert settings.upload_url_expires_s - CLOCK_SLACK_S <= left <= settings.upload_url_expires_s + 1
    assert form["expires_in"] == settings.upload_url_expires_s


def test_download_links_are_gets_of_the_jobs_own_outputs_and_expire(fuzz_world: FuzzWorld) -> None:
    settings, store = fuzz_world.deps.settings, fuzz_world.deps.jobs
    other = new_job_id()
    job = store.create(OWNER_A, status="QUEUED")
    store.begin_stage(job.job_id, "export")
    store.succeed(
        job.job_id,
        {
            "model.glb": output_key(job.job_id, "model.glb"),
            "report.json": output_key(job.job_id, "report.json"),
            "stolen.glb": output_key(other, "model.glb"),  # another job's output
            "capture.zip": input_key(job.job_id, "capture.zip"),  # not an output
            "escape.glb": f"jobs/{job.job_id}/output/../../{other}/output/model.glb",
        },
    )

    status, body = call_api(api_event("api_get_job.json", job_id=job.job_id, sub=OWNER_A))

    assert status == 200
    links = body["downloads"]
    assert sorted(links) == ["model.glb", "report.json"]
    for name, url in links.items():
        parts = urlsplit(url)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        path = unquote(parts.path)
        assert path in (
            f"/{settings.bucket_name}/{output_key(job.job_id, name)}",  # path style
            f"/{output_key(job.job_id, name)}",  # virtual-hosted style
        )
        if path.startswith("/jobs/"):
            assert parts.hostname.startswith(f"{settings.bucket_name}.")
        assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
        assert query["X-Amz-SignedHeaders"] == "host"
        assert int(query["X-Amz-Expires"]) == settings.download_url_expires_s
        signed_at = datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        assert abs((datetime.now(UTC) - signed_at).total_seconds()) < CLOCK_SLACK_S
    assert body["downloads_expire_in"] == settings.download_url_expires_s


def test_an_unfinished_job_gets_no_download_links(fuzz_world: FuzzWorld) -> None:
    job = fuzz_world.deps.jobs.create(OWNER_A, status="QUEUED")
    status, body = call_api(api_event("api_get_job.json", job_id=job.job_id, sub=OWNER_A))
    assert status == 200
    assert "downloads" not in body
