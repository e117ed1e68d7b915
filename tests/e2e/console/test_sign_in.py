"""Sign-in on AWS: OIDC authorization code with PKCE, against an identity provider on loopback.

The provider plays Cognito's part (discovery document, authorize, token endpoint); it refuses a
token request whose code_verifier does not hash to the code's S256 challenge. The API is the
emulated gateway with the template's CORS shape; it records the bearer token each call carries.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from playwright.sync_api import Page, expect

from reconflow.local import template
from reconflow.local.console_server import ConsoleServer, security_headers
from reconflow.local.http_api import CorsSettings, HttpApiGateway, Route

CLIENT_ID = "console-client"
USER = {"sub": "0b6c0a64-user", "email": "alice@example.com"}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _jwt(claims: dict[str, Any]) -> str:
    """JWT-shaped (header.payload.signature); the console reads claims, the gateway checks nothing."""
    return ".".join(_b64url(json.dumps(part).encode()) for part in ({"alg": "none"}, claims, {}))


@dataclass
class Provider:
    """A minimal OIDC provider: what it was asked, and the tokens it gave out."""

    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    challenges: dict[str, tuple[str, str]] = field(default_factory=dict)  # code -> (challenge, redirect)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Provider:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: dict[str, Any] | None = None, location: str = "") -> None:
                payload = json.dumps(body or {}).encode()
                self.send_response(status)
                self.send_header("access-control-allow-origin", "*")
                self.send_header("content-type", "application/json")
                if location:
                    self.send_header("location", location)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path == "/.well-known/openid-configuration":
                    self._send(
                        200,
                        {
                            "issuer": provider.url,
                            "authorization_endpoint": f"{provider.url}/authorize",
                            "token_endpoint": f"{provider.url}/token",
                        },
                    )
                elif parts.path == "/authorize":
                    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
                    provider.authorize_requests.append(query)
                    code = secrets.token_urlsafe(16)
                    provider.challenges[code] = (query["code_challenge"], query["redirect_uri"])
                    back = urlencode({"code": code, "state": query["state"]})
                    self._send(302, location=f"{query['redirect_uri']}?{back}")
                else:
                    self._send(404)

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                form = {key: values[0] for key, values in parse_qs(self.rfile.read(length).decode()).items()}
                provider.token_requests.append(form)
                challenge, redirect = provider.challenges.pop(form.get("code", ""), ("", ""))
                verifier_hash = _b64url(hashlib.sha256(form.get("code_verifier", "").encode()).digest())
                if not challenge or verifier_hash != challenge or form.get("redirect_uri") != redirect:
                    self._send(400, {"error": "invalid_grant"})
                    return
                token = _jwt({**USER, "client_id": CLIENT_ID, "token_use": "access"})
                provider.issued.append(token)
                self._send(
                    200,
                    {
                        "access_token": token,
                        "id_token": _jwt({**USER, "aud": CLIENT_ID}),
                        "expires_in": 3600,
                        "token_type": "Bearer",
                    },
                )

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@dataclass
class SignInSite:
    provider: Provider
    console: ConsoleServer
    bearer_tokens: list[str]


@pytest.fixture
def site() -> Iterator[SignInSite]:
    provider = Provider().start()
    console = ConsoleServer().start()
    bearer_tokens: list[str] = []

    def jobs_api(event: dict[str, Any]) -> dict[str, Any]:
        bearer_tokens.append(event["headers"].get("authorization", ""))
        return {"statusCode": 200, "body": json.dumps({"jobs": [], "next_cursor": None})}

    cors = CorsSettings(
        allow_origins=(console.origin,),
        allow_methods=("GET", "POST", "OPTIONS"),
        allow_headers=("authorization", "content-type"),
    )
    api = HttpApiGateway([Route("GET", "/jobs")], jobs_api, cors=cors)
    api.start()
    console.config = {
        "apiUrl": api.url,
        "auth": {"mode": "oidc", "issuer": provider.url, "clientId": CLIENT_ID, "scope": "openid email"},
    }
    endpoints = {
        "ApiOrigin": api.url,
        "DataOrigins": "",
        "IssuerOrigin": provider.url,
        "ConsoleSignInOrigins": "",
    }
    console.headers = security_headers(template.load_template(), endpoints)
    yield SignInSite(provider, console, bearer_tokens)
    api.stop()
    console.stop()
    provider.stop()


def test_sign_in_uses_the_code_flow_with_pkce_and_the_api_gets_the_token(
    page: Page, site: SignInSite
) -> None:
    page.goto(site.console.url + "/#/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert site.bearer_tokens == []  # nothing is asked of the API before sign-in

    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text(f"Signed in as {USER['email']}")).to_be_visible()
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    expect(page.get_by_text("No jobs yet.")).to_be_visible()

    (asked,) = site.provider.authorize_requests
    assert asked["response_type"] == "code"
    assert asked["client_id"] == CLIENT_ID
    assert asked["code_challenge_method"] == "S256"
    assert asked["redirect_uri"] == site.console.url + "/"
    assert asked["scope"] == "openid email"
    (exchanged,) = site.provider.token_requests
    assert exchanged["grant_type"] == "authorization_code"
    assert "client_secret" not in exchanged  # a public client: no secret in the browser
    assert len(exchanged["code_verifier"]) >= 43  # RFC 7636's minimum
    assert "code=" not in page.url  # the code does not stay in the address bar or history

    (token,) = site.provider.issued
    assert site.bearer_tokens
    assert set(site.bearer_tokens) == {f"Bearer {token}"}

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_a_sign_in_answer_that_was_not_asked_for_is_refused(page: Page, site: SignInSite) -> None:
    page.goto(site.console.url + "/?code=stolen&state=forged#/")
    expect(page.get_by_role("alert")).to_contain_text("does not match the request")
    assert site.provider.token_requests == []
    assert site.bearer_tokens == []
