"""Stage 2 (preprocess): resized images, scaled intrinsics, and a box found from the silhouettes."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import numpy as np
import pytest
import trimesh
from capture_fixtures import OFFSET_WORLD_TRANSFORM, capture_files, capture_truth, make_job, zip_with
from PIL import Image
from scipy import ndimage

from gpu_container.capture import synthetic
from gpu_container.engine import imageio, preprocess, validate
from gpu_container.engine.context import CaptureError, StageCancelled, StageContext
from gpu_container.engine.scene import Scene

VIEWS = 12
SIZE = 48


def _preprocessed(
    job, params: preprocess.PreprocessParams | None = None, preset: str = "draft"
) -> tuple[Scene, dict]:
    ctx = StageContext(job, preset=preset)
    validate.run(ctx)
    figures = preprocess.run(ctx, params)
    recorded = json.loads((job / "work" / "preprocess" / "stage.json").read_text())
    assert recorded == figures
    return Scene.load(job / "work" / "preprocess"), recorded


@pytest.fixture(scope="module")
def sphere_run(tmp_path_factory) -> tuple[Scene, dict]:
    """One preprocessed capture (the sphere, placed off the world origin) shared by several tests."""
    tmp_path = tmp_path_factory.mktemp("sphere")
    return _preprocessed(
        make_job(tmp_path, obj="sphere", views=VIEWS, size=SIZE, world_transform=OFFSET_WORLD_TRANSFORM)
    )


def _gt_in_box(scene: Scene, truth: synthetic.RenderedCapture) -> np.ndarray:
    return trimesh.transform_points(truth.mesh_world.vertices, np.linalg.inv(scene.box_to_world))


@pytest.mark.parametrize(
    ("obj", "world_transform"),
    [("concave", None), ("spot", OFFSET_WORLD_TRANSFORM)],
)
def test_box_from_silhouettes_holds_and_fills_with_the_object(tmp_path, obj, world_transform):
    job = make_job(tmp_path, obj=obj, views=VIEWS, size=SIZE, world_transform=world_transform)
    scene, figures = _preprocessed(job)
    inside = _gt_in_box(scene, capture_truth(obj, views=VIEWS, size=SIZE, world_transform=world_transform))
    assert np.abs(inside).max() <= 1.05
    assert (inside.max(axis=0) - inside.min(axis=0)).max() >= 1.5  # the longest side fills 75 % or more
    assert figures["object_extent_in_box"][0] <= 2.0


def test_object_projects_inside_the_scene_masks(tmp_path):
    job = make_job(tmp_path, obj="spot", views=VIEWS, size=SIZE, world_transform=OFFSET_WORLD_TRANSFORM)
    params = replace(preprocess.params_for("draft"), long_side=SIZE // 2)
    scene, _ = _preprocessed(job, params)
    truth = capture_truth("spot", views=VIEWS, size=SIZE, world_transform=OFFSET_WORLD_TRANSFORM)
    surface = trimesh.transform_points(
        truth.mesh_world.sample(1500, seed=2), np.linalg.inv(scene.box_to_world)
    )
    for view in range(scene.num_views):
        cam = scene.cam_to_box[view]
        local = (surface - cam[:3, 3]) @ cam[:3, :3]  # camera coordinates, OpenGL
        pixels = (scene.intrinsics[view] @ (local * [1, -1, -1]).T).T
        cols, rows = np.floor(pixels[:, :2] / pixels[:, 2:]).astype(int).T
        covered = ndimage.binary_dilation(scene.masks[view] > 0, iterations=1)
        assert covered[rows, cols].all()


def test_cameras_in_the_box_stay_rigid_and_agree_with_the_world(sphere_run):
    scene, _ = sphere_run
    truth = capture_truth("sphere", views=VIEWS, size=SIZE, world_transform=OFFSET_WORLD_TRANSFORM)
    rotations = scene.cam_to_box[:, :3, :3]
    np.testing.assert_allclose(rotations, truth.cam_to_world[:, :3, :3])
    np.testing.assert_allclose(
        trimesh.transform_points(scene.cam_to_box[:, :3, 3], scene.box_to_world), truth.cam_to_world[:, :3, 3]
    )
    scale = scene.box_to_world[:3, :3]
    np.testing.assert_allclose(scale, scale[0, 0] * np.eye(3))
    inside = _gt_in_box(scene, truth)
    assert np.abs(inside).max() <= 1.05
    assert (inside.max(axis=0) - inside.min(axis=0)).max() >= 1.5


def test_images_shrink_to_the_long_side_with_intrinsics_and_masks_scaled(tmp_path):
    job = make_job(tmp_path, obj="concave", views=VIEWS, size=SIZE)
    params = replace(preprocess.params_for("draft"), long_side=SIZE // 2)
    scene, figures = _preprocessed(job, params)
    truth = capture_truth("concave", views=VIEWS, size=SIZE)
    assert scene.image_size == (SIZE // 2, SIZE // 2)
    assert figures["resize_factor"] == 0.5
    np.testing.assert_allclose(
        scene.intrinsics[0], [[truth.fl_x / 2, 0, SIZE / 4], [0, truth.fl_y / 2, SIZE / 4], [0, 0, 1]]
    )
    # Box filtering = the mean of each 2x2 block of the original alpha.
    block_mean = truth.rgba[..., 3].reshape(VIEWS, SIZE // 2, 2, SIZE // 2, 2).astype(float).mean(axis=(2, 4))
    assert np.abs(scene.masks.astype(float) - block_mean).max() <= 1.0
    assert scene.images.dtype == np.uint8
    assert scene.images.shape == (VIEWS, SIZE // 2, SIZE // 2, 3)


def test_small_images_are_never_upsampled(sphere_run):
    scene, _ = sphere_run  # the draft preset's long side is larger than the capture's
    truth = capture_truth("sphere", views=VIEWS, size=SIZE, world_transform=OFFSET_WORLD_TRANSFORM)
    assert scene.image_size == (SIZE, SIZE)
    np.testing.assert_array_equal(scene.masks, truth.rgba[..., 3])
    opaque = truth.rgba[..., 3] == 255
    np.testing.assert_array_equal(scene.images[opaque], truth.rgba[..., :3][opaque])


def test_resized_size_keeps_the_aspect_and_never_grows():
    assert preprocess.resized_size(1920, 1080, 256) == (256, 144)
    assert preprocess.resized_size(600, 800, 512) == (384, 512)
    assert preprocess.resized_size(100, 50, 512) == (100, 50)


def test_mask_files_are_used_for_masks(tmp_path):
    layout = synthetic.ZipLayout(image_format="jpg", separate_masks=True)
    files = capture_files("sphere", views=VIEWS, size=SIZE, zip_layout=layout)
    job = make_job(tmp_path, capture=zip_with(tmp_path, files, name="made.zip"))
    scene, _ = _preprocessed(job)
    np.testing.assert_array_equal(scene.masks, capture_truth("sphere", views=VIEWS, size=SIZE).rgba[..., 3])


def test_holdout_views_are_every_eighth_and_none_for_few_views(sphere_run):
    params = preprocess.params_for("standard")
    assert preprocess.holdout_views(7, params).tolist() == []
    assert preprocess.holdout_views(8, params).tolist() == [4]
    assert preprocess.holdout_views(20, params).tolist() == [4, 12]
    scene, figures = sphere_run
    assert scene.holdout.tolist() == [4]
    assert figures["holdout_views"] == 1


def test_preprocess_is_deterministic(tmp_path, sphere_run):
    first, _ = sphere_run
    job = make_job(tmp_path, obj="sphere", views=VIEWS, size=SIZE, world_transform=OFFSET_WORLD_TRANSFORM)
    second, _ = _preprocessed(job)
    for field in ("images", "masks", "intrinsics", "cam_to_box", "box_to_world", "holdout"):
        np.testing.assert_array_equal(getattr(first, field), getattr(second, field))
    assert first.names == second.names


def _with_alpha(files: dict[str, bytes], alpha: int) -> dict[str, bytes]:
    changed = dict(files)
    for name, data in files.items():
        if name.endswith(".png"):
            rgba = np.array(Image.open(io.BytesIO(data)))
            rgba[..., 3] = alpha
            buffer = io.BytesIO()
            Image.fromarray(rgba).save(buffer, format="PNG")
            changed[name] = buffer.getvalue()
    return changed


# alpha 0 everywhere: masks that hold no object; 255 everywhere: no mask at all (exporters write opaque
# RGBA), so the capture is a posed one whose masks are to be found, and a sphere floating in black with
# no support under it gives the estimation nothing to stand an object on.
@pytest.mark.parametrize(("alpha", "code"), [(0, "empty_silhouette_hull"), (255, "object_not_found")])
def test_masks_that_bound_nothing_are_refused(tmp_path, alpha, code):
    files = _with_alpha(capture_files("sphere", views=VIEWS, size=SIZE), alpha)
    job = make_job(tmp_path, capture=zip_with(tmp_path, files, name="made.zip"))
    with pytest.raises(CaptureError) as caught:
        _preprocessed(job)
    assert caught.value.code == code


def test_preprocess_without_manifest_is_refused(tmp_path):
    job = make_job(tmp_path, obj="sphere", views=VIEWS, size=SIZE)
    with pytest.raises(CaptureError) as caught:
        preprocess.run(StageContext(job))
    assert caught.value.code == "missing_manifest"


def test_preprocess_stops_without_writing_the_scene(tmp_path):
    job = make_job(tmp_path, obj="sphere", views=VIEWS, size=SIZE)
    validate.run(StageContext(job))
    with pytest.raises(StageCancelled):
        preprocess.run(StageContext(job, should_stop=lambda: True))
    assert not (job / "work" / "preprocess" / "scene.npz").exists()


def test_stage_json_records_the_figures(sphere_run):
    scene, figures = sphere_run
    assert figures["stage"] == "preprocess"
    assert figures["views"] == VIEWS
    assert figures["box_to_world"] == scene.box_to_world.tolist()
    assert figures["width"] == figures["height"] == SIZE


def _distorted(rgba: np.ndarray, fl: float, centre: float, coefficients: dict[str, float]) -> np.ndarray:
    """What a lens with ``coefficients`` would have photographed: each distorted pixel looks up its
    undistorted position (fixed-point inverse of the distortion) in the pinhole image."""
    size = rgba.shape[0]
    v, u = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5, indexing="ij")
    x_d, y_d = (u - centre) / fl, (v - centre) / fl
    x, y = x_d.copy(), y_d.copy()
    for _ in range(20):
        x_f, y_f = imageio.distort_normalised(x, y, coefficients)
        x, y = x - (x_f - x_d), y - (y_f - y_d)
    coords = np.stack([fl * y + centre - 0.5, fl * x + centre - 0.5])
    planes = [ndimage.map_coordinates(rgba[..., c].astype(float), coords, order=1) for c in range(4)]
    return np.clip(np.stack(planes, axis=-1) + 0.5, 0, 255).astype(np.uint8)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_lens_distortion_is_undone(tmp_path):
    coefficients = {"k1": -0.8, "k2": 0.3, "p1": 0.01, "p2": -0.01}
    truth = capture_truth("spot", views=VIEWS, size=SIZE)
    files = dict(capture_files("spot", views=VIEWS, size=SIZE))
    transforms = json.loads(files["transforms.json"])
    transforms.update(coefficients, camera_model="OPENCV")
    files["transforms.json"] = json.dumps(transforms).encode()
    distorted = [_distorted(rgba, truth.fl_x, truth.cx, coefficients) for rgba in truth.rgba]
    for index, rgba in enumerate(distorted):
        buffer = io.BytesIO()
        Image.fromarray(rgba).save(buffer, format="PNG")
        files[f"images/r_{index:03d}.png"] = buffer.getvalue()
    job = make_job(tmp_path, capture=zip_with(tmp_path, files, name="made.zip"))
    scene, _ = _preprocessed(job)
    original = truth.rgba[..., 3] > 127
    corrected = _iou(scene.masks > 127, original)
    uncorrected = _iou(np.stack(distorted)[..., 3] > 127, original)
    assert corrected > 0.94
    assert corrected - uncorrected > 0.05


def test_fisheye_cameras_are_refused(tmp_path):
    files = dict(capture_files("sphere", views=VIEWS, size=SIZE))
    transforms = json.loads(files["transforms.json"])
    transforms.update(camera_model="OPENCV_FISHEYE", k1=0.1)
    files["transforms.json"] = json.dumps(transforms).encode()
    job = make_job(tmp_path, capture=zip_with(tmp_path, files, name="made.zip"))
    with pytest.raises(CaptureError) as caught:
        validate.run(StageContext(job))
    assert caught.value.code == "bad_intrinsics"
    assert "fisheye" in caught.value.message


def _with_corner_blob(files: dict[str, bytes], frames: list[int]) -> dict[str, bytes]:
    """The capture with an opaque blob in the top-left corner of the given frames' images."""
    changed = dict(files)
    for frame in frames:
        name = f"images/r_{frame:03d}.png"
        rgba = np.array(Image.open(io.BytesIO(files[name])))
        rgba[:6, :6] = 255
        buffer = io.BytesIO()
        Image.fromarray(rgba).save(buffer, format="PNG")
        changed[name] = buffer.getvalue()
    return changed


def test_held_out_views_never_shape_the_box(tmp_path, sphere_run):
    reference, _ = sphere_run
    files = capture_files("sphere", views=VIEWS, size=SIZE)
    files = _with_corner_blob(files, [int(view) for view in reference.holdout])
    job = make_job(tmp_path, capture=zip_with(tmp_path, files, name="made.zip"))
    scene, figures = _preprocessed(job)
    truth = capture_truth("sphere", views=VIEWS, size=SIZE)
    expected = preprocess.silhouette_bounds(
        truth.rgba[scene.training_views, ..., 3],
        truth.cam_to_world[scene.training_views],
        scene.intrinsics[scene.training_views],
        preprocess.params_for("draft"),
        StageContext(job),
    )
    np.testing.assert_allclose(
        scene.box_to_world, preprocess.box_to_world_matrix(expected.low, expected.high, 0.05)
    )
    assert figures["warnings"] == []


def test_an_object_leaving_the_frame_is_a_warning(tmp_path):
    files = _with_corner_blob(capture_files("sphere", views=VIEWS, size=SIZE), [1])
    job = make_job(tmp_path, capture=zip_with(tmp_path, files, name="made.zip"))
    _, figures = _preprocessed(job)
    assert figures["views_leaving_frame"] == 1
    assert any("leaves the frame" in warning and "r_001" in warning for warning in figures["warnings"])


def test_a_box_that_clips_the_object_fails_the_stage(tmp_path):
    job = make_job(tmp_path, obj="sphere", views=VIEWS, size=SIZE)
    params = replace(preprocess.params_for("draft"), box_margin=-0.3)  # a box smaller than the object
    with pytest.raises(CaptureError) as caught:
        _preprocessed(job, params)
    assert caught.value.code == "object_clipped"
