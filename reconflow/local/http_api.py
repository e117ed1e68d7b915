"""The HTTP API on localhost: each request becomes an API Gateway HTTP API (payload 2.0) event.

The routes are the ones the template declares for the API function (``Method``/``Path`` of its
``HttpApi`` events); a request matching none gets API Gateway's own 404. The JWT authorizer is
replaced by a development identity: every request is ``sub = "local-dev"`` unless the
``X-Reconflow-Dev-Sub`` header names another caller (so tests can act as two users). CORS is
API Gateway's: with a ``CorsSettings`` (the template's ``CorsConfiguration``), preflights are
answered by the gateway itself and an allowed ``Origin`` gets the CORS headers on every answer.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from reconflow.client import DEV_IDENTITY_HEADER
from reconflow.local.http_server import LocalHTTPServer

DEFAULT_DEV_SUB = "local-dev"
LOCAL_API_ID = "localapi"
EventHandler = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class Route:
    """One ``METHOD /path/{param}`` route, as an API Gateway route key."""

    method: str
    path: str
    pattern: re.Pattern[str] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.path))
        object.__setattr__(self, "pattern", re.compile(f"^{regex}$"))

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method.upper() != self.method.upper() and self.method.upper() != "ANY":
            return None
        found = self.pattern.match(path)
        return None if found is None else found.groupdict()


@dataclass(frozen=True)
class CorsSettings:
    """An HTTP API's ``CorsConfiguration``: the gateway answers preflights and adds the headers."""

    allow_origins: tuple[str, ...] = ()
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()  # lower case
    expose_headers: tuple[str, ...] = ()
    max_age: int | None = None
    allow_credentials: bool = False

    def allows(self, origin: str | None) -> bool:
        return bool(origin) and ("*" in self.allow_origins or origin in self.allow_origins)

    def _origin_headers(self, origin: str) -> dict[str, str]:
        headers = {"access-control-allow-origin": origin, "vary": "origin"}
        if self.allow_credentials:
            headers["access-control-allow-credentials"] = "true"
        return headers

    def preflight(self, headers: dict[str, str]) -> HttpResponse:
        """API Gateway's answer to ``OPTIONS``: 204, with the CORS headers only if all is allowed."""
        origin = headers.get("origin")
        method = headers.get("access-control-request-method", "").upper()
        asked = [
            name.strip().lower() for name in headers.get("access-control-request-headers", "").split(",")
        ]
        allowed_headers = "*" in self.allow_headers or all(
            not name or name in self.allow_headers for name in asked
        )
        allowed_method = "*" in self.allow_methods or method in self.allow_methods
        if not (self.allows(origin) and allowed_method and allowed_headers):
            return HttpResponse(204, {}, b"")
        answer = {
            **self._origin_headers(str(origin)),
            "access-control-allow-methods": ",".join(self.allow_methods),
        }
        if self.allow_headers:
            answer["access-control-allow-headers"] = ",".join(self.allow_headers)
        if self.max_age is not None:
            answer["access-control-max-age"] = str(self.max_age)
        return HttpResponse(204, answer, b"")

    def add_headers(self, headers: dict[str, str], response: HttpResponse) -> HttpResponse:
        """The integration's answer with the CORS headers an allowed origin gets."""
        origin = headers.get("origin")
        if not self.allows(origin):
            return response
        extra = self._origin_headers(str(origin))
        if self.expose_headers:
            extra["access-control-expose-headers"] = ",".join(self.expose_headers)
        return HttpResponse(response.status, {**response.headers, **extra}, response.body)


@dataclass(frozen=True)
class Identity:
    """The development stand-in for the JWT authorizer."""

    default_sub: str = DEFAULT_DEV_SUB
    allow_override: bool = True  # honour the X-Reconflow-Dev-Sub header

    def claims(self, headers: dict[str, str]) -> dict[str, str]:
        sub = self.default_sub
        if self.allow_override and headers.get(DEV_IDENTITY_HEADER.lower()):
            sub = headers[DEV_IDENTITY_HEADER.lower()]
        return {"sub": sub, "iss": "reconflow-local", "token_use": "access"}


def build_event(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: dict[str, str],
    body: bytes,
    route: Route,
    path_parameters: dict[str, str],
    identity: Identity,
    source_ip: str = "127.0.0.1",
) -> dict[str, Any]:
    """The payload-2.0 event API Gateway would send for this request."""
    now = datetime.now(UTC)
    query: dict[str, str] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value  # API Gateway joins repeats
    try:
        text_body: str | None = body.decode("utf-8") if body else None
        is_base64 = False
    except UnicodeDecodeError:
        text_body, is_base64 = base64.b64encode(body).decode("ascii"), True
    request_id = str(uuid.uuid4())
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": LOCAL_API_ID,
            "authorizer": {"jwt": {"claims": identity.claims(headers), "scopes": None}},
            "domainName": headers.get("host", "localhost"),
            "domainPrefix": "localhost",
            "http": {
                "method": method.upper(),
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": route.route_key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": is_base64,
    }
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = path_parameters
    if text_body is not None:
        event["body"] = text_body
    if "cookie" in headers:
        event["cookies"] = [part.strip() for part in headers["cookie"].split(";")]
    return event


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def to_http_response(result: Any) -> HttpResponse:
    """Interpret a handler's return value as API Gateway does for payload 2.0."""
    if not isinstance(result, dict) or "statusCode" not in result:
        # A bare value is JSON with status 200 (the "inferred" format).
        return HttpResponse(200, {"content-type": "application/json"}, json.dumps(result).encode("utf-8"))
    headers = {str(k).lower(): str(v) for k, v in (result.get("headers") or {}).items()}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers[name.lower()] = ", ".join(str(v) for v in values)
    raw = result.get("body") or ""
    body = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode("utf-8")
    return HttpResponse(int(result["statusCode"]), headers, body)


def _error(status: int, message: str) -> HttpResponse:
    return HttpResponse(
        status, {"content-type": "application/json"}, json.dumps({"message": message}).encode()
    )


@dataclass
class HttpApiGateway:
    """Routes requests to ``invoke(event)`` and serves them on ``host:port`` (0 = a free port)."""

    routes: list[Route]
    invoke: EventHandler
    identity: Identity = field(default_factory=Identity)
    host: str = "127.0.0.1"
    port: int = 0
    # Largest request body accepted (API Gateway's own payload limit is 10 MB).
    max_body_bytes: int = 10 * 1024 * 1024
    # The API's CORS settings; None: no CORS headers at all (an API without CorsConfiguration).
    cors: CorsSettings | None = None
    _server: LocalHTTPServer | None = None

    def dispatch(self, method: str, target: str, headers: dict[str, str], body: bytes) -> HttpResponse:
        if self.cors is None:
            return self._route(method, target, headers, body)
        if method.upper() == "OPTIONS" and "access-control-request-method" in headers:
            return self.cors.preflight(headers)
        return self.cors.add_headers(headers, self._route(method, target, headers, body))

    def _route(self, method: str, target: str, headers: dict[str, str], body: bytes) -> HttpResponse:
        parts = urlsplit(target)
        for route in self.routes:
            params = route.match(method, parts.path)
            if params is not None:
                event = build_event(
                    method, parts.path, parts.query, headers, body, route, params, self.identity
                )
                try:
                    return to_http_response(self.invoke(event))
                except Exception:  # what API Gateway answers when the integration fails
                    return _error(500, "Internal Server Error")
        return _error(404, "Not Found")

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length > gateway.max_body_bytes:
                    response = _error(413, "Request Entity Too Large")
                else:
                    body = self.rfile.read(length) if length else b""
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    response = gateway.dispatch(self.command, self.path, headers, body)
                self.send_response(response.status)
                for name, value in response.headers.items():
                    if name not in ("content-length", "connection"):
                        self.send_header(name, value)
                self.send_header("content-length", str(len(response.body)))
                self.end_headers()
                if self.command != "HEAD":  # a HEAD answer has the headers of the GET one, no body
                    self.wfile.write(response.body)

            def __getattr__(self, name: str) -> Any:
                """``do_<METHOD>`` for any method: every request reaches the routes, as in API
                Gateway, so one that no route takes gets its 404, never http.server's 501 page."""
                if name.startswith("do_"):
                    return self._serve
                raise AttributeError(name)

            def log_message(self, format: str, *args: Any) -> None:  # quiet by default
                return

        self._server = LocalHTTPServer((self.host, self.port), Handler)
        self._server.serve_in_background("http-api")

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self._server = None
