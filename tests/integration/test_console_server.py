"""The console's local server and the emulated API's CORS, on real sockets."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from reconflow.local.console_server import BUILD_HINT, ConsoleServer
from reconflow.local.http_api import CorsSettings, HttpApiGateway, Route

CONSOLE_ORIGIN = "http://127.0.0.1:5173"
CORS = CorsSettings(
    allow_origins=(CONSOLE_ORIGIN,),
    allow_methods=("GET", "POST", "OPTIONS"),
    allow_headers=("authorization", "content-type"),
    max_age=600,
)


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><title>console</title>")
    (tmp_path / "assets" / "index-abc123.js").write_text("console.log(1)")
    (tmp_path.parent / "secret.txt").write_text("not for the browser")
    return tmp_path


@pytest.fixture
def console(dist: Path) -> Iterator[ConsoleServer]:
    server = ConsoleServer(
        dist_dir=dist, config={"apiUrl": "http://api"}, headers={"x-frame-options": "DENY"}
    ).start()
    yield server
    server.stop()


def test_serves_the_build_with_config_and_headers(console: ConsoleServer) -> None:
    page = requests.get(console.url + "/", timeout=5)
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-cache"
    assert page.headers["x-frame-options"] == "DENY"
    asset = requests.get(console.url + "/assets/index-abc123.js", timeout=5)
    assert asset.text == "console.log(1)"
    assert "immutable" in asset.headers["cache-control"]
    config = requests.get(console.url + "/config.json", timeout=5)
    assert config.json() == {"apiUrl": "http://api"}
    assert config.headers["cache-control"] == "no-store"


def test_nothing_outside_the_build_is_served(console: ConsoleServer) -> None:
    host, port = console.url.removeprefix("http://").split(":")
    for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/assets/../../secret.txt", "/missing.js"):
        connection = http.client.HTTPConnection(host, int(port), timeout=5)
        connection.request("GET", path)
        answer = connection.getresponse()
        assert (path, answer.status) == (path, 404)
        assert b"not for the browser" not in answer.read()
        connection.close()


def test_a_console_not_built_says_how_to_build_it(tmp_path: Path) -> None:
    server = ConsoleServer(dist_dir=tmp_path / "dist").start()
    try:
        answer = requests.get(server.url + "/", timeout=5)
    finally:
        server.stop()
    assert answer.status_code == 503
    assert BUILD_HINT in answer.text


@pytest.fixture
def api() -> Iterator[HttpApiGateway]:
    def answer(event: dict[str, Any]) -> dict[str, Any]:
        return {"statusCode": 200, "body": json.dumps({"route": event["routeKey"]})}

    gateway = HttpApiGateway([Route("GET", "/jobs"), Route("POST", "/jobs")], answer, cors=CORS)
    gateway.start()
    yield gateway
    gateway.stop()


def test_preflight_from_the_console_is_answered_by_the_gateway(api: HttpApiGateway) -> None:
    answer = requests.options(
        api.url + "/jobs",
        headers={
            "Origin": CONSOLE_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
        timeout=5,
    )
    assert answer.status_code == 204
    assert answer.headers["access-control-allow-origin"] == CONSOLE_ORIGIN
    assert set(answer.headers["access-control-allow-methods"].split(",")) == {"GET", "POST", "OPTIONS"}
    assert answer.headers["access-control-allow-headers"] == "authorization,content-type"
    assert answer.headers["access-control-max-age"] == "600"


@pytest.mark.parametrize(
    ("origin", "method", "asked"),
    [
        ("http://evil.example", "POST", ""),  # another origin
        (CONSOLE_ORIGIN, "DELETE", ""),  # a method not allowed
        (CONSOLE_ORIGIN, "GET", "x-owner"),  # a header not allowed
    ],
)
def test_preflight_for_anything_else_gets_no_cors_headers(
    api: HttpApiGateway, origin: str, method: str, asked: str
) -> None:
    headers = {"Origin": origin, "Access-Control-Request-Method": method}
    if asked:
        headers["Access-Control-Request-Headers"] = asked
    answer = requests.options(api.url + "/jobs", headers=headers, timeout=5)
    assert answer.status_code == 204
    assert "access-control-allow-origin" not in answer.headers


def test_answers_carry_cors_headers_for_the_console_origin_only(api: HttpApiGateway) -> None:
    mine = requests.get(api.url + "/jobs", headers={"Origin": CONSOLE_ORIGIN}, timeout=5)
    assert mine.json() == {"route": "GET /jobs"}
    assert mine.headers["access-control-allow-origin"] == CONSOLE_ORIGIN
    assert mine.headers["vary"] == "origin"
    other = requests.get(api.url + "/jobs", headers={"Origin": "http://evil.example"}, timeout=5)
    assert other.status_code == 200
    assert "access-control-allow-origin" not in other.headers
