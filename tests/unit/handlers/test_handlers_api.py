"""The HTTP API through its handler, driven by the files in events/ (payload 2.0, JWT authorizer)."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs, urlparse

import pytest
from handler_helpers import (
    JOB_ID,
    OTHER_OWNER,
    OWNER,
    World,
    api_event,
    call_api,
    error_code,
    load_event,
)

from jobstate.ids import is_job_id, new_job_id
from jobstate.layout import output_key


def _queued(world: World, job_id: str = JOB_ID, owner: str = OWNER) -> None:
    world.deps.jobs.create(owner, job_id=job_id, status="QUEUED")


def _succeeded(world: World, job_id: str = JOB_ID) -> dict[str, str]:
    _queued(world, job_id)
    world.deps.jobs.begin_stage(job_id, "export")
    result = {name: output_key(job_id, name) for name in ("model.glb", "report.json")}
    for key in result.values():
        world.put(key)
    world.deps.jobs.succeed(job_id, result)
    return result


def test_create_job_event_answers_201_with_a_presigned_post_for_the_capture(world: World) -> None:
    status, body = call_api(load_event("api_create_job.json"))

    assert status == 201
    job_id = body["job_id"]
    assert is_job_id(job_id)
    assert body["status"] == "CREATED"
    upload = body["upload"]
    assert upload["fields"]["key"] == f"jobs/{job_id}/input/capture.zip"
    assert upload["expires_in"] == world.deps.settings.upload_url_expires_s
    assert upload["fields"]["x-amz-algorithm"] == "AWS4-HMAC-SHA256"  # SigV4, accepted in every region
    policy = json.loads(base64.b64decode(upload["fields"]["policy"]))
    assert ["content-length-range", 1, world.deps.settings.max_upload_bytes] in policy["conditions"]
    job = world.job(job_id)
    assert (job.owner, job.preset, job.name, job.status) == (OWNER, "draft", "spot the cow", "CREATED")


def test_a_video_job_gets_an_upload_signed_for_its_video_key(world: World) -> None:
    status, body = call_api(load_event("api_create_job_video.json"))

    assert status == 201
    assert body["upload"]["fields"]["key"] == f"jobs/{body['job_id']}/input/capture.mp4"


@pytest.mark.parametrize("capture", ["avi", "ZIP", "", 3, ["zip"]])
def test_create_job_refuses_a_capture_format_it_does_not_take(world: World, capture: object) -> None:
    status, body = call_api(api_event("api_create_job.json", body={"capture": capture}))

    assert status == 400
    assert error_code(body) == "invalid_request"
    assert "capture must be one of zip, mp4, mov" in body["error"]["message"]


def test_create_job_without_a_body_uses_the_standard_preset(world: World) -> None:
    status, body = call_api(api_event("api_create_job.json", body=None))

    assert status == 201
    assert world.job(body["job_id"]).preset == "standard"


def test_get_job_event_answers_the_public_view_of_the_callers_job(world: World) -> None:
    _queued(world)

    status, body = call_api(load_event("api_get_job.json"))

    assert status == 200
    assert body["job_id"] == JOB_ID
    assert body["status"] == "QUEUED"
    assert "owner" not in body
    assert "execution_arn" not in body
    assert "downloads" not in body


def test_succeeded_job_has_presigned_links_to_its_outputs_only(world: World) -> None:
    result = _succeeded(world)
    # A result entry pointing outside the job's output area is never signed.
    world.deps.jobs._db.update_item(
        TableName=world.deps.settings.table_name,
        Key={"pk": {"S": JOB_ID}, "sk": {"S": "job"}},
        UpdateExpression="SET #r.#n = :k",
        ExpressionAttributeNames={"#r": "result", "#n": "stolen"},
        ExpressionAttributeValues={":k": {"S": f"jobs/{new_job_id()}/output/model.glb"}},
    )

    status, body = call_api(load_event("api_get_job.json"))

    assert status == 200
    assert body["status"] == "SUCCEEDED"
    assert body["progress"] == 100
    assert set(body["downloads"]) == set(result)
    for name, url in body["downloads"].items():
        parsed = urlparse(url)
        assert parsed.path.endswith(result[name])
        query = parse_qs(parsed.query)
        assert "X-Amz-Signature" in query
        assert query["X-Amz-Expires"] == [str(world.deps.settings.download_url_expires_s)]
    assert body["downloads_expire_in"] == world.deps.settings.download_url_expires_s


def test_list_jobs_pages_newest_first_through_next_cursor(world: World) -> None:
    made = []
    for _ in range(5):
        made.append(world.deps.jobs.create(OWNER).job_id)
        world.clock.advance(1)
    world.deps.jobs.create(OTHER_OWNER)

    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        status, body = call_api(api_event("api_list_jobs.json", query=query))
        assert status == 200
        assert len(body["jobs"]) <= 2
        seen += [job["job_id"] for job in body["jobs"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert seen == list(reversed(made))
    assert pages == 3


def test_list_jobs_event_uses_its_limit(world: World) -> None:
    for _ in range(3):
        world.deps.jobs.create(OWNER)

    status, body = call_api(load_event("api_list_jobs.json"))

    assert status == 200
    assert len(body["jobs"]) == 3
    assert body["next_cursor"] is None


@pytest.mark.parametrize(
    "query", [{"limit": "0"}, {"limit": "101"}, {"limit": "ten"}, {"limit": "-1"}, {"limit": "1,2"}]
)
def test_list_jobs_refuses_a_bad_limit(world: World, query: dict[str, str]) -> None:
    status, body = call_api(api_event("api_list_jobs.json", query=query))

    assert status == 400
    assert error_code(body) == "invalid_request"


def test_list_jobs_refuses_a_forged_or_foreign_cursor(world: World) -> None:
    for _ in range(3):
        world.deps.jobs.create(OTHER_OWNER)
    _, foreign = call_api(api_event("api_list_jobs.json", sub=OTHER_OWNER, query={"limit": "1"}))

    for cursor in ("not-a-cursor", foreign["next_cursor"]):
        status, body = call_api(api_event("api_list_jobs.json", query={"cursor": cursor}))
        assert status == 400
        assert error_code(body) == "invalid_request"


def test_request_then_confirm_through_the_api_makes_the_job_cancelling(world: World) -> None:
    _queued(world)

    status, request = call_api(load_event("api_request_cancel.json"))
    assert status == 202
    assert request["status"] == "cancel_requested"
    assert request["token"]
    assert request["expires_at"].endswith("Z")

    confirm = api_event("api_confirm_cancel.json", body={"token": request["token"]})
    status, body = call_api(confirm)

    assert status == 202
    assert body == {"job_id": JOB_ID, "status": "CANCELLING"}
    assert world.job().status == "CANCELLING"
    # Confirming again is harmless.
    assert call_api(confirm) == (202, {"job_id": JOB_ID, "status": "CANCELLING"})


def test_confirm_with_another_token_is_refused(world: World) -> None:
    _queued(world)
    call_api(load_event("api_request_cancel.json"))

    status, body = call_api(load_event("api_confirm_cancel.json"))  # the file's token is not the issued one

    assert status == 409
    assert error_code(body) == "cancel_conflict"
    assert world.job().status == "QUEUED"


def test_confirm_after_expiry_is_refused_though_the_request_item_is_still_there(world: World) -> None:
    _queued(world)
    _, request = call_api(load_event("api_request_cancel.json"))
    world.clock.advance(world.deps.settings.cancel_confirm_window_s + 1)

    status, body = call_api(api_event("api_confirm_cancel.json", body={"token": request["token"]}))

    assert status == 409
    assert error_code(body) == "cancel_conflict"
    assert "cancel#request" in {item["sk"]["S"] for item in world.job_items()}  # TTL has not swept it
    assert world.job().status == "QUEUED"


def test_confirm_without_a_request_is_refused(world: World) -> None:
    _queued(world)

    status, body = call_api(load_event("api_confirm_cancel.json"))

    assert status == 409
    assert error_code(body) == "cancel_conflict"


@pytest.mark.parametrize("route", ["api_request_cancel.json", "api_confirm_cancel.json"])
def test_cancel_of_a_finished_job_is_a_conflict(world: World, route: str) -> None:
    _succeeded(world)

    status, body = call_api(load_event(route))

    assert status == 409
    assert error_code(body) == "state_conflict"
    assert world.job().status == "SUCCEEDED"


@pytest.mark.parametrize("route", ["api_get_job.json", "api_request_cancel.json", "api_confirm_cancel.json"])
def test_another_callers_job_is_not_found_on_every_route(world: World, route: str) -> None:
    _queued(world, owner=OTHER_OWNER)
    _, request = call_api(api_event("api_request_cancel.json", sub=OTHER_OWNER))

    event = api_event(route, body={"token": request["token"]}) if "confirm" in route else load_event(route)
    status, body = call_api(event)

    assert status == 404
    assert error_code(body) == "job_not_found"
    assert world.job().status == "QUEUED"
    _, listed = call_api(load_event("api_list_jobs.json"))
    assert listed["jobs"] == []


@pytest.mark.parametrize("route", ["api_get_job.json", "api_request_cancel.json", "api_confirm_cancel.json"])
def test_an_unknown_job_is_not_found(world: World, route: str) -> None:
    status, body = call_api(api_event(route, job_id=new_job_id()))

    assert status == 404
    assert error_code(body) == "job_not_found"


@pytest.mark.parametrize(
    "job_id",
    [
        "not-a-job",
        JOB_ID.upper(),
        "0b6f4c2e-5d1a-1f8e-9b3c-7a2d1e6f8c90",  # version 1
        JOB_ID + "0",
        "..",
        "%2e%2e",
    ],
)
@pytest.mark.parametrize("route", ["api_get_job.json", "api_request_cancel.json", "api_confirm_cancel.json"])
def test_a_malformed_job_id_is_a_bad_request(world: World, route: str, job_id: str) -> None:
    status, body = call_api(api_event(route, job_id=job_id))

    assert status == 400
    assert error_code(body) == "invalid_job_id"


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        "[1, 2]",
        '"draft"',
        json.dumps({"preset": "ultra"}),
        json.dumps({"preset": 3}),
        json.dumps({"presets": "draft"}),
        json.dumps({"name": "x" * 201}),
        json.dumps({"name": "bell\u0007"}),
        json.dumps({"name": ""}),
        "[" * 5000,
        "1" * 5000,
    ],
)
def test_a_malformed_create_body_is_a_bad_request(world: World, body: str) -> None:
    status, answer = call_api(api_event("api_create_job.json", body=body))

    assert status == 400
    assert error_code(answer) == "invalid_request"


@pytest.mark.parametrize(
    "body", [None, "{}", json.dumps({"token": 7}), json.dumps({"token": ""}), "{", "null"]
)
def test_a_malformed_confirm_body_is_a_bad_request(world: World, body: str | None) -> None:
    _queued(world)

    status, answer = call_api(api_event("api_confirm_cancel.json", body=body))

    assert status == 400
    assert error_code(answer) == "invalid_request"


def test_a_base64_body_is_decoded_and_bad_base64_refused(world: World) -> None:
    event = api_event("api_create_job.json", body=base64.b64encode(b'{"preset": "high"}').decode())
    event["isBase64Encoded"] = True
    status, body = call_api(event)
    assert status == 201
    assert world.job(body["job_id"]).preset == "high"

    event["body"] = "%%% not base64"
    status, body = call_api(event)
    assert status == 400
    assert error_code(body) == "invalid_request"


@pytest.mark.parametrize("name", [*__import__("handler_helpers").API_EVENTS])
def test_every_route_without_an_identity_is_unauthenticated(world: World, name: str) -> None:
    _queued(world)
    event = load_event(name)
    del event["requestContext"]["authorizer"]

    status, body = call_api(event)

    assert status == 401
    assert error_code(body) == "unauthenticated"


def test_an_unknown_route_is_a_json_404(world: World) -> None:
    event = load_event("api_get_job.json")
    event["rawPath"] = "/nowhere"
    event["requestContext"]["http"]["method"] = "DELETE"

    status, body = call_api(event)

    assert status == 404
    assert error_code(body) == "route_not_found"
