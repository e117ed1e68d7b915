"""Property: whatever arrives as an S3 "object created" notification (EventBridge, classic
``Records[].s3``, either inside SQS bodies, or junk), the parser never raises, the upload handler
acts only on keys ``jobs/{valid id}/input/<name>`` of the data bucket, and no job is left stuck:
every job it created or queued is QUEUED with an execution or FAILED."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, quote_plus

import hypothesis
from fuzz_world import FUZZ_SETTINGS, FuzzWorld
from handler_helpers import BUCKET, CONTEXT, load_event
from hypothesis import given
from hypothesis import strategies as st
from seeded_jobs import OWNER_A

from handlers import upload
from handlers.notifications import Upload, uploads_in
from jobstate.ids import is_job_id, new_job_id
from jobstate.jobs import CREATED, FAILED, QUEUED
from jobstate.layout import INPUT, parse_key
from jobstate.settings import Settings

# A small pool of ids, so deliveries repeat and race on the same jobs.
FRESH_IDS = tuple(new_job_id() for _ in range(16))
API_MADE = tuple(new_job_id() for _ in range(3))  # made through the API (CREATED), seeded per test
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=15,
)
JOB_ID = st.one_of(
    st.sampled_from(FRESH_IDS + API_MADE),
    st.sampled_from([FRESH_IDS[0].upper(), FRESH_IDS[0] + "\n", "..", ".", "", "%2e%2e", FRESH_IDS[0][:-1]]),
    st.text(max_size=40),
)
AREA = st.sampled_from([INPUT, INPUT, INPUT, "work", "output", "Input", "inputs", "", ".."])
NAME = st.one_of(
    st.sampled_from(["capture.zip", "capture.zip", "red flower.zip", "a/b.zip", "../x.zip", "..", ".", ""]),
    st.text(max_size=30),
)
CAPTURE_KEY = st.builds(  # a well-formed upload: most events carry one
    lambda i, n: f"jobs/{i}/input/{n}",
    st.sampled_from(FRESH_IDS + API_MADE),
    st.sampled_from(["capture.zip", "red flower.zip", "scan+2 (copy).zip"]),
)
RAW_KEY = st.one_of(
    CAPTURE_KEY,
    CAPTURE_KEY,
    CAPTURE_KEY,
    st.builds(lambda i, a, n: f"jobs/{i}/{a}/{n}", JOB_ID, AREA, NAME),
    st.builds(lambda i: f"jobs/../jobs/{i}/input/capture.zip", JOB_ID),
    st.builds(lambda i: f"/jobs/{i}/input/capture.zip", JOB_ID),
    st.text(max_size=60),
)
ENCODE = st.sampled_from([quote_plus, lambda key: quote(key, safe="/"), lambda key: key])
UPLOAD_LIMIT = Settings().max_upload_bytes
SIZE = st.one_of(
    st.integers(0, 10**7),
    st.integers(UPLOAD_LIMIT - 2, UPLOAD_LIMIT + 2),
    st.integers(-1, 3 * UPLOAD_LIMIT),
    st.none(),
    st.text(max_size=10),
    JSON_VALUE,
)
EVENT_NAME = st.sampled_from(
    [
        "ObjectCreated:Put",
        "ObjectCreated:Post",
        "ObjectCreated:CompleteMultipartUpload",
        "ObjectRemoved:Delete",
        "",
    ]
)


@st.composite
def s3_record(draw: st.DrawFn) -> dict[str, Any]:
    record = load_event("upload_s3_put.json")["Records"][0]
    record["eventName"] = draw(EVENT_NAME)
    record["s3"]["bucket"]["name"] = draw(st.sampled_from([BUCKET, BUCKET, BUCKET, "other-bucket"]))
    record["s3"]["object"]["key"] = draw(ENCODE)(draw(RAW_KEY))
    record["s3"]["object"]["size"] = draw(SIZE)
    if draw(st.integers(0, 5)) == 0:  # a field of the record replaced by junk
        field = draw(st.sampled_from(["s3", "eventName", "userIdentity", "responseElements"]))
        record[field] = draw(JSON_VALUE)
    return record


@st.composite
def eventbridge_event(draw: st.DrawFn) -> dict[str, Any]:
    event = load_event("upload_eventbridge_object_created.json")
    event["detail"]["bucket"]["name"] = draw(st.sampled_from([BUCKET, BUCKET, BUCKET, "other-bucket"]))
    event["detail"]["object"]["key"] = draw(ENCODE)(draw(RAW_KEY))
    event["detail"]["object"]["size"] = draw(SIZE)
    if draw(st.integers(0, 5)) == 0:
        event["detail"] = draw(JSON_VALUE)
    return event


NOTIFICATION = st.one_of(
    eventbridge_event(),
    st.lists(s3_record(), min_size=1, max_size=3).map(lambda records: {"Records": records}),
)
SQS_WRAPPED = st.lists(
    st.one_of(NOTIFICATION.map(json.dumps), st.text(max_size=40), JSON_VALUE.map(json.dumps)),
    min_size=1,
    max_size=3,
).map(lambda bodies: {"Records": [{"messageId": str(i), "body": body} for i, body in enumerate(bodies)]})
EVENT = st.one_of(NOTIFICATION, NOTIFICATION, SQS_WRAPPED, JSON_VALUE, st.lists(NOTIFICATION, max_size=2))


@FUZZ_SETTINGS
@given(event=EVENT)
def test_the_parser_never_raises_and_returns_decoded_uploads(event: Any) -> None:
    found = list(uploads_in(event))
    for item in found:
        assert isinstance(item, Upload)
        assert isinstance(item.bucket, str)
        assert isinstance(item.key, str)
        assert isinstance(item.uploader, str)
        assert item.size is None or isinstance(item.size, int)


def _seed_api_jobs(world: FuzzWorld) -> None:
    if world.seeded is None:
        from seeded_jobs import SeededJobs

        world.seeded = SeededJobs()
        for job_id in API_MADE:
            world.deps.jobs.create(OWNER_A, job_id=job_id)
            world.seeded.owner_of[job_id] = OWNER_A


def _assert_nothing_stuck(world: FuzzWorld, touched: set[str]) -> None:
    """Every job is CREATED (made by the API, awaiting its upload), QUEUED with an execution, or
    FAILED; the executions of the jobs this example touched were started for their own input."""
    executions = world.executions()
    for item in world.raw_items():
        job_id = item["pk"]["S"]
        assert is_job_id(job_id), item  # no junk id ever became a table item
        if item["sk"]["S"] != "job":
            continue
        status = item["status"]["S"]
        if status == CREATED:
            assert job_id in API_MADE, item
            continue
        assert status in (QUEUED, FAILED), item
        if status == QUEUED:
            assert item["execution_arn"]["S"] in executions, item  # queued means an execution exists
    for job_id in touched:
        job = world.deps.jobs.get(job_id, consistent=True)
        if job.execution_arn:
            started = json.loads(world.deps.sfn.describe_execution(executionArn=job.execution_arn)["input"])
            assert started["job_id"] == job_id
            prefix = f"jobs/{job_id}/input/"
            assert started["input_key"].startswith(prefix)
            assert "/" not in started["input_key"][len(prefix) :]
    assert world.object_keys() == []  # the handler never writes to the bucket


@FUZZ_SETTINGS
@given(event=EVENT)
def test_the_upload_handler_acts_only_on_input_keys_and_leaves_nothing_stuck(
    fuzz_world: FuzzWorld, event: Any
) -> None:
    _seed_api_jobs(fuzz_world)

    answer = upload.handler(event, CONTEXT)  # raises UploadRetryError only for AWS errors or bugs

    touched = {handled["job_id"] for handled in answer["uploads"] if handled["job_id"]}
    for handled in answer["uploads"]:
        hypothesis.event(handled["outcome"])
        if handled["outcome"] in (upload.STARTED, upload.DUPLICATE) or handled["job_id"]:
            key = parse_key(handled["key"])  # raises for anything outside the layout
            assert key.job_id == handled["job_id"]
            if handled["outcome"] != upload.IGNORED:
                assert key.area == INPUT
                assert "/" not in key.rest
    _assert_nothing_stuck(fuzz_world, touched)


def test_a_late_oversize_upload_does_not_fail_a_job_whose_execution_started(fuzz_world: FuzzWorld) -> None:
    """Found reading the handler against the fuzz invariants; FAILS until the fix below is applied.

    Between StartExecution and the first stage's begin_stage the job is QUEUED with an execution.
    A second object landing in its input/ then (possible only with direct bucket access: the
    presigned form caps the size) is checked for size before the "execution recorded already"
    check, so the job is FAILED while its execution runs on. Fix in handlers/upload.py
    ``handle_upload``: move ``if job.execution_arn: return Handled(..., DUPLICATE, ...)`` above the
    ``limit = d.settings.max_upload_bytes`` size check.
    """
    job = fuzz_world.deps.jobs.create(OWNER_A)
    first = load_event("upload_eventbridge_object_created.json")
    first["detail"]["object"].update(key=f"jobs/{job.job_id}/input/capture.zip", size=1000)
    late = load_event("upload_eventbridge_object_created.json")
    late["detail"]["object"].update(key=f"jobs/{job.job_id}/input/extra.zip", size=UPLOAD_LIMIT + 1)

    assert [h.outcome for h in upload.process_event(first, fuzz_world.deps)] == [upload.STARTED]
    late_outcome = [h.outcome for h in upload.process_event(late, fuzz_world.deps)]

    assert fuzz_world.deps.jobs.get(job.job_id, consistent=True).status == QUEUED
    assert late_outcome == [upload.DUPLICATE]
