from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from gpu_container.engine import hull
from gpu_container.engine.context import StageContext
from gpu_container.engine.scene import grid_coordinates

from .analytic import make_scene, sphere_sdf, write_job

PARAMS = hull.HullParams(resolution=64, coarse_resolution=16, tolerance_views=1)


@pytest.fixture(scope="module")
def sphere_scene():
    return make_scene(sphere_sdf, num_views=20, size=64)


def _truth(resolution: int) -> np.ndarray:
    axis = torch.from_numpy(grid_coordinates(resolution))
    points = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    return (sphere_sdf(points) <= 0).numpy().reshape((resolution,) * 3)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_hull_of_a_sphere_is_close_to_the_sphere(sphere_scene) -> None:
    result, evaluated = hull.carve(sphere_scene, PARAMS, torch.device("cpu"))
    truth = _truth(PARAMS.resolution)
    assert _iou(result.inside, truth) > 0.93
    assert result.inside[truth].mean() > 0.98  # the hull contains the object (up to a sub-voxel shell)
    assert evaluated < 0.5 * PARAMS.resolution**3  # coarse to fine skipped most of the grid


def test_one_corrupted_mask_does_not_carve_the_hull(sphere_scene) -> None:
    broken = replace(sphere_scene, masks=sphere_scene.masks.copy())
    broken.masks[3, :, : broken.masks.shape[2] // 2] = 0  # half of one silhouette lost
    truth = _truth(PARAMS.resolution)
    tolerant, _ = hull.carve(broken, PARAMS, torch.device("cpu"))
    strict, _ = hull.carve(broken, replace(PARAMS, tolerance_views=0), torch.device("cpu"))
    assert _iou(tolerant.inside, truth) > 0.9
    assert _iou(strict.inside, truth) < 0.7  # without the vote the bad mask cuts the sphere


def test_hull_stage_writes_occupancy_and_figures(tmp_path, sphere_scene, monkeypatch) -> None:
    monkeypatch.setitem(hull.PRESET_PARAMS, "draft", PARAMS)
    ctx = StageContext(job_dir=write_job(tmp_path, sphere_scene), preset="draft")
    figures = hull.run(ctx)
    saved = hull.load(tmp_path)
    assert saved.occupancy.shape == (64, 64, 64)
    assert saved.occupancy.dtype == np.float32
    stage = json.loads((tmp_path / "work" / "hull" / "stage.json").read_text())
    assert stage["resolution"] == 64 == figures["resolution"]
    assert 0.1 < stage["occupied_fraction"] < 0.3  # sphere of radius 0.7 fills 18 % of the box
