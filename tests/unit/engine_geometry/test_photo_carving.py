"""Photo-consistency sweeps on an analytic dented cube: behind the filled top face they find the dent."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from gpu_container.engine.cameras import batched_pixel_rays
from gpu_container.engine.photo_carving import (
    CarveSettings,
    ShadowMaps,
    StackedViews,
    parabola_offset,
    photo_findings,
)
from gpu_container.engine.volume_render import find_surface, ray_box

from .analytic import CUBE_HALF, DENT_CENTRE_Y, DENT_RADIUS, cube_sdf, dented_cube_sdf, make_scene

SETTINGS = CarveSettings(
    depth_candidates=32, depth=1.0, patch_pixels=1.0, min_gain=0.3, min_surface_cost=0.03, keep_margin=0.01
)
OPENING_RADIUS = 0.35  # rays entering the top face this close to its centre look into the dent


@pytest.fixture(scope="module")
def dent_rays():
    """The dented cube's views, and the rays of its upper views that enter the filled top over the dent."""
    scene = make_scene(dented_cube_sdf, num_views=24, size=96)
    cam_to_box = torch.from_numpy(scene.cam_to_box).float()
    intrinsics = torch.from_numpy(scene.intrinsics).float()
    view, row, col = torch.nonzero(torch.from_numpy(scene.masks > 127), as_tuple=True)
    uv = torch.stack([col, row], dim=1).float() + 0.5
    origins, dirs = batched_pixel_rays(cam_to_box, intrinsics, view, uv)
    lower, upper = torch.full((3,), -CUBE_HALF), torch.full((3,), CUBE_HALF)
    near, far = ray_box(origins, dirs, lower, upper)
    # The hull stands in as the cube without its dent: the sweep starts on its top face.
    surface, hit = find_surface(cube_sdf, origins, dirs, near, far, 128)
    entry = origins + surface[:, None] * dirs
    over_dent = hit & (entry[:, 1] > CUBE_HALF - 1e-3) & (entry[:, [0, 2]].norm(dim=1) < OPENING_RADIUS)
    views = StackedViews(torch.from_numpy(scene.images), cam_to_box, intrinsics, neighbours=4)
    keep = over_dent.nonzero()[:, 0]
    return views, view[keep], origins[keep], dirs[keep], surface[keep], far[keep]


def test_free_space_lies_in_the_dent_and_the_better_depths_on_its_surface(dent_rays) -> None:
    views, ray_view, origins, dirs, surface, far = dent_rays
    free, found, free_view = photo_findings(
        views, ray_view, origins, dirs, surface, far, lambda points: cube_sdf(points) < 0, SETTINGS
    )
    assert len(ray_view) > 200
    assert len(free) > 5 * len(ray_view)  # most rays carve several candidates deep
    # Each free point names the view whose ray found it, and many views see into the dent.
    assert free_view.shape == (len(free),)
    assert set(free_view.tolist()) <= set(ray_view.tolist())
    assert len(set(free_view.tolist())) >= 4
    # Seen: 337 rays, 4115 free points, 99.9 % of them outside the shape; the better depths' median
    # distance to the dent 0.002 (a candidate step is 0.03), 89 % of them within 0.05.
    assert (dented_cube_sdf(free) > 0).float().mean() > 0.97  # free space is outside the true shape
    distance_to_surface = dented_cube_sdf(found).abs()
    assert distance_to_surface.median() < 0.01  # a third of a candidate step: sub-step refinement works
    assert (distance_to_surface < 0.05).float().mean() > 0.8


def test_a_flat_cost_never_carves(dent_rays) -> None:
    """Where every candidate agrees as well as the surface (no texture), the surface is kept."""
    views, ray_view, origins, dirs, surface, far = dent_rays
    grey = StackedViews(
        torch.full((views.num_views, views.height, views.width, 3), 128, dtype=torch.uint8),
        torch.linalg.inv(views.box_to_cam),
        views.intrinsics,
        neighbours=4,
    )
    free, _, _ = photo_findings(
        grey, ray_view, origins, dirs, surface, far, lambda p: cube_sdf(p) < 0, SETTINGS
    )
    assert len(free) == 0


def test_parabola_offset_finds_the_vertex_between_candidates() -> None:
    depths = np.arange(8.0)
    costs = torch.from_numpy(
        np.stack([(depths - 3.3) ** 2, (depths - 5.8) ** 2, depths])
    )  # vertices at 3.3, 5.8, 0
    best = costs.argmin(dim=1)
    offset = parabola_offset(costs, best)
    assert torch.allclose(best + offset, torch.tensor([3.3, 5.8, 0.0], dtype=costs.dtype), atol=1e-6)


def _true_shadow_maps(views: StackedViews, tolerance: float) -> ShadowMaps:
    """Shadow maps of the dented cube itself at every pixel (stride 1)."""
    count, height, width = views.num_views, views.height, views.width
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    uv = torch.stack([cols.reshape(-1), rows.reshape(-1)], dim=1).float().repeat(count, 1) + 0.5
    view = torch.arange(count).repeat_interleave(height * width)
    cam_to_box = torch.linalg.inv(views.box_to_cam)
    origins, dirs = batched_pixel_rays(cam_to_box, views.intrinsics, view, uv)
    near, far = ray_box(origins, dirs, torch.full((3,), -1.0), torch.full((3,), 1.0))
    surface, hit = find_surface(dented_cube_sdf, origins, dirs, near, far, 256)
    distance = torch.where(hit, surface, torch.full_like(surface, float("inf")))
    return ShadowMaps(distance.reshape(count, height, width), 1, tolerance)


def test_shadow_maps_agree_with_exact_visibility_inside_the_dent(dent_rays) -> None:
    """Points on the dent's surface: the shadow-map test matches marching the segment to each camera."""
    views = dent_rays[0]
    maps = _true_shadow_maps(views, tolerance=0.03)
    polar = torch.linspace(0.1, 1.0, 6)  # radians from straight down, on the dent's sphere
    azimuth = torch.linspace(0.0, 2 * np.pi, 9)[:-1]
    polar, azimuth = torch.meshgrid(polar, azimuth, indexing="ij")
    points = torch.stack(
        [polar.sin() * azimuth.cos(), -polar.cos(), polar.sin() * azimuth.sin()], dim=-1
    ).reshape(-1, 3) * DENT_RADIUS + torch.tensor([0.0, DENT_CENTRE_Y, 0.0])
    points = points[points[:, 1] < CUBE_HALF - 0.02]  # below the rim: part of the dent
    every_view = torch.arange(views.num_views)[None]
    _, _, seen = views.patch_colours(
        points[None], torch.zeros(1, len(points)), torch.eye(3)[:1], torch.eye(3)[1:2], every_view, maps
    )
    # Exact: march from each point towards each camera; hidden when the segment enters the solid.
    centres = torch.linalg.inv(views.box_to_cam)[:, :3, 3]  # (N, 3)
    fractions = torch.linspace(0.0, 1.0, 400)[None, None, :, None]
    segment = points[None, :, None] + fractions * (centres[:, None, None] - points[None, :, None])
    away = (segment - points[None, :, None]).norm(dim=-1) > 0.05
    exact = ~((dented_cube_sdf(segment) < 0) & away).any(dim=-1)  # (N, P)
    assert exact.float().mean() > 0.2  # some views look into the dent ...
    assert (~exact).float().mean() > 0.2  # ... and the rim or the cube hides it from others
    assert (seen[0] == exact).float().mean() > 0.95
    # Only confirmed surfaces hide: with none confirmed, every view sees every point.
    none = maps.where_confirmed(torch.zeros_like(maps.distance, dtype=torch.bool), 0.03)
    _, _, all_seen = views.patch_colours(
        points[None], torch.zeros(1, len(points)), torch.eye(3)[:1], torch.eye(3)[1:2], every_view, none
    )
    assert bool(all_seen.all())


def test_rays_whose_surface_agrees_find_it_where_it_is_unswept(dent_rays) -> None:
    """Rays that start on the true surface carve nothing. Not sweeping the rays whose surface already
    agrees finds the same free space, and reports their surfaces where they are."""
    views = dent_rays[0]
    cam_to_box = torch.linalg.inv(views.box_to_cam)
    rows, cols = torch.meshgrid(torch.arange(8, 88, 4), torch.arange(8, 88, 4), indexing="ij")
    uv = torch.stack([cols.reshape(-1), rows.reshape(-1)], dim=1).float() + 0.5
    view = torch.arange(0, views.num_views, 3).repeat_interleave(len(uv))
    origins, dirs = batched_pixel_rays(cam_to_box, views.intrinsics, view, uv.repeat(len(view) // len(uv), 1))
    near, far = ray_box(origins, dirs, torch.full((3,), -CUBE_HALF), torch.full((3,), CUBE_HALF))
    surface, hit = find_surface(dented_cube_sdf, origins, dirs, near, far, 256)
    rays = (view[hit], origins[hit], dirs[hit], surface[hit], far[hit])
    inside = lambda p: dented_cube_sdf(p) < 0  # noqa: E731
    free, found, _ = photo_findings(views, *rays, inside, replace(SETTINGS, sweep_agreeing=False))
    swept_free, swept_found, _ = photo_findings(views, *rays, inside, SETTINGS)
    assert len(rays[0]) > 500
    # Seen: 687 rays; 32 free points inside the shape (rays grazing the cube's edges); 88 % of the
    # found points within 0.01 of the surface unswept, 62 % swept (the cheapest candidate is often a
    # step or two off the surface).
    assert (dented_cube_sdf(free) < -0.01).sum() < 0.1 * len(rays[0])  # hardly a ray carves the shape
    assert torch.equal(free, swept_free)
    assert len(found) == len(swept_found) >= 0.95 * len(rays[0])
    on_surface = (dented_cube_sdf(found).abs() < 0.01).float().mean()
    assert on_surface > 0.8
    assert on_surface > (dented_cube_sdf(swept_found).abs() < 0.01).float().mean() + 0.1
