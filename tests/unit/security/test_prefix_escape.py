"""Claim: a job id or key that tries to leave ``jobs/{job_id}/`` is refused before it is used to
build a key or a path: in the API, in S3 events, in the layout and in the purge."""

from __future__ import annotations

from typing import Any

import pytest
from fuzz_world import FuzzWorld
from handler_helpers import api_event, call_api, load_event

from handlers import upload
from jobstate.errors import InvalidJobId, InvalidRequest
from jobstate.ids import new_job_id
from jobstate.layout import input_key, output_key, parse_key, work_key
from jobstate.purge import purge_job

JOB = new_job_id()
OTHER = new_job_id()
ESCAPING_IDS = (
    "..",
    "../" + JOB,
    JOB + "/../" + OTHER,
    JOB + "/",
    JOB.upper(),
    JOB + "\n",
    "%2e%2e%2f" + JOB,
    "*",
    "",
)
ESCAPING_KEYS = (
    f"jobs/{JOB}/input/../../{OTHER}/input/capture.zip",
    f"jobs/{JOB}/input/./capture.zip",
    f"jobs/{JOB}/input//capture.zip",
    f"jobs/{JOB}/input/..\\..\\capture.zip",
    f"jobs/../jobs/{JOB}/input/capture.zip",
    f"jobs/{JOB}/../{OTHER}/input/capture.zip",
    f"/jobs/{JOB}/input/capture.zip",
    f"jobs/{JOB}x/input/capture.zip",
    f"jobs/{JOB}/input/capture.zip\x00.png",
)


class RecordingS3:
    """An S3 client that records every call (and must receive none)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        self.calls.append(name)
        raise AssertionError(f"S3 was called: {name}")


@pytest.mark.parametrize("job_id", ESCAPING_IDS)
def test_the_purge_refuses_a_bad_id_before_any_s3_call(job_id: str) -> None:
    s3 = RecordingS3()
    with pytest.raises(InvalidJobId):
        purge_job(s3, "bucket", job_id)
    assert s3.calls == []


@pytest.mark.parametrize("key", ESCAPING_KEYS)
def test_a_key_that_leaves_its_job_or_area_does_not_parse(key: str) -> None:
    with pytest.raises((InvalidJobId, InvalidRequest)):
        parse_key(key)


@pytest.mark.parametrize(
    "name", ["../capture.zip", "a/../../b", "/etc/passwd", "..\\x", ".", "", "a//b", "x\x00"]
)
def test_the_layout_builds_no_key_from_an_escaping_name(name: str) -> None:
    for build in (
        lambda: input_key(JOB, name),
        lambda: output_key(JOB, name),
        lambda: work_key(JOB, "hull", name),
    ):
        with pytest.raises(InvalidRequest):
            build()


@pytest.mark.parametrize("job_id", [i for i in ESCAPING_IDS if i and "/" not in i and "\n" not in i])
def test_the_api_refuses_a_malformed_job_id_with_400(fuzz_world: FuzzWorld, job_id: str) -> None:
    status, body = call_api(api_event("api_get_job.json", job_id=job_id))
    assert status == 400
    assert body["error"]["code"] == "invalid_job_id"


@pytest.mark.parametrize(
    "path", [f"/jobs/../jobs/{JOB}", f"/jobs/{JOB}/../{OTHER}", f"/jobs/{JOB}/%2e%2e/{OTHER}"]
)
def test_a_path_with_dot_segments_reaches_no_job(fuzz_world: FuzzWorld, path: str) -> None:
    fuzz_world.deps.jobs.create("7d3e9f21-4c6b-4a8d-b2e5-0f1a9c8d7e6b", job_id=OTHER, status="QUEUED")
    event = load_event("api_get_job.json")
    event.pop("pathParameters")
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    status, body = call_api(event)
    assert status in (400, 404)
    assert OTHER not in str(body)


@pytest.mark.parametrize("key", ESCAPING_KEYS)
def test_an_upload_event_for_an_escaping_key_creates_and_starts_nothing(
    fuzz_world: FuzzWorld, key: str
) -> None:
    event = load_event("upload_eventbridge_object_created.json")
    event["detail"]["bucket"]["name"] = fuzz_world.deps.settings.bucket_name
    event["detail"]["object"]["key"] = key

    handled = upload.process_event(event, fuzz_world.deps)

    assert [h.outcome for h in handled] == [upload.IGNORED]
    assert fuzz_world.raw_items() == []
    assert fuzz_world.executions() == {}
