"""A small client for the ReconFlow HTTP API (DESIGN.md, "API"), for the CLI, tests and benchmarks.

It speaks only the public contract: JSON bodies, ``{"error": {"code", "message"}}`` on failure,
a presigned upload (POST with fields, or PUT with headers) and presigned download links. It works
the same against the deployed API (Bearer token) and the local stack (no token, or a dev identity).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from jobstate.captures import CONTENT_TYPES, ZIP, format_of_file
from jobstate.statuses import TERMINAL

API_URL_ENV = "RECONFLOW_API_URL"
TOKEN_ENV = "RECONFLOW_TOKEN"
# Local stack only: act as another caller (the stack's dev authorizer reads this header).
DEV_IDENTITY_HEADER = "X-Reconflow-Dev-Sub"
TERMINAL_STATUSES = TERMINAL  # a job in one of these never changes again


@dataclass(frozen=True)
class ClientSettings:
    # Seconds to wait for the API to answer one request.
    request_timeout_s: float = 30.0
    # Seconds to wait for an upload or a download of one file.
    transfer_timeout_s: float = 600.0
    # Bytes per chunk when streaming a download to disk.
    download_chunk_bytes: int = 1 << 20


class CaptureError(ValueError):
    """The capture cannot be sent as it is (checked before any job is created); ``code`` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def check_capture(capture: Path) -> str:
    """The capture's format (``zip``, ``mp4`` or ``mov``, by content) when it can be uploaded: an
    existing, readable, non-empty zip or video.

    This is only what the client can see at once; the pipeline's validate stage checks the content.
    """
    try:
        size = capture.stat().st_size
    except FileNotFoundError:
        raise CaptureError("capture_not_found", f"{capture}: no such file") from None
    if not capture.is_file():
        raise CaptureError("capture_not_a_file", f"{capture}: not a file (zip the folder first)")
    if size == 0:
        raise CaptureError("capture_empty", f"{capture}: the file is empty")
    try:
        capture_format = format_of_file(capture)
        if capture_format == ZIP and not zipfile.is_zipfile(capture):
            capture_format = None
    except OSError as error:
        raise CaptureError("capture_unreadable", f"{capture}: {error.strerror or error}") from None
    if capture_format is None:
        raise CaptureError("capture_format_unknown", f"{capture}: neither a zip archive nor an MP4/MOV video")
    return capture_format


class ApiError(Exception):
    """The API answered with an error status; ``code`` and ``message`` come from its JSON body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass
class ReconFlowClient:
    api_url: str
    token: str | None = None
    dev_identity: str | None = None
    settings: ClientSettings = field(default_factory=ClientSettings)
    session: requests.Session = field(default_factory=requests.Session)

    @classmethod
    def from_env(cls, api_url: str | None = None, token: str | None = None) -> ReconFlowClient:
        """``api_url``/``token`` when given, else ``RECONFLOW_API_URL``/``RECONFLOW_TOKEN``."""
        url = api_url or os.environ.get(API_URL_ENV)
        if not url:
            raise ValueError(f"no API URL: pass --api-url or set {API_URL_ENV}")
        return cls(api_url=url, token=token or os.environ.get(TOKEN_ENV) or None)

    # -- raw requests ---------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.dev_identity:
            headers[DEV_IDENTITY_HEADER] = self.dev_identity
        return headers

    def request(self, method: str, path: str, *, body: Any = None, params: dict | None = None) -> Any:
        """One API call; the decoded JSON body, or ``ApiError`` for any status >= 400."""
        url = self.api_url.rstrip("/") + path
        response = self.session.request(
            method,
            url,
            json=body,
            params=params,
            headers=self._headers(),
            timeout=self.settings.request_timeout_s,
        )
        payload: Any = None
        if response.content:
            try:
                payload = response.json()
            except ValueError:
                payload = None
        if response.status_code >= 400:
            error = (payload or {}).get("error") if isinstance(payload, dict) else None
            if isinstance(error, dict):
                raise ApiError(response.status_code, str(error.get("code")), str(error.get("message")))
            raise ApiError(response.status_code, "http_error", response.text[:200] or response.reason)
        return payload

    # -- the routes -----------------------------------------------------------------------

    def create_job(
        self, preset: str | None = None, name: str | None = None, capture: str | None = None
    ) -> dict[str, Any]:
        """POST /jobs: ``{"job_id", "upload": {"url", "fields" | "headers", "expires_in"}}``."""
        fields = {"preset": preset, "name": name, "capture": capture}
        body = {key: value for key, value in fields.items() if value}
        return self.request("POST", "/jobs", body=body)

    def get_job(self, job_id: str) -> dict[str, Any]:
        return self.request("GET", f"/jobs/{job_id}")

    def list_jobs(self, *, limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        params = {key: value for key, value in {"limit": limit, "cursor": cursor}.items() if value}
        return self.request("GET", "/jobs", params=params or None)

    def iter_jobs(self, *, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Every job of the caller, newest first, following the pagination cursor."""
        cursor: str | None = None
        while True:
            page = self.list_jobs(limit=limit, cursor=cursor)
            yield from page.get("jobs", [])
            cursor = page.get("next_cursor") or page.get("cursor")
            if not cursor:
                return

    def request_cancel(self, job_id: str) -> dict[str, Any]:
        """POST /jobs/{id}/cancel: ``{"status", "token", "expires_at"}``."""
        return self.request("POST", f"/jobs/{job_id}/cancel")

    def confirm_cancel(self, job_id: str, token: str) -> dict[str, Any]:
        return self.request("POST", f"/jobs/{job_id}/cancel/confirm", body={"token": token})

    # -- transfers ------------------------------------------------------------------------

    def upload(self, upload: dict[str, Any], capture: Path, capture_format: str = ZIP) -> None:
        """Send ``capture`` with the presigned upload the API handed out (POST form or PUT)."""
        url = upload["url"]
        with capture.open("rb") as stream:
            if "fields" in upload:
                files = {"file": (capture.name, stream, CONTENT_TYPES[capture_format])}
                response = requests.post(
                    url, data=upload["fields"], files=files, timeout=self.settings.transfer_timeout_s
                )
            else:
                response = requests.put(
                    url,
                    data=stream,
                    headers=upload.get("headers") or {},
                    timeout=self.settings.transfer_timeout_s,
                )
        if response.status_code >= 300:
            raise ApiError(response.status_code, "upload_failed", response.text[:300])

    def submit(self, capture: Path, preset: str | None = None, name: str | None = None) -> str:
        """Check the capture, create a job and upload it; returns the job id.

        A missing or unusable file raises ``CaptureError`` before any job exists.
        """
        capture_format = check_capture(capture)
        created = self.create_job(preset=preset, name=name or capture.stem, capture=capture_format)
        self.upload(created["upload"], capture, capture_format)
        return created["job_id"]

    def download(self, job: dict[str, Any], directory: Path) -> list[Path]:
        """Save every output link of a SUCCEEDED job under ``directory``; returns the files."""
        links = output_links(job)
        if not links:
            raise ApiError(409, "no_outputs", f"job {job.get('job_id')} has no outputs ({job.get('status')})")
        directory.mkdir(parents=True, exist_ok=True)
        saved: list[Path] = []
        for name, url in sorted(links.items()):
            target = directory / Path(name).name  # never trust a name to stay inside the folder
            with requests.get(url, stream=True, timeout=self.settings.transfer_timeout_s) as response:
                if response.status_code >= 300:
                    raise ApiError(response.status_code, "download_failed", f"{name}: {response.text[:200]}")
                with target.open("wb") as out:
                    for chunk in response.iter_content(self.settings.download_chunk_bytes):
                        out.write(chunk)
            saved.append(target)
        return saved


def output_links(job: dict[str, Any]) -> dict[str, str]:
    """``{file name: presigned URL}`` from a job body (``outputs`` or ``downloads``, a dict or a list)."""
    for key in ("outputs", "downloads", "links"):
        value = job.get(key)
        if isinstance(value, dict):
            return {str(name): str(url) for name, url in value.items() if isinstance(url, str)}
        if isinstance(value, list):
            links: dict[str, str] = {}
            for entry in value:
                if isinstance(entry, dict) and "url" in entry:
                    links[str(entry.get("name") or entry.get("file") or Path(entry["url"]).name)] = entry[
                        "url"
                    ]
            return links
    return {}
