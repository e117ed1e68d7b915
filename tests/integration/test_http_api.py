"""The HTTP -> API Gateway payload 2.0 adapter, served on a real socket."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from reconflow.client import DEV_IDENTITY_HEADER
from reconflow.local.http_api import HttpApiGateway, Identity, Route, to_http_response

ROUTES = [
    Route("POST", "/jobs"),
    Route("GET", "/jobs"),
    Route("GET", "/jobs/{job_id}"),
    Route("POST", "/jobs/{job_id}/cancel/confirm"),
]


@pytest.fixture
def gateway() -> Iterator[tuple[HttpApiGateway, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []

    def echo(event: dict[str, Any]) -> dict[str, Any]:
        seen.append(event)
        return {
            "statusCode": 202,
            "headers": {"X-Route": event["routeKey"]},
            "body": json.dumps({"ok": True}),
        }

    served = HttpApiGateway(ROUTES, echo, Identity(default_sub="dev-user"))
    served.start()
    yield served, seen
    served.stop()


def test_request_becomes_a_payload_v2_event_with_route_and_path_parameters(gateway) -> None:
    served, seen = gateway
    response = requests.post(f"{served.url}/jobs/abc/cancel/confirm?x=1&x=2", json={"token": "t"}, timeout=10)
    assert response.status_code == 202
    assert response.headers["x-route"] == "POST /jobs/{job_id}/cancel/confirm"
    assert response.json() == {"ok": True}
    (event,) = seen
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /jobs/{job_id}/cancel/confirm"
    assert event["rawPath"] == "/jobs/abc/cancel/confirm"
    assert event["pathParameters"] == {"job_id": "abc"}
    assert event["queryStringParameters"] == {"x": "1,2"}
    assert json.loads(event["body"]) == {"token": "t"}
    assert event["requestContext"]["http"]["method"] == "POST"
    assert event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] == "dev-user"


def test_dev_identity_header_acts_as_another_caller(gateway) -> None:
    served, seen = gateway
    requests.get(f"{served.url}/jobs", headers={DEV_IDENTITY_HEADER: "other"}, timeout=10)
    assert seen[0]["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] == "other"
    assert "pathParameters" not in seen[0]


def test_identity_override_can_be_switched_off() -> None:
    identity = Identity(default_sub="dev-user", allow_override=False)
    assert identity.claims({DEV_IDENTITY_HEADER.lower(): "other"})["sub"] == "dev-user"


def test_unknown_route_or_method_is_api_gateways_404_and_never_invokes(gateway) -> None:
    served, seen = gateway
    assert requests.delete(f"{served.url}/jobs/abc", timeout=10).status_code == 404
    assert requests.get(f"{served.url}/nothing", timeout=10).json() == {"message": "Not Found"}
    assert seen == []


@pytest.mark.parametrize("method", ["TRACE", "HEAD", "QUERY"])
def test_a_method_no_route_takes_is_the_gateways_404_not_a_501(gateway, method: str) -> None:
    served, seen = gateway
    response = requests.request(method, f"{served.url}/jobs/abc/cancel/confirm", timeout=10)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.content == (b"" if method == "HEAD" else b'{"message": "Not Found"}')
    assert seen == []


def test_handler_crash_is_a_500_not_a_dropped_connection() -> None:
    def crash(event: dict[str, Any]) -> Any:
        raise RuntimeError("boom")

    served = HttpApiGateway([Route("GET", "/jobs")], crash)
    served.start()
    try:
        response = requests.get(f"{served.url}/jobs", timeout=10)
    finally:
        served.stop()
    assert response.status_code == 500
    assert response.json() == {"message": "Internal Server Error"}


def test_a_bare_return_value_is_json_with_status_200() -> None:
    response = to_http_response({"jobs": []})
    assert response.status == 200
    assert json.loads(response.body) == {"jobs": []}
