"""The local pipeline and the command line: stages in order, progress, outputs, exit codes."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import replace

import numpy as np
import pytest
import torch
import trimesh
from capture_fixtures import capture_truth, make_capture, zip_with
from PIL import Image

from gpu_container import cli
from gpu_container.capture import synthetic
from gpu_container.engine import hull, pipeline, reconstruct
from gpu_container.engine.context import CaptureError, StageCancelled
from gpu_container.engine.scene import Scene

STAGES = ["validate", "preprocess", "hull", "reconstruct", "mesh", "export"]


@pytest.fixture
def tiny_grids(monkeypatch):
    """Draft with coarse grids and few optimiser steps, so a whole run fits a unit test."""
    monkeypatch.setitem(hull.PRESET_PARAMS, "draft", hull.HullParams(resolution=40, coarse_resolution=20))
    tiny = replace(
        reconstruct.PRESET_PARAMS["draft"], resolutions=(40,), iterations=(40,), rays_per_batch=512
    )
    monkeypatch.setitem(reconstruct.PRESET_PARAMS, "draft", tiny)


def test_local_command_runs_every_stage_into_the_job_folder(tmp_path, tiny_grids, capsys):
    world = np.array(
        [[0.0, -0.3, 0.0, 2.0], [0.3, 0.0, 0.0, -1.0], [0.0, 0.0, 0.3, 0.5], [0.0, 0.0, 0.0, 1.0]]
    )
    capture = make_capture(tmp_path, obj="sphere", views=12, size=48, world_transform=world)
    job_dir = tmp_path / "job"

    code = cli.main(["local", str(capture), "--out", str(job_dir), "--preset", "draft", "--device", "cpu"])

    assert code == cli.EXIT_OK
    assert sorted(path.name for path in (job_dir / "output").iterdir()) == sorted(
        [
            "model.glb",
            "model.mtl",
            "model.obj",
            "model.png",
            "model.ply",
            "preview.png",
            "cameras.json",
            "report.json",
        ]
    )
    assert sorted(path.parent.name for path in (job_dir / "work").glob("*/stage.json")) == sorted(STAGES)
    report = json.loads((job_dir / "output" / "report.json").read_text())
    assert list(report["seconds"]) == [*STAGES, "total"]
    assert report["grid"] == {"hull": 40, "reconstruct": 40}
    assert report["holdout"]["views"] >= 1
    assert report["holdout"]["mask_iou"] > 0.8
    truth = capture_truth("sphere", views=12, size=48, world_transform=world).mesh_world
    model = trimesh.load(job_dir / "output" / "model.ply", process=False)
    extent = float(np.max(truth.extents))
    np.testing.assert_allclose(model.bounds, truth.bounds, atol=0.1 * extent)  # in world coordinates
    assert "faces; outputs in" in capsys.readouterr().out


def _scrambled(files: dict[str, bytes], frames: list[int]) -> dict[str, bytes]:
    """The capture with the given frames replaced by noise under a random silhouette."""
    changed = dict(files)
    rng = np.random.default_rng(5)
    for frame in frames:
        name = f"images/r_{frame:03d}.png"
        size = Image.open(io.BytesIO(files[name])).size
        rgba = rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8)
        rgba[..., 3] = np.where(rng.random((size[1], size[0])) < 0.3, 255, 0)
        buffer = io.BytesIO()
        Image.fromarray(rgba).save(buffer, format="PNG")
        changed[name] = buffer.getvalue()
    return changed


def test_held_out_views_never_reach_the_shaping_stages(tmp_path, tiny_grids):
    # The same capture twice, the second with its held-out frames replaced by noise: the box, the
    # hull, the field, the mesh and its texture are the same; only the held-out figures differ.
    files = synthetic.capture_files(capture_truth("sphere", views=12, size=48))
    jobs = []
    for name, capture_files in (("clean", files), ("scrambled", _scrambled(files, [4]))):
        job_dir = tmp_path / name
        pipeline.prepare_job_folder(zip_with(tmp_path, capture_files, name=f"{name}.zip"), job_dir)
        report = pipeline.run_all(job_dir, preset="draft", device=torch.device("cpu"), seed=0)
        assert report["views"]["held_out"] == 1
        jobs.append((job_dir, report))
    (clean, clean_report), (scrambled, scrambled_report) = jobs
    assert Scene.load(scrambled / "work" / "preprocess").holdout.tolist() == [4]
    for stage, name in [("preprocess", "scene.npz"), ("hull", "hull.npz"), ("reconstruct", "field.npz")]:
        with (
            np.load(clean / "work" / stage / name) as first,
            np.load(scrambled / "work" / stage / name) as second,
        ):
            for key in first.files:
                if key not in ("images", "masks"):  # the scene keeps every view's pixels
                    np.testing.assert_array_equal(first[key], second[key], err_msg=f"{stage}: {key}")
    for name in ("mesh.ply", "texture.png", "texture_uv.npy"):
        assert (clean / "work" / "mesh" / name).read_bytes() == (
            scrambled / "work" / "mesh" / name
        ).read_bytes()
    assert clean_report["holdout"]["mask_iou"] > 0.8
    assert scrambled_report["holdout"]["mask_iou"] < 0.6  # the held-out figures do see the change


def fake_stage(name, calls, fail=None):
    def run(ctx):
        calls.append((name, ctx.preset, ctx.seed, str(ctx.device)))
        ctx.on_progress(0.5, f"{name} half way")
        if fail is not None:
            raise fail
        if name == "export":
            (ctx.output_dir / "report.json").write_text(json.dumps({"preset": ctx.preset}))
        return {"stage": name}

    return run


def test_run_all_runs_the_stages_in_order_with_their_progress(tmp_path, monkeypatch):
    calls, progress = [], []
    monkeypatch.setattr(pipeline, "STAGE_RUNNERS", {name: fake_stage(name, calls) for name in STAGES})

    report = pipeline.run_all(
        tmp_path, preset="high", device=None, seed=7, on_progress=lambda *event: progress.append(event)
    )

    assert report == {"preset": "high"}
    assert [call[0] for call in calls] == STAGES
    assert {call[1:3] for call in calls} == {("high", 7)}
    assert progress[:3] == [
        ("validate", 0.0, "starting"),
        ("validate", 0.5, "validate half way"),
        ("validate", 1.0, "done"),
    ]
    assert [event[0] for event in progress] == [stage for stage in STAGES for _ in range(3)]


@pytest.mark.parametrize("error", [CaptureError("zip_slip", "bad path"), StageCancelled("stop requested")])
def test_run_all_stops_at_the_failing_stage(tmp_path, monkeypatch, error):
    calls = []
    runners = {name: fake_stage(name, calls, fail=error if name == "hull" else None) for name in STAGES}
    monkeypatch.setattr(pipeline, "STAGE_RUNNERS", runners)

    with pytest.raises(type(error)):
        pipeline.run_all(tmp_path, preset="draft")

    assert [call[0] for call in calls] == ["validate", "preprocess", "hull"]


def test_refused_capture_exits_with_its_code(tmp_path, capsys):
    capture = zip_with(tmp_path, {"transforms.json": b"{not json"})

    code = cli.main(["local", str(capture), "--out", str(tmp_path / "job"), "--device", "cpu"])

    assert code == cli.EXIT_BAD_CAPTURE
    assert "capture refused" in capsys.readouterr().err
    assert not (tmp_path / "job" / "output" / "report.json").exists()


def test_job_folder_is_laid_out_from_a_folder_capture(tmp_path):
    folder = tmp_path / "my_capture"
    (folder / "images").mkdir(parents=True)
    (folder / "transforms.json").write_text("{}")
    (folder / "images" / "r_000.png").write_bytes(b"png")
    job_dir = tmp_path / "job"
    (job_dir / "output").mkdir(parents=True)
    (job_dir / "output" / "stale.txt").write_text("from an earlier run")
    (job_dir / "notes.txt").write_text("kept")

    zipped = pipeline.prepare_job_folder(folder, job_dir)

    assert zipped == job_dir / "input" / "my_capture.zip"
    with zipfile.ZipFile(zipped) as archive:
        assert sorted(archive.namelist()) == ["images/r_000.png", "transforms.json"]
    assert not (job_dir / "output").exists()
    assert (job_dir / "notes.txt").read_text() == "kept"


def test_job_folder_takes_a_zip_as_it_is(tmp_path):
    capture = zip_with(tmp_path, {"transforms.json": b"{}"}, name="scan.zip")

    zipped = pipeline.prepare_job_folder(capture, tmp_path / "job")

    assert zipped.read_bytes() == capture.read_bytes()
    assert [path.name for path in (tmp_path / "job" / "input").iterdir()] == ["scan.zip"]


def test_sample_command_writes_a_capture(tmp_path, capsys):
    target = tmp_path / "sample.zip"

    code = cli.main(["sample", str(target), "--views", "4", "--size", "32"])

    assert code == cli.EXIT_OK
    with zipfile.ZipFile(target) as archive:
        names = archive.namelist()
        transforms = json.loads(archive.read("transforms.json"))
    assert len(transforms["frames"]) == 4
    assert len(names) == 5
    assert "4 views of 32x32" in capsys.readouterr().out


def test_help_lists_local_sample_and_the_stage_runner(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])

    text = capsys.readouterr().out
    for command in ["local", "sample", *STAGES, "run-all"]:
        assert command in text


def test_a_capture_inside_the_job_folder_is_refused_before_anything_is_cleared(tmp_path, capsys):
    job_dir = tmp_path / "job"
    capture = zip_with(job_dir / "input", {"transforms.json": b"{}"})

    code = cli.main(["local", str(capture), "--out", str(job_dir)])

    assert code == cli.EXIT_USAGE
    assert capture.exists()
    assert "which a run clears" in capsys.readouterr().err


def test_a_missing_capture_is_reported(tmp_path, capsys):
    code = cli.main(["local", str(tmp_path / "nowhere.zip"), "--out", str(tmp_path / "job")])

    assert code == cli.EXIT_USAGE
    assert "capture not found" in capsys.readouterr().err
