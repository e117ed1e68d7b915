"""The web console on the local stack: ``console/dist`` on its own address, as CloudFront serves it.

The files are the ones ``npm run build`` writes in ``console/`` (``make setup`` builds them). Next
to them the server answers ``/config.json`` (the API's URL and the development identity), and every
answer carries the security headers of the template's ``ConsoleSecurityHeaders`` policy, the
Content-Security-Policy resolved for this stack (its API and S3 origins instead of AWS's). The
template's CORS settings (the HTTP API's ``CorsConfiguration``, the data bucket's CORS rules) are
read here too, with ``ConsoleOrigin`` set to this server's origin.
"""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from reconflow.local import template
from reconflow.local.http_api import CorsSettings
from reconflow.local.http_server import LocalHTTPServer

REPO_ROOT = Path(__file__).resolve().parents[2]
CONSOLE_DIST = REPO_ROOT / "console" / "dist"
CONFIG_PATH = "/config.json"
HEADERS_POLICY = "ConsoleSecurityHeaders"
API_RESOURCE = "Api"
ORIGIN_PARAMETER = "ConsoleOrigin"
# Vite names built assets after their content hash: they may be cached for good; index.html not.
IMMUTABLE_PREFIX = "/assets/"
IMMUTABLE_CACHE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"
# The CSP's ${Name} variables that point at AWS endpoints (see ConsoleSecurityHeaders).
CSP_ENDPOINT_VARIABLES = ("ApiOrigin", "DataOrigins", "IssuerOrigin", "ConsoleSignInOrigins")
BUILD_HINT = "build it with `make console` (npm ci && npm run build in console/)"
# How often the console asks for a job's status (console/src/config.js never goes below 2 s).
POLL_INTERVAL_MS = 2000


# --- the template's values, resolved for the local stack --------------------------------------


def _condition(value: Any, conditions: Mapping[str, Any], parameters: Mapping[str, str]) -> bool:
    """A template condition (``Fn::Equals``/``Not``/``And``/``Or``, ``Condition``) over parameter values."""
    if isinstance(value, Mapping) and len(value) == 1:
        ((function, argument),) = value.items()
        if function == "Condition":
            return _condition(conditions[argument], conditions, parameters)
        if function == "Fn::Equals":
            left, right = (_literal(part, parameters) for part in argument)
            return left == right
        if function == "Fn::Not":
            return not _condition(argument[0], conditions, parameters)
        if function == "Fn::And":
            return all(_condition(part, conditions, parameters) for part in argument)
        if function == "Fn::Or":
            return any(_condition(part, conditions, parameters) for part in argument)
    raise template.UnresolvedError(f"cannot evaluate condition {value!r}")


def _literal(value: Any, parameters: Mapping[str, str]) -> str:
    if isinstance(value, Mapping) and set(value) == {"Ref"}:
        return str(parameters[value["Ref"]])
    return str(value)


def resolve_value(
    value: Any, sam: Mapping[str, Any], parameters: Mapping[str, str], resolver: template.Resolver
) -> Any:
    """A property value with ``Fn::If`` decided from ``parameters`` and other intrinsics resolved."""
    if isinstance(value, Mapping):
        if set(value) == {"Fn::If"}:
            name, when_true, when_false = value["Fn::If"]
            chosen = (
                when_true
                if _condition({"Condition": name}, sam.get("Conditions", {}), parameters)
                else when_false
            )
            return resolve_value(chosen, sam, parameters, resolver)
        if len(value) == 1 and next(iter(value)).startswith(("Ref", "Fn::")):
            return resolver.resolve(value)
        return {str(key): resolve_value(item, sam, parameters, resolver) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve_value(item, sam, parameters, resolver) for item in value]
    return value


def parameter_resolver(parameters: Mapping[str, str]) -> template.Resolver:
    """A resolver that knows the parameters only (the CORS settings need nothing else locally)."""

    def get_att(logical: str, attribute: str) -> str:
        raise template.UnresolvedError(f"no local value for {logical}.{attribute}")

    return template.Resolver(ref=lambda name: parameters[name], get_att=get_att)


def api_cors(sam: Mapping[str, Any], parameters: Mapping[str, str]) -> CorsSettings:
    """The template's ``Api.CorsConfiguration`` for these parameter values."""
    properties = template.resource(sam, API_RESOURCE).get("Properties", {})
    cors = resolve_value(
        properties.get("CorsConfiguration") or {}, sam, parameters, parameter_resolver(parameters)
    )

    def listed(name: str) -> tuple[str, ...]:
        return tuple(str(item) for item in cors.get(name) or ())

    max_age = cors.get("MaxAge")
    return CorsSettings(
        allow_origins=listed("AllowOrigins"),
        allow_methods=tuple(method.upper() for method in listed("AllowMethods")),
        allow_headers=tuple(header.lower() for header in listed("AllowHeaders")),
        expose_headers=listed("ExposeHeaders"),
        max_age=None if max_age is None else int(max_age),
        allow_credentials=str(cors.get("AllowCredentials", False)).lower() == "true",
    )


def bucket_cors_rules(
    sam: Mapping[str, Any], logical_id: str, parameters: Mapping[str, str]
) -> list[dict[str, Any]]:
    """The bucket's ``CorsConfiguration.CorsRules`` as S3's ``PutBucketCors`` takes them."""
    properties = template.resource(sam, logical_id).get("Properties", {})
    rules = resolve_value(
        (properties.get("CorsConfiguration") or {}).get("CorsRules") or [],
        sam,
        parameters,
        parameter_resolver(parameters),
    )
    renamed = {
        "AllowedHeaders": "AllowedHeaders",
        "AllowedMethods": "AllowedMethods",
        "AllowedOrigins": "AllowedOrigins",
        "ExposedHeaders": "ExposeHeaders",
        "MaxAge": "MaxAgeSeconds",
        "Id": "ID",
    }
    return [
        {
            renamed[key]: (int(value) if key == "MaxAge" else value)
            for key, value in rule.items()
            if key in renamed
        }
        for rule in rules
    ]


def security_headers(sam: Mapping[str, Any], endpoints: Mapping[str, str]) -> dict[str, str]:
    """The response headers of the template's ``ConsoleSecurityHeaders`` policy.

    ``endpoints`` gives the CSP's endpoint variables (``CSP_ENDPOINT_VARIABLES``) their local values.
    """
    config = template.resource(sam, HEADERS_POLICY)["Properties"]["ResponseHeadersPolicyConfig"]
    security = config.get("SecurityHeadersConfig", {})
    headers: dict[str, str] = {}
    csp = security.get("ContentSecurityPolicy", {}).get("ContentSecurityPolicy")
    if csp is not None:
        text = csp["Fn::Sub"][0] if isinstance(csp, Mapping) else str(csp)
        resolved = template.Resolver(ref=lambda name: endpoints[name], get_att=lambda *_: "").resolve(
            {"Fn::Sub": [text, dict(endpoints)]}
        )
        headers["content-security-policy"] = " ".join(resolved.split())
    if security.get("ContentTypeOptions") is not None:
        headers["x-content-type-options"] = "nosniff"
    if "FrameOptions" in security:
        headers["x-frame-options"] = str(security["FrameOptions"]["FrameOption"])
    if "ReferrerPolicy" in security:
        headers["referrer-policy"] = str(security["ReferrerPolicy"]["ReferrerPolicy"])
    if "StrictTransportSecurity" in security:
        hsts = security["StrictTransportSecurity"]
        value = f"max-age={hsts['AccessControlMaxAgeSec']}"
        value += "; includeSubDomains" if str(hsts.get("IncludeSubdomains")).lower() == "true" else ""
        value += "; preload" if str(hsts.get("Preload")).lower() == "true" else ""
        headers["strict-transport-security"] = value
    for item in config.get("CustomHeadersConfig", {}).get("Items", []):
        headers[str(item["Header"]).lower()] = str(item["Value"])
    return headers


def apply_bucket_cors(sam: Mapping[str, Any], deployment: Any, s3: Any) -> None:
    """Put each deployed bucket's template CORS rules (moto's CloudFormation ignores them)."""
    for logical, bucket in deployment.of_type("AWS::S3::Bucket").items():
        if logical not in sam.get("Resources", {}):
            continue  # a bucket the local stack made itself (code uploads)
        rules = bucket_cors_rules(sam, logical, deployment.parameters)
        if rules:
            s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": rules})


def local_config(api_url: str, dev_sub: str, poll_interval_ms: int = POLL_INTERVAL_MS) -> dict[str, Any]:
    """The console's config.json on the local stack: its API, the development identity."""
    return {"apiUrl": api_url, "auth": {"mode": "local", "sub": dev_sub}, "pollIntervalMs": poll_interval_ms}


def local_endpoints(api_url: str, moto_url: str) -> dict[str, str]:
    """The CSP's endpoint variables on the local stack: the API, and S3 for uploads and downloads."""
    return {"ApiOrigin": api_url, "DataOrigins": moto_url, "IssuerOrigin": "", "ConsoleSignInOrigins": ""}


# --- the server --------------------------------------------------------------------------------


@dataclass
class ConsoleServer:
    """Serves ``dist_dir`` and ``/config.json`` on ``host:port`` (0 = a free port)."""

    dist_dir: Path = CONSOLE_DIST
    host: str = "127.0.0.1"
    port: int = 0
    # Served as /config.json (console/src/config.js reads it).
    config: dict[str, Any] = field(default_factory=dict)
    # Added to every answer (security_headers()).
    headers: dict[str, str] = field(default_factory=dict)
    _server: LocalHTTPServer | None = None

    @property
    def built(self) -> bool:
        return (self.dist_dir / "index.html").is_file()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    origin = url  # the page's origin, what CORS rules name

    def file_for(self, path: str) -> Path | None:
        """The built file a request path names, or None (nothing outside ``dist_dir`` is served)."""
        relative = unquote(path).lstrip("/") or "index.html"
        candidate = (self.dist_dir / relative).resolve()
        root = self.dist_dir.resolve()
        if root not in candidate.parents or not candidate.is_file():
            return None
        return candidate

    def answer(self, path: str) -> tuple[int, dict[str, str], bytes]:
        path = urlsplit(path).path
        if not self.built:
            message = f"The ReconFlow console is not built: {BUILD_HINT}.\n"
            return 503, {"content-type": "text/plain; charset=utf-8"}, message.encode()
        if path == CONFIG_PATH:
            return (
                200,
                {"content-type": "application/json", "cache-control": "no-store"},
                json.dumps(self.config).encode(),
            )
        found = self.file_for(path)
        if found is None:
            return 404, {"content-type": "text/plain; charset=utf-8"}, b"not found\n"
        kind = mimetypes.guess_type(found.name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind in ("application/javascript", "application/json"):
            kind += "; charset=utf-8"
        cache = IMMUTABLE_CACHE if path.startswith(IMMUTABLE_PREFIX) else NO_CACHE
        return 200, {"content-type": kind, "cache-control": cache}, found.read_bytes()

    def start(self) -> ConsoleServer:
        """Serve (a console that is not built answers 503 with how to build it)."""
        console = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self, with_body: bool) -> None:
                status, headers, body = console.answer(self.path)
                self.send_response(status)
                for name, value in {**console.headers, **headers}.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                if with_body:
                    self.wfile.write(body)

            def do_GET(self) -> None:
                self._serve(with_body=True)

            def do_HEAD(self) -> None:
                self._serve(with_body=False)

            def do_POST(self) -> None:  # static files: nothing to post to
                self.send_error(HTTPStatus.METHOD_NOT_ALLOWED)

            def log_message(self, format: str, *args: Any) -> None:  # quiet by default
                return

        self._server = LocalHTTPServer((self.host, self.port), Handler)
        self._server.serve_in_background("console")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self._server = None
