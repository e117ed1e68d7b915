"""A walk-around video through the whole service: ``reconflow submit walkaround.mp4`` signs the
upload for ``input/capture.mp4``, the stages pick frames, estimate the cameras (structure from
motion) and find the object, and the job ends with a textured model and the cameras it used."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from jobstate.settings import Settings
from reconflow.cli import main as reconflow_main
from reconflow.cli import make_sample_capture
from reconflow.client import ReconFlowClient
from reconflow.local.stack import LocalStack

JOB_ID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\b")
# A short walk around the textured bowl on its table: 48 frames of 160 x 160.
VIDEO_ARGS = ["--form", "video", "--object", "bowl", "--seconds", "8", "--fps", "6", "--size", "160"]


@pytest.fixture(scope="module")
def walkaround(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sample_capture(tmp_path_factory.mktemp("video") / "walkaround.mp4", VIDEO_ARGS)


def test_a_video_submitted_with_the_cli_ends_with_a_model_and_its_estimated_cameras(
    stack: LocalStack,
    client: ReconFlowClient,
    walkaround: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RECONFLOW_API_URL", stack.api_url)
    code = reconflow_main(["submit", str(walkaround), "--preset", "draft", "--name", "walkaround", "--watch"])
    printed = capsys.readouterr().out

    (job_id,) = set(JOB_ID.findall(printed))
    final = client.get_job(job_id)
    assert code == 0, printed  # the CLI watched the job to its end
    assert final["status"] == "SUCCEEDED", final.get("error")
    listed = stack.client("s3").list_objects_v2(Bucket=Settings().bucket_name, Prefix=f"jobs/{job_id}/input/")
    assert [item["Key"] for item in listed["Contents"]] == [f"jobs/{job_id}/input/capture.mp4"]
    assert {"model.glb", "model.obj", "model.png", "cameras.json", "report.json"} <= set(final["downloads"])
    client.download(final, tmp_path)
    cameras = json.loads((tmp_path / "cameras.json").read_text())
    assert (cameras["frame"], cameras["cameras"]) == ("upright", "estimated")
    used = [frame for frame in cameras["frames"] if frame["status"] == "used"]
    assert len(used) >= 10
    assert all(len(frame["transform_matrix"]) == 4 for frame in used)
    assert all(frame["file_path"] for frame in cameras["frames"])
