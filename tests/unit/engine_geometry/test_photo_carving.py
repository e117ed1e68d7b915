"""Photo-consistency sweeps on an analytic dented cube: behind the filled top face they find the dent."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gpu_container.engine.cameras import batched_pixel_rays
from gpu_container.engine.photo_carving import CarveSettings, StackedViews, parabola_offset, photo_findings
from gpu_container.engine.volume_render import find_surface, ray_box

from .analytic import CUBE_HALF, cube_sdf, dented_cube_sdf, make_scene

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
    free, found = photo_findings(
        views, ray_view, origins, dirs, surface, far, lambda points: cube_sdf(points) < 0, SETTINGS
    )
    assert len(ray_view) > 200
    assert len(free) > 5 * len(ray_view)  # most rays carve several candidates deep
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
    free, _ = photo_findings(grey, ray_view, origins, dirs, surface, far, lambda p: cube_sdf(p) < 0, SETTINGS)
    assert len(free) == 0


def test_parabola_offset_finds_the_vertex_between_candidates() -> None:
    depths = np.arange(8.0)
    costs = torch.from_numpy(
        np.stack([(depths - 3.3) ** 2, (depths - 5.8) ** 2, depths])
    )  # vertices at 3.3, 5.8, 0
    best = costs.argmin(dim=1)
    offset = parabola_offset(costs, best)
    assert torch.allclose(best + offset, torch.tensor([3.3, 5.8, 0.0], dtype=costs.dtype), atol=1e-6)
