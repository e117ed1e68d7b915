"""The real engine stages through the runner and the command line, on a small generated capture."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from capture_fixtures import make_capture, zip_with

from gpu_container import cli
from gpu_container.runner import ExitCode
from jobstate import layout
from jobstate.jobs import FAILED, RUNNING

from .conftest import keys_under, put_capture


@pytest.fixture
def restore_logging():
    """The command configures the root logger; leave it as the test found it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_validate_and_preprocess_hand_their_outputs_on_through_s3(
    make_runner, store, s3, bucket, job_id, tmp_path
):
    put_capture(s3, bucket, job_id, make_capture(tmp_path, obj="sphere", views=12, size=48).read_bytes())
    runner = make_runner()

    assert runner.run("validate", job_id) == ExitCode.OK
    assert runner.run("preprocess", job_id) == ExitCode.OK

    manifest_key = layout.work_key(job_id, "validate", "manifest.json")
    assert keys_under(s3, bucket, layout.work_prefix(job_id, "validate")) == sorted(
        [manifest_key, layout.work_key(job_id, "validate", "stage.json")]
    )
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
    assert len(manifest["frames"]) == 12
    scene_key = layout.work_key(job_id, "preprocess", "scene.npz")
    assert scene_key in keys_under(s3, bucket, layout.work_prefix(job_id, "preprocess"))
    scene_path = tmp_path / "scene.npz"
    s3.download_file(bucket, scene_key, str(scene_path))
    with np.load(scene_path) as scene:
        assert scene["images"].shape[0] == 12
    job = store.get(job_id, consistent=True)
    assert (job.status, job.stage, job.progress) == (RUNNING, "preprocess", 25.0)
    progress = [value for value, _, written in store.progress_writes if written]
    assert progress == sorted(progress)


def test_a_corrupt_capture_fails_validate_with_exit_2_and_the_code_on_the_job(
    make_runner, store, s3, bucket, job_id
):
    put_capture(s3, bucket, job_id, b"this is not a zip archive")

    assert make_runner().run("validate", job_id) == ExitCode.BAD_CAPTURE

    job = store.get(job_id, consistent=True)
    assert job.status == FAILED
    assert job.error["code"] == "not_a_zip"
    assert "capture.zip" in job.error["message"]
    assert keys_under(s3, bucket, layout.work_prefix(job_id, "validate")) == []


def test_the_stage_command_runs_a_stage_against_the_table_and_bucket(
    store, s3, bucket, job_id, tmp_path, monkeypatch, capsys, restore_logging
):
    monkeypatch.setenv("JOB_WORK_ROOT", str(tmp_path))
    capture = zip_with(tmp_path, {"transforms.json": b'{"frames": []}'})
    put_capture(s3, bucket, job_id, capture.read_bytes())

    code = cli.main(["validate", "--job-id", job_id, "--device", "cpu"])

    assert code == ExitCode.BAD_CAPTURE
    assert store.get(job_id, consistent=True).error["code"] in {"too_few_views", "malformed_transforms"}
    log_lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    failed = [line for line in log_lines if line["message"] == "stage failed"]
    assert [(line["job_id"], line["stage"]) for line in failed] == [(job_id, "validate")]


def test_the_stage_command_refuses_a_malformed_job_id(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["hull", "--job-id", "../../etc"])

    assert exit_info.value.code == 2
    assert "lower-case UUID4" in capsys.readouterr().err
