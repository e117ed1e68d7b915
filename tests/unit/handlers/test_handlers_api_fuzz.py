"""Property: whatever path, method, body or query string arrives, the API answers 2xx or 4xx with a
JSON body ({"error": {"code", "message"}} for every 4xx), never a 5xx or an exception."""

from __future__ import annotations

import base64
import json
from typing import Any

from handler_helpers import JOB_ID, OWNER, World, call_api, load_event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobstate.ids import new_job_id

ID_LIKE = st.one_of(
    st.just(JOB_ID),
    st.just(JOB_ID),
    st.builds(new_job_id),
    st.text(min_size=0, max_size=60),
    st.text(alphabet="0123456789abcdefABCDEF-", min_size=30, max_size=40),
    st.sampled_from(["..", ".", "%2e%2e", "%2F", " ", JOB_ID.upper(), JOB_ID + "\n"]),
)
PATH = st.one_of(
    st.just("/jobs"),
    st.builds(lambda i: f"/jobs/{i}", ID_LIKE),
    st.builds(lambda i: f"/jobs/{i}/cancel", ID_LIKE),
    st.builds(lambda i: f"/jobs/{i}/cancel/confirm", ID_LIKE),
    st.sampled_from(["/jobs", "/jobs/", "/", "", "//jobs", "/jobs//cancel"]),
    st.text(max_size=80),
)
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
BODY_OBJECT = st.fixed_dictionaries(
    {},
    optional={
        "preset": st.one_of(st.sampled_from(["draft", "standard", "high", "", "DRAFT"]), JSON_VALUE),
        "name": st.one_of(st.text(max_size=250), JSON_VALUE),
        "token": st.one_of(st.text(max_size=200), JSON_VALUE),
    },
)
BODY = st.one_of(
    st.none(),
    st.text(max_size=200),
    st.builds(json.dumps, JSON_VALUE),
    st.builds(json.dumps, BODY_OBJECT),
)
QUERY = st.one_of(
    st.none(),
    st.dictionaries(
        st.one_of(st.sampled_from(["limit", "cursor"]), st.text(max_size=10)),
        st.one_of(st.integers(-5, 200).map(str), st.text(max_size=40)),
        max_size=3,
    ),
)


def _event(
    method: str, path: str, body: str | None, base64_body: bool, query: dict[str, str] | None
) -> dict[str, Any]:
    event = load_event("api_get_job.json")
    event["rawPath"] = path
    event["requestContext"]["http"].update(method=method, path=path)
    event.pop("pathParameters", None)
    if body is not None:
        event["body"] = (
            base64.b64encode(body.encode("utf-8", "surrogatepass")).decode() if base64_body else body
        )
        event["isBase64Encoded"] = base64_body
    if query:
        event["queryStringParameters"] = query
    return event


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["GET", "POST"] * 3 + ["PUT", "DELETE", "PATCH", "OPTIONS"]),
    path=PATH,
    body=BODY,
    base64_body=st.booleans(),
    query=QUERY,
)
def test_any_request_gets_a_2xx_or_a_4xx_with_a_json_error(
    world: World, method: str, path: str, body: str | None, base64_body: bool, query: dict[str, str] | None
) -> None:
    if not world.job_items():
        world.deps.jobs.create(OWNER, job_id=JOB_ID, status="QUEUED")

    status, answer = call_api(_event(method, path, body, base64_body, query))

    assert 200 <= status < 300 or 400 <= status < 500, (status, answer)
    if status >= 400:
        assert set(answer) == {"error"}
        assert set(answer["error"]) == {"code", "message"}
        assert isinstance(answer["error"]["code"], str)
        assert isinstance(answer["error"]["message"], str)
    else:
        assert isinstance(answer, dict)
