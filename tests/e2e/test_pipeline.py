"""The pipeline end to end, through the HTTP API and the CLI of the local stack.

Jobs run concurrently: each test starts its job from a module fixture at first use, and the
heavy ones (a whole job, a cancelled job) are started together so the module stays short.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from jobstate.layout import OUTPUT_FILES
from reconflow.cli import ExitCode
from reconflow.cli import main as reconflow_main
from reconflow.client import ApiError, ReconFlowClient
from reconflow.local.probe import JobObserver, wait_until
from reconflow.local.stack import LocalStack

STAGES = ["validate", "preprocess", "hull", "reconstruct", "mesh", "export"]
JOB_TIMEOUT_S = 300  # only bounds the waiting; a tiny job takes about a minute here
# Confirm -> CANCELLED as the API reports it: the stop (the integration tests hold it to 2 s),
# the Batch poll (0.5 s), the state machine's cleanup task, the purge.
CANCELLED_WITHIN_S = 15.0


def start_job(client: ReconFlowClient, capture: Path, name: str) -> JobObserver:
    """Create the job, start watching it (so CREATED is seen), then upload the capture."""
    created = client.create_job(preset="draft", name=name)
    observer = JobObserver(client, created["job_id"]).start()
    wait_until(lambda: observer.observations, timeout_s=10)
    client.upload(created["upload"], capture)
    return observer


@dataclass
class CancelDuringReconstruct:
    """Cancels a job with the CLI as soon as the API shows it in ``reconstruct``, on a thread."""

    api_url: str
    observer: JobObserver
    confirmed_at: float | None = None
    exit_code: int | None = None

    def _run(self) -> None:
        wait_until(
            lambda: self.observer.first(lambda seen: seen.stage == "reconstruct"), 150, interval_s=0.05
        )
        self.confirmed_at = time.time()
        self.exit_code = reconflow_main(["--api-url", self.api_url, "cancel", self.observer.job_id, "--yes"])

    def start(self) -> CancelDuringReconstruct:
        threading.Thread(target=self._run, daemon=True).start()
        return self


@pytest.fixture(scope="module")
def jobs(
    stack: LocalStack, client: ReconFlowClient, capture: Path, bad_capture: Path
) -> dict[str, JobObserver]:
    """Three jobs started at once: one left to finish, one cancelled in ``reconstruct``, one bad capture."""
    return {
        "finishing": start_job(client, capture, "finishing"),
        "cancelled": start_job(client, capture, "cancelled"),
        "bad": start_job(client, bad_capture, "bad"),
    }


@pytest.fixture(scope="module")
def cancelling(stack: LocalStack, jobs: dict[str, JobObserver]) -> CancelDuringReconstruct:
    return CancelDuringReconstruct(stack.api_url, jobs["cancelled"]).start()


def _objects_under(stack: LocalStack, prefix: str) -> list[str]:
    s3 = stack.client("s3")
    bucket = stack.resource("DataBucket")  # the console has a bucket of its own
    listing = s3.list_object_versions(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for item in listing.get("Versions", []) + listing.get("DeleteMarkers", [])]


def test_unconfirmed_cancel_expires_and_the_job_still_finishes(
    client: ReconFlowClient,
    jobs: dict[str, JobObserver],
    cancelling: CancelDuringReconstruct,
    cancel_window_s: int,
) -> None:
    observer = jobs["finishing"]
    wait_until(lambda: observer.first(lambda seen: seen.status in ("QUEUED", "RUNNING")), timeout_s=60)
    request = client.request_cancel(observer.job_id)
    time.sleep(cancel_window_s + 1)
    with pytest.raises(ApiError) as refused:
        client.confirm_cancel(observer.job_id, request["token"])
    assert refused.value.status == 409
    assert observer.wait(JOB_TIMEOUT_S)["status"] == "SUCCEEDED"


def test_job_goes_through_all_six_stages_to_succeeded_with_rising_progress(
    jobs: dict[str, JobObserver],
) -> None:
    observer = jobs["finishing"]
    final = observer.wait(JOB_TIMEOUT_S)
    assert final["status"] == "SUCCEEDED", final.get("error")
    assert observer.statuses() == ["CREATED", "QUEUED", "RUNNING", "SUCCEEDED"]
    assert observer.stages() == STAGES
    progress = [seen.progress for seen in observer.observations]
    assert progress == sorted(progress)
    assert len(set(progress)) >= len(STAGES)
    assert progress[-1] == 100.0
    assert {"model.glb", "model.obj", "model.ply", "preview.png", "report.json"} <= set(final["downloads"])
    assert set(final["downloads"]) <= set(OUTPUT_FILES)  # what DESIGN.md's layout says export writes


def test_outputs_download_with_the_cli(
    stack: LocalStack, jobs: dict[str, JobObserver], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    observer = jobs["finishing"]
    assert observer.wait(JOB_TIMEOUT_S)["status"] == "SUCCEEDED"
    monkeypatch.setenv("RECONFLOW_API_URL", stack.api_url)
    assert reconflow_main(["download", observer.job_id, str(tmp_path)]) == 0
    glb = (tmp_path / "model.glb").read_bytes()
    assert glb[:4] == b"glTF"
    assert (tmp_path / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"v " in (tmp_path / "model.obj").read_bytes()


def test_cancel_confirmed_during_reconstruct_stops_purges_and_ends_cancelled(
    stack: LocalStack, jobs: dict[str, JobObserver], cancelling: CancelDuringReconstruct
) -> None:
    observer = jobs["cancelled"]
    final = observer.wait(JOB_TIMEOUT_S)
    assert cancelling.exit_code == 0
    assert final["status"] == "CANCELLED"
    cancelled = observer.first(lambda seen: seen.status == "CANCELLED")
    assert cancelled is not None
    assert cancelling.confirmed_at is not None
    assert cancelled.at - cancelling.confirmed_at < CANCELLED_WITHIN_S
    assert _objects_under(stack, f"jobs/{observer.job_id}/") == []
    assert "reconstruct" in observer.stages()
    assert "mesh" not in observer.stages()


def test_cancel_asks_for_confirmation_and_no_keeps_the_job(
    stack: LocalStack, client: ReconFlowClient, capture: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = client.create_job(preset="draft", name="kept")["job_id"]
    monkeypatch.setenv("RECONFLOW_API_URL", stack.api_url)
    # A CREATED job cannot be cancelled (nothing runs yet): the API says 409, the CLI exits 2.
    assert reconflow_main(["cancel", job_id, "--yes"]) == 2
    answers = iter(["n"])
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    running = ReconFlowClient(api_url=stack.api_url).create_job(preset="draft", name="asked")
    client.upload(running["upload"], capture)
    wait_until(lambda: client.get_job(running["job_id"])["status"] in ("QUEUED", "RUNNING"), timeout_s=30)
    assert reconflow_main(["cancel", running["job_id"]]) == 1
    assert client.get_job(running["job_id"])["status"] in ("QUEUED", "RUNNING")
    assert reconflow_main(["cancel", running["job_id"], "--yes"]) == 0
    assert JobObserver(client, running["job_id"]).start().wait(60)["status"] == "CANCELLED"


def test_bad_capture_ends_failed_with_a_readable_reason(jobs: dict[str, JobObserver]) -> None:
    final = jobs["bad"].wait(60)
    assert final["status"] == "FAILED"
    assert final["error"]["code"]
    assert "transforms.json" in final["error"]["message"]


def test_status_and_list_show_the_callers_jobs(
    stack: LocalStack,
    jobs: dict[str, JobObserver],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.setenv("RECONFLOW_API_URL", stack.api_url)
    job_id = jobs["bad"].job_id
    jobs["bad"].wait(60)
    assert reconflow_main(["status", job_id]) == ExitCode.JOB_FAILED
    assert "FAILED" in capsys.readouterr().out
    assert reconflow_main(["list"]) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]}
    assert job_id in listed
    other = ReconFlowClient(api_url=stack.api_url, dev_identity="someone-else")
    with pytest.raises(ApiError) as hidden:
        other.get_job(job_id)
    assert hidden.value.status == 404


def test_a_zero_byte_upload_is_refused_as_s3_refuses_it(
    stack: LocalStack, client: ReconFlowClient, tmp_path: Path
) -> None:
    created = client.create_job(preset="draft", name="empty")
    empty = tmp_path / "empty.zip"
    empty.write_bytes(b"")
    with pytest.raises(ApiError) as refused:
        client.upload(created["upload"], empty)
    assert refused.value.status == 400
    assert "EntityTooSmall" in refused.value.message
    time.sleep(2)  # an accepted upload would have queued the job by now
    assert client.get_job(created["job_id"])["status"] == "CREATED"
    assert _objects_under(stack, f"jobs/{created['job_id']}/") == []
