"""Cameras when absent: pycolmap in a child process, registration, failure, progress and cancel."""

from __future__ import annotations

import time

import numpy as np
import pytest
from room_fixtures import intrinsics, rotation_errors_deg, table_capture
from stop_bounds import STOPPED_MID_RUN_S

from gpu_container.capture import room
from gpu_container.engine import camera_estimation
from gpu_container.engine.context import CaptureError, StageCancelled, StageContext

PARAMS = camera_estimation.params_for("draft")


def _rigid(rng: np.random.Generator) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    matrix = np.eye(4)
    matrix[:3, :3] = q * np.sign(np.linalg.det(q))
    matrix[:3, 3] = rng.normal(size=3)
    return matrix


def test_colmap_poses_and_opengl_cameras_convert_both_ways():
    rng = np.random.default_rng(1)
    cams = np.stack([_rigid(rng) for _ in range(5)])
    back = camera_estimation.cam_to_world_gl(camera_estimation.cam_from_world_cv(cams))
    np.testing.assert_allclose(back, cams, atol=1e-12)
    # a point 2 in front of an OpenGL camera (its -Z) has OpenCV depth +2
    poses = camera_estimation.cam_from_world_cv(cams)
    ahead = cams[0, :3, 3] - 2.0 * cams[0, :3, 2]
    assert poses[0, :, :3] @ ahead + poses[0, :, 3] == pytest.approx([0.0, 0.0, 2.0])


def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(2)
    transform = _rigid(rng)
    transform[:3, :3] *= 3.5
    source = rng.normal(size=(20, 3))
    target = source @ transform[:3, :3].T + transform[:3, 3]
    np.testing.assert_allclose(camera_estimation.umeyama(source, target), transform, atol=1e-9)


@pytest.fixture(scope="module")
def photo_set(tmp_path_factory):
    """Structure from motion over the table capture's RGB views (no poses, no intrinsics)."""
    capture = table_capture()
    reports: list[tuple[float, str]] = []
    ctx = StageContext(tmp_path_factory.mktemp("job"), on_progress=lambda f, m: reports.append((f, m)))
    images = np.ascontiguousarray(capture.rgba[..., :3])
    result = camera_estimation.estimate(images, tmp_path_factory.mktemp("sfm"), PARAMS, ctx)
    return capture, result, reports


def test_a_photo_set_registers_every_view_to_within_a_degree(photo_set):
    capture, result, _ = photo_set
    assert result.registered.mean() >= 0.95
    assert result.figures["registered_views"] == int(result.registered.sum())
    assert result.figures["points"] == len(result.points) > 200
    assert 0 < result.mean_reprojection_error < 1.0
    seen = result.registered
    align = camera_estimation.umeyama(result.cam_to_world[seen, :3, 3], capture.cam_to_world[seen, :3, 3])
    aligned = result.transformed(align).cam_to_world[seen]
    truth = capture.cam_to_world[seen]
    assert rotation_errors_deg(aligned, truth).max() < 1.0
    ring = np.linalg.norm(truth[:, :3, 3] - truth[:, :3, 3].mean(axis=0), axis=1).mean()
    assert np.linalg.norm(aligned[:, :3, 3] - truth[:, :3, 3], axis=1).max() < 0.02 * ring
    focal = result.intrinsics[seen, 0, 0]
    assert focal == pytest.approx(capture.fl_x, rel=0.03)  # found, not given


def test_progress_counts_features_and_registered_views_and_only_grows(photo_set):
    capture, _, reports = photo_set
    fractions = [fraction for fraction, _ in reports]
    messages = [message for _, message in reports]
    assert fractions == sorted(fractions)
    assert fractions[0] >= 0.0
    assert fractions[-1] == 1.0
    assert f"features {capture.num_views} of {capture.num_views}" in messages
    assert "matching features" in messages
    assert any(message.startswith("views registered ") for message in messages)


def test_unrelated_photos_fail_with_how_many_registered(tmp_path):
    rng = np.random.default_rng(5)
    photos = np.stack(
        [
            np.asarray(room.noise_texture((160, 160), rng, tuple(rng.uniform(0.2, 0.8, 3)), patches=40))
            for _ in range(12)
        ]
    )
    with pytest.raises(CaptureError) as failure:
        camera_estimation.estimate(photos, tmp_path, PARAMS, StageContext(tmp_path))
    assert failure.value.code == "pose_estimation_failed"
    assert "of 12 views registered" in failure.value.message


def test_a_cancel_ends_the_child_process_mid_run(tmp_path):
    images = np.ascontiguousarray(table_capture().rgba[..., :3])
    stop_at: list[float] = []

    def should_stop() -> bool:
        return bool(stop_at)

    def on_progress(fraction: float, message: str) -> None:
        if message.startswith("features") and not stop_at:
            stop_at.append(time.monotonic())

    ctx = StageContext(tmp_path, on_progress=on_progress, should_stop=should_stop)
    with pytest.raises(StageCancelled):
        camera_estimation.estimate(images, tmp_path, PARAMS, ctx)
    assert time.monotonic() - stop_at[0] < STOPPED_MID_RUN_S
    assert not (tmp_path / "result.npz").exists()


def test_points_triangulated_from_given_cameras_lie_on_the_scene(tmp_path):
    capture = table_capture()
    images = np.ascontiguousarray(capture.rgba[..., :3])
    result = camera_estimation.triangulate(
        images, capture.cam_to_world, intrinsics(capture), tmp_path, PARAMS, StageContext(tmp_path)
    )
    assert len(result.points) > 200
    assert result.registered.all()
    np.testing.assert_array_equal(result.cam_to_world, capture.cam_to_world)
    assert result.mean_reprojection_error < 1.0
    # every observation lies in the image it was seen in
    assert (result.track_xy >= 0).all()
    assert (result.track_xy < 160).all()
