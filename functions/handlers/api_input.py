"""Parsing of what an API caller sends: JSON bodies and query strings, checked field by field.

Everything malformed raises ``InvalidRequest`` (400); nothing here touches AWS.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jobstate.captures import CAPTURE_FORMATS, DEFAULT_CAPTURE_FORMAT
from jobstate.errors import InvalidRequest
from jobstate.jobs import MAX_NAME_LENGTH, MAX_TOKEN_LENGTH
from jobstate.settings import Settings
from jobstate.stages import DEFAULT_PRESET, PRESETS

# The largest request body accepted; every body of this API is a few hundred bytes.
MAX_BODY_BYTES = 16 * 1024
MAX_LIMIT_DIGITS = 6  # longer digit strings are refused before int() reads them


@dataclass(frozen=True)
class CreateJobRequest:
    preset: str = DEFAULT_PRESET
    name: str | None = None
    capture: str = DEFAULT_CAPTURE_FORMAT  # the upload is signed for input/capture.<capture>


@dataclass(frozen=True)
class PageRequest:
    limit: int
    cursor: str | None = None


def json_object(body: str | None, *, base64_encoded: bool = False) -> dict[str, Any]:
    """The request body as a JSON object; an absent or blank body is ``{}``."""
    if body is None:
        return {}
    if base64_encoded:
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as error:
            raise InvalidRequest("body is not valid base64") from error
    else:
        raw = body.encode("utf-8", "surrogatepass")
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidRequest(f"body is larger than {MAX_BODY_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidRequest("body is not UTF-8") from error
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise InvalidRequest("body is not valid JSON") from error
    if not isinstance(value, dict):
        raise InvalidRequest("body must be a JSON object")
    return value


def _only(body: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        shown = ", ".join(repr(name[:40]) for name in unknown[:5])
        raise InvalidRequest(f"unknown field(s) {shown}; allowed: {', '.join(sorted(allowed))}")


def _printable(value: str) -> bool:
    return all(character.isprintable() for character in value)


def create_job_request(body: Mapping[str, Any]) -> CreateJobRequest:
    """POST /jobs: optional ``preset`` (one of PRESETS), ``name`` (printable text) and ``capture``
    (one of CAPTURE_FORMATS: a zip, or an MP4 / MOV video)."""
    _only(body, frozenset({"preset", "name", "capture"}))
    preset = body.get("preset", DEFAULT_PRESET)
    if preset is None:
        preset = DEFAULT_PRESET
    if not isinstance(preset, str) or preset not in PRESETS:
        raise InvalidRequest(f"preset must be one of {', '.join(PRESETS)}")
    name = body.get("name")
    if name is not None and (
        not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LENGTH or not _printable(name)
    ):
        raise InvalidRequest(f"name must be printable text of 1 to {MAX_NAME_LENGTH} characters")
    capture = body.get("capture")
    if capture is None:
        capture = DEFAULT_CAPTURE_FORMAT
    if not isinstance(capture, str) or capture not in CAPTURE_FORMATS:
        raise InvalidRequest(f"capture must be one of {', '.join(CAPTURE_FORMATS)}")
    return CreateJobRequest(preset=preset, name=name, capture=capture)


def confirm_token(body: Mapping[str, Any]) -> str:
    """POST /jobs/{id}/cancel/confirm: the ``token`` that the cancel request handed out."""
    _only(body, frozenset({"token"}))
    token = body.get("token")
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidRequest("token must be the string returned by POST /jobs/{job_id}/cancel")
    return token


def page_request(query: Mapping[str, str], settings: Settings) -> PageRequest:
    """GET /jobs: ``limit`` (1..list_page_size_max, default list_page_size) and ``cursor``."""
    raw_limit = query.get("limit")
    limit = settings.list_page_size
    if raw_limit is not None:
        digits = isinstance(raw_limit, str) and raw_limit.isascii() and raw_limit.isdigit()
        limit = int(raw_limit) if digits and len(raw_limit) <= MAX_LIMIT_DIGITS else 0
        if not 1 <= limit <= settings.list_page_size_max:
            raise InvalidRequest(f"limit must be a whole number from 1 to {settings.list_page_size_max}")
    cursor = query.get("cursor")
    if cursor is not None and (not isinstance(cursor, str) or not cursor):
        raise InvalidRequest("cursor must be the next_cursor of a previous page")
    return PageRequest(limit=limit, cursor=cursor)
