"""Property: whoever calls (any identity or none, any headers, path, body, query), the API answers
2xx or 4xx with a JSON body, never shows a job of another owner, and never changes one.

The identity is the JWT authorizer's ``sub`` claim in the request context. Headers that look like
identities (a bearer token with another ``sub``, forwarded-identity headers) are fuzzed too: API
Gateway validated the token before the function runs; the function must read the context only.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

from fuzz_world import FUZZ_SETTINGS, FuzzWorld
from handler_helpers import call_api, load_event
from hypothesis import event, given
from hypothesis import strategies as st
from seeded_jobs import OWNER_A, OWNER_B, seed_jobs

from jobstate.ids import new_job_id

NO_IDENTITY = object()  # the request carries no authorizer at all


def _bearer(sub: str) -> str:
    """An unsigned JWT claiming ``sub``: what a caller could put in a header to pose as someone."""
    part = lambda value: base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")  # noqa: E731
    return f"Bearer {part({'alg': 'none'})}.{part({'sub': sub})}."


IDENTITY = st.one_of(
    st.sampled_from([OWNER_A, OWNER_A, OWNER_B, OWNER_B]),
    st.text(max_size=300),
    st.just(NO_IDENTITY),
)
AUTHORIZER_JUNK = st.one_of(
    st.none(),
    st.just({}),
    st.just({"jwt": {"claims": {"sub": 12345}}}),
    st.just({"jwt": {"claims": {"username": OWNER_B}}}),
    st.just({"jwt": {"claims": None}}),
    st.just({"lambda": {"sub": OWNER_B}}),
    st.just({"iam": {"userId": OWNER_B}}),
    st.just({"jwt": {"claims": {"sub": ""}}}),
    st.just({"jwt": {"claims": {"sub": "x" * 257}}}),
)
SPOOF_HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "authorization": st.one_of(
            st.sampled_from([_bearer(OWNER_A), _bearer(OWNER_B)]), st.text(max_size=60)
        ),
        "x-amzn-oidc-identity": st.sampled_from([OWNER_A, OWNER_B]),
        "x-owner": st.sampled_from([OWNER_A, OWNER_B]),
        "x-forwarded-user": st.sampled_from([OWNER_A, OWNER_B]),
        "content-type": st.sampled_from(
            ["application/json", "text/plain", "", "application/x-www-form-urlencoded"]
        ),
        "cookie": st.text(max_size=40),
    },
)
HEADERS = st.tuples(
    SPOOF_HEADERS,
    st.dictionaries(st.text(min_size=1, max_size=20), st.text(max_size=60), max_size=4),
).map(lambda pair: {**pair[1], **pair[0]})
ROUTE = st.sampled_from(["/jobs", "/jobs/{}", "/jobs/{}/cancel", "/jobs/{}/cancel/confirm", "/jobs/{}/"])
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
BODY = st.one_of(
    st.none(),
    st.text(max_size=80),
    st.fixed_dictionaries(
        {},
        optional={
            "token": st.text(max_size=140) | JSON_VALUE,
            "preset": st.sampled_from(["draft", "standard", "high", "ultra"]) | JSON_VALUE,
            "name": st.text(max_size=210) | JSON_VALUE,
            "owner": st.sampled_from([OWNER_A, OWNER_B]),
        },
    ).map(json.dumps),
)
QUERY = st.one_of(
    st.none(),
    st.dictionaries(
        st.sampled_from(["limit", "cursor", "owner", "sub"]),
        st.one_of(st.integers(-3, 120).map(str), st.text(max_size=60), st.sampled_from([OWNER_A, OWNER_B])),
        max_size=3,
    ),
)


def _event(
    method: str,
    path: str,
    identity: Any,
    authorizer_junk: Any,
    headers: dict[str, str],
    body: str | None,
    query: dict[str, str] | None,
) -> dict[str, Any]:
    event = load_event("api_get_job.json")
    event.pop("pathParameters", None)
    event["rawPath"] = path
    event["requestContext"]["http"].update(method=method, path=path)
    event["headers"] = {**event["headers"], **headers}
    if identity is NO_IDENTITY:
        if authorizer_junk is None:
            del event["requestContext"]["authorizer"]
        else:
            event["requestContext"]["authorizer"] = copy.deepcopy(authorizer_junk)
    else:
        event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = identity
    if body is not None:
        event["body"] = body
    if query:
        event["queryStringParameters"] = query
        event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in query.items())
    return event


def _items_of(world: FuzzWorld, job_ids: set[str]) -> list[dict[str, Any]]:
    """The raw table items (job and cancel flags) of ``job_ids``, in a stable order."""
    items = [item for item in world.raw_items() if item["pk"]["S"] in job_ids]
    return sorted(items, key=lambda item: (item["pk"]["S"], item["sk"]["S"]))


@FUZZ_SETTINGS
@given(data=st.data())
def test_no_request_shows_or_changes_another_owners_job(fuzz_world: FuzzWorld, data: st.DataObject) -> None:
    if fuzz_world.seeded is None:
        fuzz_world.seeded = seed_jobs(fuzz_world.deps.jobs)
    seeded = fuzz_world.seeded
    identity = data.draw(IDENTITY, label="identity")
    caller = None if identity is NO_IDENTITY else identity
    seeded_ids = seeded.seeded_ids  # fixed once seeded: the strategy must not depend on later jobs
    target = data.draw(
        st.one_of(st.sampled_from(seeded_ids), st.builds(new_job_id), st.text(max_size=40)), label="job id"
    )
    path = data.draw(ROUTE, label="route").format(target)
    method = data.draw(st.sampled_from(["GET", "POST", "POST", "DELETE", "PUT"]), label="method")
    request = _event(
        method,
        path,
        identity,
        data.draw(AUTHORIZER_JUNK, label="authorizer"),
        data.draw(HEADERS, label="headers"),
        data.draw(BODY, label="body"),
        data.draw(QUERY, label="query"),
    )
    others = set(seeded.not_of(caller))
    before = _items_of(fuzz_world, others)

    status, answer = call_api(request)

    event(f"status {status}")
    assert 200 <= status < 300 or 400 <= status < 500, (status, answer)
    assert isinstance(answer, dict)
    if status >= 400:
        assert set(answer) == {"error"}, answer
        assert set(answer["error"]) == {"code", "message"}, answer
    shown = json.dumps(answer)
    leaked = sorted(job_id for job_id in others if job_id in shown)
    assert not leaked, (caller, path, leaked)
    assert _items_of(fuzz_world, others) == before, "another owner's job changed"
    if status == 201:
        assert caller is not None
        seeded.owner_of[answer["job_id"]] = caller


# Events that are not an HTTP API 2.0 request, or one with parts missing or of the wrong type:
# a REST API (v1) event, a direct invocation, any JSON value.
REST_V1_EVENT = {
    "resource": "/jobs/{job_id}",
    "path": "/jobs/x",
    "httpMethod": "GET",
    "headers": {"Authorization": _bearer(OWNER_A)},
    "requestContext": {"authorizer": {"claims": {"sub": OWNER_A}}, "httpMethod": "GET"},
    "body": None,
}
EVENT_PARTS = ["version", "routeKey", "rawPath", "requestContext", "headers", "body", "pathParameters"]
CONTEXT_PARTS = ["http", "authorizer", "requestId", "routeKey"]


@st.composite
def damaged_api_events(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["any", "rest_v1", "damaged"]))
    if kind == "any":
        return draw(JSON_VALUE)
    if kind == "rest_v1":
        return copy.deepcopy(REST_V1_EVENT)
    request = load_event(
        draw(st.sampled_from(["api_get_job.json", "api_create_job.json", "api_list_jobs.json"]))
    )
    for name in draw(st.lists(st.sampled_from(EVENT_PARTS), max_size=3, unique=True)):
        if draw(st.booleans()):
            request.pop(name, None)
        else:
            request[name] = draw(JSON_VALUE)
    context = request.get("requestContext")
    if isinstance(context, dict):
        for name in draw(st.lists(st.sampled_from(CONTEXT_PARTS), max_size=2, unique=True)):
            context[name] = draw(JSON_VALUE)
    return request


@FUZZ_SETTINGS
@given(request=damaged_api_events())
def test_no_event_shape_makes_the_api_raise(fuzz_world: FuzzWorld, request: Any) -> None:
    status, answer = call_api(request)

    event(f"status {status}")
    assert 200 <= status < 300 or 400 <= status < 500, (status, answer)
    if status >= 400:
        assert set(answer) == {"error"}, answer
        assert set(answer["error"]) == {"code", "message"}, answer


def test_a_rest_api_event_is_answered_400_in_json(fuzz_world: FuzzWorld) -> None:
    status, answer = call_api(copy.deepcopy(REST_V1_EVENT))

    assert status == 400
    assert answer["error"] == {"code": "invalid_request", "message": "not an HTTP API payload 2.0 request"}
