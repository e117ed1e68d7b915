from __future__ import annotations

import numpy as np
import torch

from gpu_container.engine.cameras import (
    intrinsics_matrix,
    pixel_rays,
    project,
    silhouette_coverage,
    silhouette_votes,
)

from .analytic import look_at, orbit_cameras


def _camera() -> tuple[torch.Tensor, torch.Tensor]:
    cam = look_at(np.array([0.3, 0.5, 3.0]), np.zeros(3), np.array([0.0, 1.0, 0.0]))
    return torch.tensor(cam)[None], torch.tensor(intrinsics_matrix(80.0, 90.0, 32.0, 30.0))[None]


def test_point_on_the_viewing_axis_projects_to_the_principal_point_in_front() -> None:
    cam = torch.eye(4, dtype=torch.float64)[None]
    cam[0, 2, 3] = 5.0  # camera at z = 5 looking down -Z towards the origin
    k = torch.tensor(intrinsics_matrix(100.0, 100.0, 40.0, 30.0))[None]
    uv, depth = project(torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]).double(), cam, k)
    assert torch.allclose(uv[0, 0], torch.tensor([40.0, 30.0]).double())
    assert depth[0, 0].item() == 5.0
    assert uv[0, 1, 1] < 30.0  # +Y (up) goes towards the top row
    assert uv[0, 2, 0] > 40.0  # +X (right) goes towards higher columns


def test_project_then_pixel_rays_passes_through_the_points() -> None:
    cam, k = _camera()
    points = torch.rand(50, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) - 0.5
    uv, depth = project(points, cam, k)
    origins, dirs = pixel_rays(cam[0], k[0], uv[0])
    along = ((points - origins) * dirs).sum(dim=1)
    closest = origins + along[:, None] * dirs
    assert torch.allclose(closest, points, atol=1e-9)
    assert torch.all(depth > 0)
    assert torch.allclose(dirs.norm(dim=1), torch.ones(50, dtype=torch.float64))


def test_silhouette_votes_count_views_and_points_outside_images_do_not_carve() -> None:
    cams = torch.tensor(orbit_cameras(6))
    k = torch.tensor(intrinsics_matrix(30.0, 30.0, 16.0, 16.0)).repeat(6, 1, 1)
    masks = torch.zeros(6, 32, 32, dtype=torch.bool)
    masks[:, 12:20, 12:20] = True
    points = torch.tensor([[0.0, 0.0, 0.0], [0.9, 0.9, 0.9], [0.0, 0.0, 100.0]], dtype=torch.float64)
    votes = silhouette_votes(points, masks, cams, k)
    assert votes.tolist()[0] == 6  # the centre projects into every silhouette
    assert votes.tolist()[1] < 6  # a corner of the box falls outside some silhouettes
    soft = silhouette_coverage(points, masks.double(), cams, k)
    assert soft.shape == (6, 3)
    assert torch.all(soft[:, 0] == 1.0)
