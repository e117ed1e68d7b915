"""JobObserver (the local stack's job watcher for tests and benchmarks) ends its watch cleanly."""

from __future__ import annotations

from typing import Any

import pytest

from reconflow.client import ApiError
from reconflow.local.probe import JobObserver

JOB_ID = "0b6f4c2e-5d1a-4f8e-9b3c-7a2d1e6f8c90"


class Answers:
    """``get_job`` answering the given bodies in turn, then raising the given error."""

    def __init__(self, *bodies: dict[str, Any], then: Exception | None = None) -> None:
        self.bodies = list(bodies)
        self.then = then

    def get_job(self, job_id: str) -> dict[str, Any]:
        assert job_id == JOB_ID
        if self.bodies:
            return self.bodies.pop(0)
        assert self.then is not None
        raise self.then


def test_a_job_that_ends_is_returned_with_what_was_seen_on_the_way() -> None:
    client = Answers({"status": "RUNNING", "stage": "hull", "progress": 30.0}, {"status": "SUCCEEDED"})
    observer = JobObserver(client, JOB_ID, interval_s=0.001).start()  # type: ignore[arg-type]

    assert observer.wait(10)["status"] == "SUCCEEDED"
    assert observer.statuses() == ["RUNNING", "SUCCEEDED"]


def test_an_api_that_goes_away_ends_the_watch_with_its_error_not_a_thread_traceback() -> None:
    gone = ApiError(500, "internal_error", "internal error")
    client = Answers({"status": "RUNNING", "stage": "mesh", "progress": 80.0}, then=gone)
    observer = JobObserver(client, JOB_ID, interval_s=0.001).start()  # type: ignore[arg-type]

    with pytest.raises(RuntimeError, match=r"watching job .* failed") as raised:
        observer.wait(10)
    assert raised.value.__cause__ is gone
    assert observer.error is gone
