"""The API's OpenAPI 3.1 document (``docs/openapi.json``): written by this script, never by hand.

    python -m reconflow.openapi           # rewrite docs/openapi.json
    python -m reconflow.openapi --check   # exit 1 when the committed file is not what the code says

Why a script and not powertools at run time: powertools' resolver builds OpenAPI from routes
whose parameters and return values are pydantic models, which needs ``enable_validation`` (or at
least pydantic) in the Lambda's import path, and the cold start must stay within 1.10× of a bare
boto3 + event_handler process. So the handler stays as it is, and this script, which runs only in
development, takes the route list from the resolver itself (``app.get_openapi_schema()``: every
path and method registered on ``handlers.api.app``) and fills in each operation's bodies, answers
and error shapes from the values the code uses (presets, statuses, stages, the job id pattern,
limits, the error codes of ``STATUS_BY_ERROR``). A route added to the resolver without a
description here, or described here but not registered, stops the script; the drift test
(``tests/unit/openapi``) also holds the routes to the template's ``HttpApi`` events.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import fields
from http import HTTPStatus
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

from jobstate.captures import CAPTURE_FORMATS, DEFAULT_CAPTURE_FORMAT
from jobstate.ids import JOB_ID_LENGTH, JOB_ID_PATTERN
from jobstate.jobs import (
    CANCELLED,
    CANCELLING,
    CREATED,
    INTERNAL_JOB_FIELDS,
    MAX_NAME_LENGTH,
    MAX_TOKEN_LENGTH,
    STATUSES,
    Job,
)
from jobstate.settings import Settings
from jobstate.stages import DEFAULT_PRESET, PRESETS, STAGE_NAMES, STAGES

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCUMENT_PATH = REPO_ROOT / "docs" / "openapi.json"
# Where the local stack serves the document, beside the API's routes.
SERVED_PATH = "/openapi.json"
OPENAPI_VERSION = "3.1.0"
TITLE = "ReconFlow API"
JSON = "application/json"
REF = "#/components/schemas/"
# Fields of a job body besides the job item's own: the links of a SUCCEEDED job.
DOWNLOAD_FIELDS = ("downloads", "downloads_expire_in")


class RouteDrift(Exception):
    """The resolver's routes and the operations described here are not the same set."""


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _default_settings() -> Settings:
    """The service's settings as the template deploys them (no overrides from this shell)."""
    with mock.patch.dict(os.environ, {}, clear=True):
        return Settings()


def _job_id_schema() -> dict[str, Any]:
    return {
        "type": "string",
        "pattern": f"^{JOB_ID_PATTERN.pattern}$",
        "minLength": JOB_ID_LENGTH,
        "maxLength": JOB_ID_LENGTH,
        "description": "a lower-case UUID4, as the service generates it",
    }


def schemas(settings: Settings) -> dict[str, Any]:
    """The components: bodies sent and answered, and the two error shapes."""
    text = {"type": "string"}
    timestamp = {"type": "string", "format": "date-time"}
    return {
        "Error": {
            "type": "object",
            "description": "every error the API function answers",
            "required": ["error"],
            "additionalProperties": False,
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "additionalProperties": False,
                    "properties": {"code": text, "message": text},
                }
            },
        },
        "GatewayError": {
            "type": "object",
            "description": "API Gateway's own answers: the JWT authorizer (401) and throttling (429)",
            "required": ["message"],
            "properties": {"message": text},
        },
        "CreateJobRequest": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "preset": {
                    "anyOf": [{"type": "string", "enum": list(PRESETS)}, {"type": "null"}],
                    "default": DEFAULT_PRESET,
                },
                "name": _nullable(
                    {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": MAX_NAME_LENGTH,
                        "pattern": r"\S",
                        "description": "printable characters, not only spaces",
                    }
                ),
                "capture": {
                    "anyOf": [{"type": "string", "enum": list(CAPTURE_FORMATS)}, {"type": "null"}],
                    "default": DEFAULT_CAPTURE_FORMAT,
                    "description": "what will be uploaded: a zip (photos, with or without transforms.json) "
                    "or a video (mp4, mov); the upload is signed for input/capture.<capture>",
                },
            },
        },
        "Upload": {
            "type": "object",
            "description": (
                "a presigned S3 POST: send every entry of fields, then the capture as the last field "
                "`file`; the policy accepts jobs/{job_id}/input/capture.<capture> from 1 byte to max_bytes"
            ),
            "required": ["url", "fields", "expires_in", "max_bytes"],
            "additionalProperties": False,
            "properties": {
                "url": {"type": "string", "format": "uri"},
                "fields": {"type": "object", "additionalProperties": text},
                "expires_in": {"type": "integer", "minimum": 1},
                "max_bytes": {"type": "integer", "minimum": 1},
            },
        },
        "CreatedJob": {
            "type": "object",
            "required": ["job_id", "status", "upload"],
            "additionalProperties": False,
            "properties": {
                "job_id": _job_id_schema(),
                "status": {"type": "string", "const": CREATED},
                "upload": _ref("Upload"),
            },
        },
        "Job": {
            "type": "object",
            "description": "a job; downloads and downloads_expire_in only once SUCCEEDED",
            "required": [name for name in job_fields() if name not in DOWNLOAD_FIELDS],
            "additionalProperties": False,
            "properties": {
                "job_id": _job_id_schema(),
                "name": _nullable(text),
                "preset": {"type": "string", "enum": list(PRESETS)},
                "status": {"type": "string", "enum": list(STATUSES)},
                "stage": _nullable({"type": "string", "enum": list(STAGE_NAMES)}),
                "stage_index": _nullable({"type": "integer", "minimum": 1, "maximum": len(STAGES)}),
                "progress": {"type": "number", "minimum": 0, "maximum": 100},
                "message": text,
                "created_at": timestamp,
                "updated_at": timestamp,
                "started_at": _nullable(timestamp),
                "finished_at": _nullable(timestamp),
                "result": _nullable({"type": "object", "additionalProperties": text}),
                "error": _nullable(
                    {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {"code": text, "message": text},
                    }
                ),
                "purged": _nullable({"type": "object", "additionalProperties": {"type": "integer"}}),
                "downloads": {
                    "type": "object",
                    "description": "output file name -> presigned GET URL",
                    "additionalProperties": {"type": "string", "format": "uri"},
                },
                "downloads_expire_in": {"type": "integer", "minimum": 1},
            },
        },
        "JobList": {
            "type": "object",
            "required": ["jobs", "next_cursor"],
            "additionalProperties": False,
            "properties": {
                "jobs": {"type": "array", "items": _ref("Job"), "maxItems": settings.list_page_size_max},
                "next_cursor": _nullable({"type": "string", "minLength": 1}),
            },
        },
        "CancelRequested": {
            "type": "object",
            "required": ["job_id", "status", "token", "expires_at"],
            "additionalProperties": False,
            "properties": {
                "job_id": _job_id_schema(),
                "status": {"type": "string", "const": "cancel_requested"},
                "token": {"type": "string", "minLength": 1, "maxLength": MAX_TOKEN_LENGTH},
                "expires_at": timestamp,
            },
        },
        "ConfirmCancelRequest": {
            "type": "object",
            "required": ["token"],
            "additionalProperties": False,
            "properties": {"token": {"type": "string", "minLength": 1, "maxLength": MAX_TOKEN_LENGTH}},
        },
        "CancelConfirmed": {
            "type": "object",
            "required": ["job_id", "status"],
            "additionalProperties": False,
            "properties": {
                "job_id": _job_id_schema(),
                "status": {"type": "string", "enum": [CANCELLING, CANCELLED]},
            },
        },
    }


def job_fields() -> list[str]:
    """The keys of a job body: the job item's public fields, then the download links."""
    public = [field.name for field in fields(Job) if field.name not in INTERNAL_JOB_FIELDS]
    return [*public, *DOWNLOAD_FIELDS]


def _api_module() -> ModuleType:
    """``handlers.api``, imported with tracing off: this script reads its routes, it serves nothing
    (an enabled X-Ray tracer would open its UDP emitter)."""
    with mock.patch.dict(os.environ, {"POWERTOOLS_TRACE_DISABLED": "true"}):
        return importlib.import_module("handlers.api")


def error_codes() -> dict[int, list[str]]:
    """HTTP status -> the error codes the API function answers it with (``STATUS_BY_ERROR``)."""
    codes: dict[int, list[str]] = {}
    for kind, status in _api_module().STATUS_BY_ERROR:
        codes.setdefault(status.value, []).append(kind.code)
        for sub in kind.__subclasses__():
            if sub.code not in codes[status.value]:
                codes[status.value].append(sub.code)
    return codes


def _answer(description: str, schema: dict[str, Any], links: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "content": {JSON: {"schema": schema}}}
    if links:
        answer["links"] = links
    return answer


def _narrowed(codes: Sequence[str]) -> dict[str, Any]:
    """The Error shape with ``error.code`` one of ``codes``."""
    only = {"properties": {"error": {"properties": {"code": {"enum": list(codes)}}}}}
    return {"allOf": [_ref("Error"), only]}


def _error(status: HTTPStatus, codes: Sequence[str], why: str) -> dict[str, Any]:
    return _answer(f"{why} ({', '.join(codes)})", _narrowed(codes))


def _errors(codes: dict[int, list[str]], *statuses: HTTPStatus) -> dict[str, Any]:
    """The error answers of one operation: the given statuses, then 401, 429 and 500 for all."""
    why = {
        HTTPStatus.BAD_REQUEST: "malformed job id, body, limit or cursor",
        HTTPStatus.NOT_FOUND: "no such job, or another caller's job (never says which)",
        HTTPStatus.CONFLICT: "the job's state forbids it",
    }
    answers = {str(status.value): _error(status, codes[status.value], why[status]) for status in statuses}
    answers["401"] = _answer(
        "no caller identity: the JWT authorizer's answer (GatewayError), or the function's",
        {"anyOf": [_narrowed(codes[HTTPStatus.UNAUTHORIZED.value]), _ref("GatewayError")]},
    )
    answers["429"] = _answer("throttled by API Gateway", _ref("GatewayError"))
    answers["500"] = _error(HTTPStatus.INTERNAL_SERVER_ERROR, ["internal_error"], "unexpected failure")
    return answers


def _job_id_parameter() -> dict[str, Any]:
    return {"name": "job_id", "in": "path", "required": True, "schema": _job_id_schema()}


def _job_links(job_id: str) -> dict[str, Any]:
    """OpenAPI links from an answer carrying ``job_id`` to the operations on that job."""
    parameters = {"job_id": job_id}
    return {
        "GetJob": {"operationId": "get_job", "parameters": parameters},
        "RequestCancel": {"operationId": "request_cancel", "parameters": parameters},
    }


def operations(settings: Settings) -> dict[str, dict[str, Any]]:
    """``METHOD /path`` -> the OpenAPI operation, for every route of the API function."""
    codes = error_codes()
    bad, missing, conflict = HTTPStatus.BAD_REQUEST, HTTPStatus.NOT_FOUND, HTTPStatus.CONFLICT
    created_id = "$response.body#/job_id"
    return {
        "POST /jobs": {
            "operationId": "create_job",
            "summary": "create a job and get its presigned upload",
            "requestBody": {"required": False, "content": {JSON: {"schema": _ref("CreateJobRequest")}}},
            "responses": {
                "201": _answer(
                    "the job, CREATED, waiting for its capture", _ref("CreatedJob"), _job_links(created_id)
                ),
                **_errors(codes, bad),
            },
        },
        "GET /jobs": {
            "operationId": "list_jobs",
            "summary": "the caller's jobs, newest first, a page at a time",
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": settings.list_page_size_max,
                        "default": settings.list_page_size,
                    },
                },
                {
                    "name": "cursor",
                    "in": "query",
                    "required": False,
                    "description": "next_cursor of the previous page",
                    "schema": {"type": "string", "minLength": 1},
                },
            ],
            "responses": {"200": _answer("one page of jobs", _ref("JobList")), **_errors(codes, bad)},
        },
        "GET /jobs/{job_id}": {
            "operationId": "get_job",
            "summary": "one job: status, stage, progress, message, error; download links once SUCCEEDED",
            "parameters": [_job_id_parameter()],
            "responses": {"200": _answer("the job", _ref("Job")), **_errors(codes, bad, missing)},
        },
        "POST /jobs/{job_id}/cancel": {
            "operationId": "request_cancel",
            "summary": "ask to cancel a QUEUED or RUNNING job: a token to confirm within the window",
            "parameters": [_job_id_parameter()],
            "responses": {
                "202": _answer(
                    "the cancel request, to confirm before expires_at",
                    _ref("CancelRequested"),
                    {
                        "ConfirmCancel": {
                            "operationId": "confirm_cancel",
                            "parameters": {"job_id": "$response.body#/job_id"},
                            "requestBody": {"token": "$response.body#/token"},
                        }
                    },
                ),
                **_errors(codes, bad, missing, conflict),
            },
        },
        "POST /jobs/{job_id}/cancel/confirm": {
            "operationId": "confirm_cancel",
            "summary": "confirm a cancel with its token: the job stops and everything it stored is deleted",
            "parameters": [_job_id_parameter()],
            "requestBody": {"required": True, "content": {JSON: {"schema": _ref("ConfirmCancelRequest")}}},
            "responses": {
                "202": _answer("the job is being cancelled (again: harmless)", _ref("CancelConfirmed")),
                **_errors(codes, bad, missing, conflict),
            },
        },
    }


def resolver_routes() -> list[str]:
    """``METHOD /path`` of every route registered on the API function's resolver, as powertools
    describes them in its own OpenAPI (paths already in ``{param}`` form)."""
    generated = _api_module().app.get_openapi_schema()
    routes = []
    for path, item in generated.paths.items():
        for method, operation in item.model_dump(exclude_none=True).items():
            if isinstance(operation, dict) and "responses" in operation:
                routes.append(f"{method.upper()} {path}")
    return sorted(routes)


def build_document() -> dict[str, Any]:
    """The whole document, from the code; ``RouteDrift`` when the resolver has other routes."""
    settings = _default_settings()
    described = operations(settings)
    registered = resolver_routes()
    if sorted(described) != registered:
        raise RouteDrift(
            f"resolver routes {registered} but described {sorted(described)}: update reconflow/openapi.py"
        )
    paths: dict[str, dict[str, Any]] = {}
    for route, operation in described.items():
        method, path = route.split(" ", 1)
        paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": TITLE,
            "version": _version(),
            "description": (
                "Multi-view captures in, textured meshes out. Every route needs a JWT "
                "(Authorization: Bearer); the caller is its sub claim. Generated by "
                "`python -m reconflow.openapi` from handlers/api.py; see the README's API section."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"jwt": []}],
        "paths": paths,
        "components": {
            "schemas": schemas(settings),
            "securitySchemes": {"jwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }


def _version() -> str:
    from importlib.metadata import version

    return version("reconflow")


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def load_document(path: Path = DOCUMENT_PATH) -> dict[str, Any]:
    """The committed document."""
    return json.loads(path.read_text(encoding="utf-8"))


def document_answer(api_url: str, path: Path = DOCUMENT_PATH) -> dict[str, Any]:
    """The committed document with ``servers`` naming this API, as a payload-2.0 answer (what the
    local stack serves at ``SERVED_PATH``)."""
    document = load_document(path)
    document["servers"] = [{"url": api_url, "description": "this local stack"}]
    return {"statusCode": 200, "headers": {"content-type": JSON}, "body": render(document)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reconflow.openapi", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare with the committed file")
    parser.add_argument("--out", type=Path, default=DOCUMENT_PATH, help="where the document goes")
    args = parser.parse_args(argv)
    text = render(build_document())
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date: run python -m reconflow.openapi", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
