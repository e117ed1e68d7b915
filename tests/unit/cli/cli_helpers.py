"""CLI test helpers: a client whose API answers come from a script, so the CLI runs with no network.

Everything above ``request`` is the real client (``submit`` checks the capture, then creates the
job and uploads), so what the CLI does with the API is what it would do against the real one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reconflow.client import ApiError, ReconFlowClient

JOB_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"


def job(
    status: str,
    stage: str | None = None,
    stage_index: int | None = None,
    progress: float = 0.0,
    message: str = "",
    **extra: Any,
) -> dict[str, Any]:
    """A job body as GET /jobs/{job_id} answers it."""
    return {
        "job_id": extra.pop("job_id", JOB_ID),
        "status": status,
        "stage": stage,
        "stage_index": stage_index,
        "progress": progress,
        "message": message,
        "error": extra.pop("error", None),
        "name": extra.pop("name", "capture"),
        "created_at": "2026-12-01T09:00:00.000Z",
        **extra,
    }


class ScriptedApi(ReconFlowClient):
    """Answers ``METHOD /path`` from a list per route: one answer per call, the last one repeats."""

    def __init__(self, answers: dict[str, list[Any]], api_url: str = "http://api.invalid") -> None:
        super().__init__(api_url=api_url)
        self.answers = answers
        self.calls: list[tuple[str, str, Any]] = []
        self.uploads: list[Path] = []

    def request(self, method: str, path: str, *, body: Any = None, params: dict | None = None) -> Any:
        self.calls.append((method, path, body))
        queue = self.answers[f"{method} {path}"]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, ApiError):
            raise answer
        return answer

    def upload(self, upload: dict[str, Any], capture: Path, capture_format: str = "zip") -> None:
        self.uploads.append(capture)

    def routes_called(self) -> list[str]:
        return [f"{method} {path}" for method, path, _ in self.calls]
