from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from gpu_container.engine import hull
from gpu_container.engine.cameras import batched_pixel_rays, silhouette_coverage
from gpu_container.engine.context import StageContext
from gpu_container.engine.scene import grid_coordinates

from .analytic import make_scene, sphere_sdf, write_job

PARAMS = hull.HullParams(resolution=64, coarse_resolution=16, voxels_per_pixel=0, tolerance_views=1)


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
    result, report = hull.carve(sphere_scene, PARAMS, torch.device("cpu"))
    evaluated = report.evaluated
    truth = _truth(PARAMS.resolution)
    assert _iou(result.inside, truth) > 0.93
    assert result.inside[truth].mean() > 0.98  # the hull contains the object (up to a sub-voxel shell)
    assert evaluated < 0.5 * PARAMS.resolution**3  # coarse to fine skipped most of the grid


def test_one_corrupted_mask_does_not_carve_the_hull(sphere_scene) -> None:
    broken = replace(sphere_scene, masks=sphere_scene.masks.copy())
    broken.masks[3, :, : broken.masks.shape[2] // 2] = 0  # half of one silhouette lost
    truth = _truth(PARAMS.resolution)
    strict = replace(PARAMS, tolerance_views=0)
    tolerant, _ = hull.carve(broken, PARAMS, torch.device("cpu"))
    checked, report = hull.carve(broken, strict, torch.device("cpu"))
    blind, _ = hull.carve(broken, replace(strict, inconsistent_view_fraction=0.0), torch.device("cpu"))
    assert _iou(tolerant.inside, truth) > 0.9  # the vote ignores one view
    assert report.inconsistent_views == [3]  # the strict carve finds the view that disagrees ...
    assert 3 not in report.views
    assert _iou(checked.inside, truth) > 0.9  # ... and leaves it out
    assert _iou(blind.inside, truth) < 0.7  # without either, the bad mask cuts the sphere


def test_neighbour_rule_ignores_a_lone_bad_mask_but_not_the_outline(sphere_scene) -> None:
    # One view loses half its silhouette: no neighbour of it repeats that exclusion, so with the
    # neighbour rule alone (no k-of-n tolerance) it carves nothing, where the strict carve halves
    # the sphere.
    broken = replace(sphere_scene, masks=sphere_scene.masks.copy())
    broken.masks[3, :, : broken.masks.shape[2] // 2] = 0
    truth = _truth(PARAMS.resolution)
    strict = replace(PARAMS, tolerance_views=0, inconsistent_view_fraction=0.0)
    lone, _ = hull.carve(broken, replace(strict, neighbour_views=2), torch.device("cpu"))
    cut, _ = hull.carve(broken, strict, torch.device("cpu"))
    assert lone.inside[truth].mean() > 0.98
    assert cut.inside[truth].mean() < 0.6
    # The k-of-n vote keeps a shell that only the few views tangent to it exclude; neighbouring views
    # exclude it together, so with the rule it is carved: the hull is tighter, and still robust.
    wide = replace(PARAMS, tolerance_views=4, inconsistent_view_fraction=0.0)
    voted, _ = hull.carve(broken, wide, torch.device("cpu"))
    confirmed, _ = hull.carve(broken, replace(wide, neighbour_views=2), torch.device("cpu"))
    assert int((confirmed.inside & ~truth).sum()) < 0.6 * int((voted.inside & ~truth).sum())
    assert confirmed.inside[truth].mean() > 0.98
    assert _iou(confirmed.inside, truth) > _iou(voted.inside, truth) + 0.05


def test_neighbours_are_the_nearest_views_by_direction() -> None:
    angles = np.radians([0.0, 10.0, 20.0, 180.0, 190.0])
    cam_to_box = torch.eye(4).repeat(len(angles), 1, 1)
    cam_to_box[:, 0, 3] = torch.from_numpy(3.0 * np.cos(angles)).float()
    cam_to_box[:, 2, 3] = torch.from_numpy(3.0 * np.sin(angles)).float()
    neighbours = hull.neighbour_views(cam_to_box, 1)
    assert neighbours is not None
    assert neighbours[:, 0].tolist() == [1, 0, 1, 4, 3]
    assert hull.neighbour_views(cam_to_box, 0) is None
    assert hull.neighbour_views(cam_to_box, 5) is None  # too few views to have that many neighbours


def test_the_strict_hull_never_holds_a_point_a_silhouette_excludes(sphere_scene) -> None:
    # Holes far thinner than the coarse grid's spacing: every point of the final grid that a training
    # view sees outside its silhouette is outside the hull, however coarse the first level.
    holed = replace(sphere_scene, masks=sphere_scene.masks.copy())
    holed.masks[2, 30:32, 20:44] = 0  # a slit (2 pixels) through one view
    holed.masks[7, 20:22, 31:33] = 0  # a pin hole through another
    params = replace(PARAMS, tolerance_views=0, inconsistent_view_fraction=0.0)
    result, _ = hull.carve(holed, params, torch.device("cpu"))
    points = torch.from_numpy(grid_coordinates(params.resolution)).float()
    grid = torch.stack(torch.meshgrid(points, points, points, indexing="ij"), dim=-1).reshape(-1, 3)
    views = holed.training_views
    coverage = silhouette_coverage(
        grid,
        hull.scene_masks(holed, torch.device("cpu"))[torch.from_numpy(views)],
        torch.from_numpy(holed.cam_to_box[views]).float(),
        torch.from_numpy(holed.intrinsics[views]).float(),
    )
    excluded = (coverage < hull.SURFACE_LEVEL).any(dim=0).numpy().reshape(result.inside.shape)
    assert excluded.any()
    assert not (result.inside & excluded).any()
    assert (result.inside == ~excluded).all()  # and every point all silhouettes allow is inside


def test_held_out_views_never_carve(sphere_scene) -> None:
    blanked = replace(sphere_scene, masks=sphere_scene.masks.copy())
    blanked.masks[blanked.holdout] = 0  # a held-out view that would carve everything away
    result, report = hull.carve(blanked, PARAMS, torch.device("cpu"))
    reference, _ = hull.carve(sphere_scene, PARAMS, torch.device("cpu"))
    assert len(sphere_scene.holdout) > 0
    assert not set(report.views) & set(sphere_scene.holdout.tolist())
    np.testing.assert_array_equal(result.occupancy, reference.occupancy)


def test_resolution_follows_the_images(sphere_scene) -> None:
    params = replace(PARAMS, resolution=512, coarse_resolution=8, voxels_per_pixel=1.0)
    small = hull.grid_resolution(sphere_scene, params)
    doubled = replace(sphere_scene, intrinsics=sphere_scene.intrinsics * [[2.0], [2.0], [1.0]])
    assert 8 < small < 512
    assert abs(hull.grid_resolution(doubled, params) - 2 * small) <= 2  # twice the pixels, twice the points
    assert hull.grid_resolution(doubled, replace(params, resolution=small)) == small  # the preset caps it


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


def test_estimated_masks_get_a_vote_given_masks_a_strict_carve(tmp_path, sphere_scene, monkeypatch) -> None:
    monkeypatch.setitem(hull.PRESET_PARAMS, "draft", PARAMS)
    job = write_job(tmp_path, sphere_scene)
    given = hull.run(
        StageContext(job_dir=job, preset="draft", device=torch.device("cpu")),
        replace(PARAMS, tolerance_views=0),
    )
    (job / "work" / "preprocess" / "stage.json").write_text(json.dumps({"masks": "estimated"}))
    estimated = hull.run(StageContext(job_dir=job, preset="draft"), replace(PARAMS, tolerance_views=0))
    assert given["params"]["tolerance_views"] == 0
    assert given["params"]["neighbour_views"] == 0  # given masks: every exclusion carves
    assert estimated["params"]["tolerance_views"] == int(0.1 * len(sphere_scene.training_views)) > 0
    assert estimated["params"]["neighbour_views"] == hull.HullParams.estimated_mask_neighbour_views > 0


def test_nothing_below_the_recorded_support_plane_is_kept(tmp_path, sphere_scene, monkeypatch) -> None:
    monkeypatch.setitem(hull.PRESET_PARAMS, "draft", PARAMS)
    # The capture's world is the box turned, scaled and moved; the table top is the box's y = 0 plane
    # (through the sphere's middle), given in that world frame as preprocess records it.
    angle = 0.6
    turn = np.array(
        [[1.0, 0.0, 0.0], [0.0, np.cos(angle), -np.sin(angle)], [0.0, np.sin(angle), np.cos(angle)]]
    )
    to_world = np.eye(4)
    to_world[:3, :3], to_world[:3, 3] = 0.15 * turn, [0.3, -1.2, 2.0]
    job = write_job(tmp_path, replace(sphere_scene, box_to_world=to_world))
    up = turn @ np.array([0.0, 1.0, 0.0])
    plane = {"normal": up.tolist(), "offset": float(-up @ to_world[:3, 3])}
    (job / "work" / "preprocess" / "stage.json").write_text(json.dumps({"support_plane": plane}))

    figures = hull.run(StageContext(job_dir=job, preset="draft", device=torch.device("cpu")))

    inside = hull.load(tmp_path).inside
    axis = grid_coordinates(inside.shape[0])
    below = axis[None, :, None] < -1e-6  # box y below the plane, which passes through the box centre
    above = axis[None, :, None] > 2.0 / (inside.shape[0] - 1)  # a voxel clear of the cut
    truth = _truth(inside.shape[0])
    assert not (inside & below).any()
    assert _iou(inside & above, truth & above) > 0.9  # the upper half is the sphere's, uncut
    assert 0.4 < figures["below_support_removed"] < 0.6


ESTIMATED = replace(PARAMS, tolerance_views=4, neighbour_views=2, inconsistent_view_fraction=0.0)


def _excluded_by(scene, view: int, resolution: int) -> np.ndarray:
    """(R, R, R) bool: grid points that ``view``'s silhouette excludes."""
    axis = torch.from_numpy(grid_coordinates(resolution)).float()
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    coverage = silhouette_coverage(
        grid,
        hull.scene_masks(scene, torch.device("cpu"))[view : view + 1],
        torch.from_numpy(scene.cam_to_box[view : view + 1]).float(),
        torch.from_numpy(scene.intrinsics[view : view + 1]).float(),
    )
    return (coverage[0] < hull.SURFACE_LEVEL).numpy().reshape((resolution,) * 3)


def test_a_view_sure_of_its_background_carves_alone_where_an_unsure_one_does_not(sphere_scene) -> None:
    # One view's silhouette loses a strip across the sphere. Under the estimated masks' tolerance
    # (k-of-n and the neighbour rule) the strip carves nothing where the view is unsure of it, and
    # carves alone, as a given mask would, where the view is sure.
    view = int(sphere_scene.training_views[3])
    cut = replace(sphere_scene, masks=sphere_scene.masks.copy())
    cut.masks[view, 28:36, :] = 0
    unsure = np.full(cut.masks.shape, 255, dtype=np.uint8)
    unsure[view, 28:36, :] = 0
    truth = _truth(PARAMS.resolution)
    kept, _ = hull.carve(cut, ESTIMATED, torch.device("cpu"), confidence=unsure)
    carved, _ = hull.carve(
        cut, ESTIMATED, torch.device("cpu"), confidence=np.full(cut.masks.shape, 255, dtype=np.uint8)
    )
    strip = _excluded_by(cut, view, PARAMS.resolution) & truth
    assert strip.sum() > 0.05 * truth.sum()
    assert kept.inside[truth].mean() > 0.98  # the unsure strip: the sphere whole
    assert not (carved.inside & strip).any()  # the sure strip: cut through
    assert carved.inside[truth & ~strip].mean() > 0.98


def test_views_sure_of_every_background_pixel_carve_as_given_masks_do(sphere_scene) -> None:
    # The k-of-n vote and the neighbour rule keep a shell round the sphere that only the views tangent
    # to it exclude; correct masks that are sure of their background carve it away.
    truth = _truth(PARAMS.resolution)
    sure = np.full(sphere_scene.masks.shape, 255, dtype=np.uint8)
    strict, _ = hull.carve(sphere_scene, replace(PARAMS, tolerance_views=0), torch.device("cpu"))
    tolerant, _ = hull.carve(sphere_scene, ESTIMATED, torch.device("cpu"))
    confident, _ = hull.carve(sphere_scene, ESTIMATED, torch.device("cpu"), confidence=sure)
    extra = lambda result: int((result.inside & ~truth).sum())  # noqa: E731
    assert extra(tolerant) > extra(strict)
    assert _iou(confident.inside, strict.inside) > 0.995
    assert extra(confident) <= extra(strict) + 0.005 * truth.sum()


def test_the_stage_reads_the_confidence_of_estimated_masks_only(tmp_path, sphere_scene, monkeypatch) -> None:
    monkeypatch.setitem(hull.PRESET_PARAMS, "draft", PARAMS)
    job = write_job(tmp_path, sphere_scene)
    folder = job / "work" / "preprocess"
    np.savez_compressed(folder / hull.CONFIDENCE_FILE, confidence=np.zeros_like(sphere_scene.masks))
    given = hull.run(StageContext(job_dir=job, preset="draft"))
    (folder / "stage.json").write_text(json.dumps({"masks": "estimated"}))
    estimated = hull.run(StageContext(job_dir=job, preset="draft"))
    (folder / hull.CONFIDENCE_FILE).unlink()
    without = hull.run(StageContext(job_dir=job, preset="draft"))
    assert not given["background_confidence"]  # given masks carve strictly whatever lies beside them
    assert estimated["background_confidence"]
    assert not without["background_confidence"]


FLOOR = -0.5  # the support plane y = FLOOR of the footed scene


def _body_sdf(points: torch.Tensor) -> torch.Tensor:
    return (points - points.new_tensor([0.0, 0.1, 0.0])).norm(dim=-1) - 0.45


def _foot_sdf(points: torch.Tensor) -> torch.Tensor:
    """A post 0.2 wide from the floor up into the body."""
    centre, half = points.new_tensor([0.0, FLOOR + 0.12, 0.0]), points.new_tensor([0.1, 0.12, 0.1])
    offset = (points - centre).abs() - half
    return offset.clamp(min=0).norm(dim=-1) + offset.amax(dim=-1).clamp(max=0)


def _footed_sdf(points: torch.Tensor) -> torch.Tensor:
    return torch.minimum(_body_sdf(points), _foot_sdf(points))


def _inside(sdf, resolution: int) -> np.ndarray:
    axis = torch.from_numpy(grid_coordinates(resolution))
    points = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    return (sdf(points) <= 0).numpy().reshape((resolution,) * 3)


def test_near_the_support_a_foot_every_mask_misses_is_kept_and_its_shadow_is_not() -> None:
    # The masks miss a dark foot in every view (as GrabCut misses Spot's hooves beside their
    # shadows), so the neighbour rule carves it; the foot's pixels are unsure, and so are those of
    # its shadow (a disk on the floor round it). Within the support zone only sure views carve: the
    # foot is kept, and the space over the shadow, which oblique views see against sure background,
    # is carved.
    full = make_scene(_footed_sdf, num_views=40, size=64, holdout=0)
    above = full.cam_to_box[:, 1, 3] > 0.3  # cameras look down on the floor
    body = make_scene(_body_sdf, num_views=40, size=64, holdout=0)
    scene = replace(
        full,
        masks=body.masks[above],
        images=full.images[above],
        intrinsics=full.intrinsics[above],
        cam_to_box=full.cam_to_box[above],
        names=[name for name, keep in zip(full.names, above, strict=True) if keep],
    )
    confidence = np.full(scene.masks.shape, 255, dtype=np.uint8)
    confidence[full.masks[above] > body.masks[above]] = 0  # the missed foot: unsure
    size = scene.masks.shape[1]
    cols, rows = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
    uv = torch.tensor(np.stack([cols.ravel(), rows.ravel()], 1))
    for view in range(scene.num_views):
        cam = torch.tensor(scene.cam_to_box[view : view + 1])
        origins, dirs = batched_pixel_rays(
            cam, torch.tensor(scene.intrinsics[view : view + 1]), torch.zeros(len(uv), dtype=torch.long), uv
        )
        floor = origins + ((FLOOR - origins[:, 1]) / dirs[:, 1])[:, None] * dirs
        shadow = (floor[:, [0, 2]].norm(dim=1) < 0.35).numpy().reshape(size, size)
        confidence[view][shadow & (scene.masks[view] == 0)] = 0  # the shadow: unsure
    params = replace(ESTIMATED, tolerance_views=2)
    zone = np.array([0.0, 1.0, 0.0, -FLOOR - 0.25])  # within 0.25 of the floor
    kept, _ = hull.carve(scene, params, torch.device("cpu"), confidence=confidence, zone=zone)
    carved, _ = hull.carve(scene, params, torch.device("cpu"), confidence=confidence)
    resolution = params.resolution
    foot = _inside(_foot_sdf, resolution) & ~_inside(_body_sdf, resolution)
    axis = grid_coordinates(resolution)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    over_shadow = (np.hypot(x, z) > 0.2) & (np.hypot(x, z) < 0.3) & (y > FLOOR + 0.1) & (y < FLOOR + 0.2)
    assert carved.inside[foot].mean() < 0.5  # the neighbour rule takes the foot every view misses
    assert kept.inside[foot].mean() > 0.9  # the zone keeps it ...
    assert kept.inside[over_shadow & ~foot].mean() < 0.1  # ... and not the space over its shadow
    truth = _inside(_footed_sdf, resolution)
    assert kept.inside[truth].mean() > 0.97
