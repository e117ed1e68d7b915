"""The synthetic capture generator: cameras, images and the zip agree with the ground truth."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import trimesh
from capture_fixtures import OFFSET_WORLD_TRANSFORM, capture_truth, fixture_mesh, make_capture
from PIL import Image
from scipy import ndimage

from gpu_container.capture import objects, synthetic


def _read_capture(path):
    """(transforms dict, {path: bytes}) of a capture zip."""
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    return json.loads(files.pop("transforms.json")), files


def _project(points: np.ndarray, cam_to_world: np.ndarray, fl: float, cx: float, cy: float) -> np.ndarray:
    """(P, 2) pixel coordinates of world points, engine-spec convention (OpenGL camera)."""
    cam = (points - cam_to_world[:3, 3]) @ cam_to_world[:3, :3]
    return np.stack([cx + fl * cam[:, 0] / -cam[:, 2], cy - fl * cam[:, 1] / -cam[:, 2]], axis=-1)


@pytest.mark.parametrize("obj", ["concave", "spot"])
def test_mesh_projected_with_written_cameras_lands_inside_alpha(tmp_path, obj):
    path = make_capture(tmp_path, obj=obj, views=8, size=48, world_transform=OFFSET_WORLD_TRANSFORM)
    truth = capture_truth(obj=obj, views=8, size=48, world_transform=OFFSET_WORLD_TRANSFORM)
    transforms, files = _read_capture(path)
    width = 48
    fl = 0.5 * width / np.tan(0.5 * transforms["camera_angle_x"])
    surface = truth.mesh_world.sample(2000, seed=1)
    for frame in transforms["frames"]:
        alpha = np.asarray(Image.open(io.BytesIO(files[frame["file_path"][2:]])))[..., 3]
        covered = ndimage.binary_dilation(alpha > 0, iterations=1)
        uv = _project(surface, np.array(frame["transform_matrix"]), fl, width / 2, width / 2)
        cols, rows = np.floor(uv).astype(int).T
        assert ((cols >= 0) & (cols < width) & (rows >= 0) & (rows < width)).all()
        assert covered[rows, cols].all()
        assert (alpha > 0).mean() > 0.08  # the object fills a fair part of the frame


def test_world_transform_moves_cameras_and_truth_but_not_images():
    plain = capture_truth(obj="concave", views=6, size=32)
    moved = capture_truth(obj="concave", views=6, size=32, world_transform=OFFSET_WORLD_TRANSFORM)
    np.testing.assert_array_equal(plain.rgba, moved.rgba)
    np.testing.assert_allclose(
        moved.cam_to_world[:, :3, :3], OFFSET_WORLD_TRANSFORM[:3, :3] / 0.3 @ plain.cam_to_world[:, :3, :3]
    )
    np.testing.assert_allclose(
        moved.mesh_world.vertices, trimesh.transform_points(plain.mesh_world.vertices, OFFSET_WORLD_TRANSFORM)
    )
    eye = trimesh.transform_points(plain.cam_to_world[:, :3, 3], OFFSET_WORLD_TRANSFORM)
    np.testing.assert_allclose(moved.cam_to_world[:, :3, 3], eye)


def test_cameras_are_rigid_and_look_at_the_object():
    truth = capture_truth(obj="sphere", views=10, size=32)
    rotations = truth.cam_to_world[:, :3, :3]
    np.testing.assert_allclose(
        rotations @ rotations.transpose(0, 2, 1), np.broadcast_to(np.eye(3), (10, 3, 3)), atol=1e-9
    )
    np.testing.assert_allclose(np.linalg.det(rotations), 1.0)
    to_centre = truth.mesh_world.bounds.mean(axis=0) - truth.cam_to_world[:, :3, 3]
    to_centre /= np.linalg.norm(to_centre, axis=1, keepdims=True)
    np.testing.assert_allclose(np.einsum("nc,nc->n", to_centre, -rotations[:, :, 2]), 1.0)


def test_hemisphere_rig_stays_above_its_lowest_elevation():
    truth = capture_truth(obj="concave", views=16, size=32)  # the bowl defaults to the hemisphere
    centre = truth.mesh_world.bounds.mean(axis=0)
    offsets = truth.cam_to_world[:, :3, 3] - centre
    elevation = np.degrees(np.arcsin(offsets[:, 2] / np.linalg.norm(offsets, axis=1)))
    assert elevation.min() >= synthetic.RigSettings().min_elevation_deg - 1e-9
    assert elevation.max() <= synthetic.RigSettings().max_elevation_deg + 1e-9


def test_same_seed_writes_identical_zip_and_other_seed_other_cameras(tmp_path):
    first = make_capture(tmp_path / "a", obj="sphere", views=6, size=32, seed=3)
    again = synthetic.write_zip(
        synthetic.capture_files(
            synthetic.render_capture(
                fixture_mesh("sphere"), synthetic.RigSettings(views=6, width=32, height=32), seed=3
            )
        ),
        tmp_path / "b.zip",
    )
    other = capture_truth(obj="sphere", views=6, size=32, seed=4)
    assert first.read_bytes() == again.read_bytes()
    assert not np.allclose(
        other.cam_to_world, capture_truth(obj="sphere", views=6, size=32, seed=3).cam_to_world
    )


def test_alpha_is_antialiased_coverage():
    alpha = capture_truth(obj="sphere", views=2, size=48, supersample=3).rgba[..., 3]
    partial = (alpha > 0) & (alpha < 255)
    assert partial.any()  # the silhouette edge carries fractional coverage
    assert set(np.unique(alpha)) <= {round(255 * k / 9) for k in range(10)}


def test_texture_colours_come_from_the_uv_image():
    truth = capture_truth(obj="spot", views=4, size=64)
    rgb = truth.rgba[..., :3][truth.rgba[..., 3] == 255]
    # Spot's texture is white with black patches and a pink muzzle: dark and bright pixels both show.
    assert (rgb.max(axis=1) < 60).mean() > 0.02
    assert (rgb.min(axis=1) > 150).mean() > 0.2


def test_layout_variants_extensionless_pixels_and_jpeg_masks(tmp_path):
    layout = synthetic.ZipLayout(
        extension_in_path=False, intrinsics="pixels", image_format="jpg", separate_masks=True
    )
    transforms, files = _read_capture(make_capture(tmp_path, views=3, size=32, zip_layout=layout))
    assert {"fl_x", "fl_y", "cx", "cy", "w", "h"} <= transforms.keys()
    assert "camera_angle_x" not in transforms
    frame = transforms["frames"][0]
    assert frame["file_path"] == "./images/r_000"
    assert Image.open(io.BytesIO(files["images/r_000.jpg"])).mode == "RGB"
    assert Image.open(io.BytesIO(files[frame["mask_path"][2:]])).mode == "L"


def test_renderer_is_embree():
    assert synthetic.RayMeshIntersector.__module__ == "trimesh.ray.ray_pyembree"


@pytest.mark.parametrize("name", objects.CONCAVE_OBJECTS)
def test_concave_objects_are_closed_and_hollow_at_the_top(name):
    mesh = objects.make_object(name)
    merged = mesh.copy()
    merged.merge_vertices(merge_tex=True, merge_norm=True)
    assert merged.is_watertight
    assert mesh.volume > 0  # outward normals
    # A ray straight down the axis first meets the cavity floor, well below the rim.
    top = mesh.bounds[1, 2]
    hits, _, _ = synthetic.RayMeshIntersector(mesh).intersects_location(
        [[0.0, 0.0, top + 1]], [[0.0, 0.0, -1.0]]
    )
    assert hits[:, 2].max() < top - 0.2 * (top - mesh.bounds[0, 2])


def test_sample_capture_is_a_complete_zip(tmp_path):
    path = tmp_path / "sample.zip"
    synthetic.write_sample_capture(path, views=4, size=32)
    transforms, files = _read_capture(path)
    assert len(transforms["frames"]) == 4
    assert all(frame["file_path"][2:] in files for frame in transforms["frames"])


def test_wide_images_keep_square_pixels_and_the_object_in_frame():
    rig = synthetic.RigSettings(views=4, width=40, height=24)
    truth = synthetic.render_capture(fixture_mesh("spot"), rig, seed=5)
    assert truth.size == (24, 40)
    assert truth.fl_x == truth.fl_y
    surface = truth.mesh_world.sample(1000, seed=3)
    for rgba, cam in zip(truth.rgba, truth.cam_to_world, strict=True):
        cols, rows = np.floor(_project(surface, cam, truth.fl_x, truth.cx, truth.cy)).astype(int).T
        assert ((rows >= 0) & (rows < 24) & (cols >= 0) & (cols < 40)).all()
        assert ndimage.binary_dilation(rgba[..., 3] > 0)[rows, cols].all()
