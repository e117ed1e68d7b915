"""preprocess.silhouette_bounds: the box holds the whole object, whatever its shape and place."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import trimesh
from trimesh.ray.ray_pyembree import RayMeshIntersector

from gpu_container.capture import objects
from gpu_container.engine import preprocess
from gpu_container.engine.context import CaptureError, StageContext

SIZE = 64
VIEWS = 24
FIELD_OF_VIEW = 0.69  # radians across the image
SUBPIXELS = 4  # rays per pixel side: a pixel any of them hits is object (like alpha > 0)


def _look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(4, 4) camera-to-world, OpenGL axes (looks down -Z), +Z roughly up."""
    back = (eye - target) / np.linalg.norm(eye - target)
    right = np.cross([0.0, 0.0, 1.0], back)
    right /= np.linalg.norm(right)
    matrix = np.eye(4)
    matrix[:3, 0], matrix[:3, 1], matrix[:3, 2], matrix[:3, 3] = right, np.cross(back, right), back, eye
    return matrix


def _masks(mesh: trimesh.Trimesh, aim: np.ndarray, distance: float, views: int = VIEWS):
    """Masks (N, H, W) uint8 (255 where any of a pixel's sub-pixel rays hits the mesh), cameras (N, 4, 4) and
    intrinsics (N, 3, 3) of cameras on a sphere of ``distance`` around ``aim`` (not the object's
    centre), all looking at ``aim``."""
    index = np.arange(views)
    z = 0.95 - 1.9 * (index + 0.5) / views  # a Fibonacci spiral, off the poles
    phi = np.pi * (3.0 - np.sqrt(5.0)) * index
    ring = np.sqrt(1 - z**2)
    directions = np.stack([ring * np.cos(phi), ring * np.sin(phi), z], axis=-1)
    cameras = np.stack([_look_at(aim + distance * d, aim) for d in directions])
    focal = 0.5 * SIZE / np.tan(0.5 * FIELD_OF_VIEW)
    sub = (np.arange(SIZE * SUBPIXELS) + 0.5) / SUBPIXELS
    cols, rows = np.meshgrid(sub, sub, indexing="xy")
    rays = np.stack([(cols - SIZE / 2) / focal, -(rows - SIZE / 2) / focal, -np.ones_like(cols)], -1)
    rays = rays.reshape(-1, 3) / np.linalg.norm(rays.reshape(-1, 3), axis=1, keepdims=True)
    intersector = RayMeshIntersector(mesh)
    masks = np.stack(
        [
            intersector.intersects_any(np.broadcast_to(cam[:3, 3], rays.shape), rays @ cam[:3, :3].T)
            .reshape(SIZE, SUBPIXELS, SIZE, SUBPIXELS)
            .any(axis=(1, 3))
            .astype(np.uint8)
            * 255
            for cam in cameras
        ]
    )
    intrinsics = np.stack([np.array([[focal, 0, SIZE / 2], [0, focal, SIZE / 2], [0, 0, 1.0]])] * views)
    return masks, cameras, intrinsics


def _ctx(tmp_path: Path) -> StageContext:
    return StageContext(tmp_path, preset="draft")


def _posed_wand(seed: int) -> trimesh.Trimesh:
    wand = objects.make_object("wand")
    rng = np.random.default_rng(seed)
    wand.apply_transform(trimesh.transformations.random_rotation_matrix(rng.random(3)))
    wand.apply_scale(float(np.exp(rng.uniform(np.log(0.01), np.log(100.0)))))
    wand.apply_translation(rng.uniform(-50, 50, 3))
    return wand


@pytest.mark.parametrize("seed", [0, 1])
def test_bounds_hold_an_elongated_object_far_from_where_the_cameras_look(tmp_path, seed):
    wand = _posed_wand(seed)
    length = float(wand.extents.max())
    centre = wand.bounds.mean(axis=0)
    rng = np.random.default_rng(10 + seed)
    aim = centre + 0.3 * length * rng.normal(size=3) / np.sqrt(3)  # the cameras look beside it
    masks, cameras, intrinsics = _masks(wand, aim, distance=3.0 * length)

    bounds = preprocess.silhouette_bounds(
        masks, cameras, intrinsics, preprocess.params_for("draft"), _ctx(tmp_path)
    )

    # The masks miss at most a quarter pixel (point-sampled sub-pixels): 0.5 % of the length.
    slack = 0.005 * length
    assert (wand.vertices >= bounds.low - slack).all()
    assert (wand.vertices <= bounds.high + slack).all()
    assert (bounds.high - bounds.low).max() <= 1.1 * length  # and the box is tight
    assert bounds.crossing_views == []


def test_a_thin_part_survives_the_coarse_grid(tmp_path):
    # A needle far thinner than a coarse cell (the cube's side / 32) still bounds the box.
    needle = trimesh.creation.box(extents=(2.0, 0.04, 0.04))  # under a pixel wide in every view
    needle.apply_translation((0.8, 0.0, 0.0))
    body = trimesh.creation.icosphere(radius=0.2)
    shape = trimesh.util.concatenate([needle, body])
    masks, cameras, intrinsics = _masks(shape, np.zeros(3), distance=5.0)

    bounds = preprocess.silhouette_bounds(
        masks, cameras, intrinsics, preprocess.params_for("draft"), _ctx(tmp_path)
    )

    assert bounds.high[0] >= 1.8
    assert bounds.low[0] <= -0.2


def test_a_view_whose_silhouette_the_box_cannot_explain_is_named(tmp_path):
    sphere = trimesh.creation.icosphere(radius=0.5)
    masks, cameras, intrinsics = _masks(sphere, np.zeros(3), distance=3.0)
    masks[5, :6, :6] = 255  # a blob no other view agrees with

    bounds = preprocess.silhouette_bounds(
        masks, cameras, intrinsics, preprocess.params_for("draft"), _ctx(tmp_path)
    )

    assert bounds.crossing_views == [5]
    assert 5 in bounds.frame_views  # the blob touches the image border
    assert (np.abs(bounds.high) <= 0.6).all()  # the other views still bound the sphere


def test_cameras_that_bound_nothing_are_refused(tmp_path):
    sphere = trimesh.creation.icosphere(radius=0.5)
    masks, cameras, intrinsics = _masks(sphere, np.zeros(3), distance=3.0)
    params = replace(preprocess.params_for("draft"), max_search_growths=0, carve_min_seen_fraction=0.0)
    masks[:] = 0
    masks[:, 20:44, 20:44] = 255
    cameras[:, :3, 3] *= 0.01  # every camera at the centre, looking out: nothing is bounded
    with pytest.raises(CaptureError) as raised:
        preprocess.silhouette_bounds(masks, cameras, intrinsics, params, _ctx(tmp_path))
    assert raised.value.code in ("unbounded_silhouette_hull", "empty_silhouette_hull")
