"""Analytic test scenes: shapes given by signed-distance functions, rendered by sphere tracing.

Cameras orbit the origin with OpenGL axes; images get a view-independent procedural colour so
that photometric fitting has texture to match. The scenes live directly in the box frame.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from gpu_container.engine.cameras import batched_pixel_rays, intrinsics_matrix
from gpu_container.engine.scene import Scene

SdfFunction = Callable[[torch.Tensor], torch.Tensor]

SPHERE_RADIUS = 0.7
CUBE_HALF = 0.6
DENT_CENTRE_Y = 0.85
DENT_RADIUS = 0.55
TRACE_STEPS = 96
HIT_EPSILON = 1e-4


def sphere_sdf(points: torch.Tensor) -> torch.Tensor:
    return points.norm(dim=-1) - SPHERE_RADIUS


def cube_sdf(points: torch.Tensor) -> torch.Tensor:
    q = points.abs() - CUBE_HALF
    return q.clamp(min=0).norm(dim=-1) + q.max(dim=-1).values.clamp(max=0)


def dented_cube_sdf(points: torch.Tensor) -> torch.Tensor:
    """A cube with a spherical bowl pressed into its top face; its rim hides the bowl from silhouettes."""
    dent = (points - points.new_tensor([0.0, DENT_CENTRE_Y, 0.0])).norm(dim=-1) - DENT_RADIUS
    return torch.maximum(cube_sdf(points), -dent)


def checker_colour(points: torch.Tensor) -> torch.Tensor:
    """(P, 3) view-independent colour: smooth stripes along all three axes."""
    frequency = 7.0
    waves = torch.sin(frequency * points) * 0.5 + 0.5
    return torch.stack([0.15 + 0.7 * waves[:, 0], 0.15 + 0.7 * waves[:, 1], 0.15 + 0.7 * waves[:, 2]], dim=1)


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """(4, 4) camera-to-world with OpenGL axes (looking down -Z)."""
    back = eye - target
    back = back / np.linalg.norm(back)
    right = np.cross(up, back)
    right = right / np.linalg.norm(right)
    true_up = np.cross(back, right)
    matrix = np.eye(4)
    matrix[:3, 0], matrix[:3, 1], matrix[:3, 2], matrix[:3, 3] = right, true_up, back, eye
    return matrix


def orbit_cameras(num_views: int, radius: float = 3.0, seed: int = 0) -> np.ndarray:
    """(N, 4, 4) cameras on a sphere around the origin (Fibonacci spiral, elevations -35..75 deg)."""
    rng = np.random.default_rng(seed)
    golden = np.pi * (3.0 - np.sqrt(5.0))
    heights = np.linspace(np.sin(np.radians(75.0)), np.sin(np.radians(-35.0)), num_views)
    cams = []
    for index, height in enumerate(heights):
        ring = np.sqrt(1.0 - height**2)
        angle = golden * index + rng.uniform(0, 0.1)
        eye = radius * np.array([ring * np.cos(angle), height, ring * np.sin(angle)])
        cams.append(look_at(eye, np.zeros(3), np.array([0.0, 1.0, 0.0])))
    return np.stack(cams)


def render(
    sdf: SdfFunction, cam_to_box: np.ndarray, intrinsics: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sphere-trace every pixel centre: images (N, H, W, 3) uint8 and masks (N, H, W) uint8."""
    num_views = cam_to_box.shape[0]
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    uv = torch.tensor(np.stack([cols.ravel(), rows.ravel()], 1)).repeat(num_views, 1)
    view = torch.arange(num_views).repeat_interleave(height * width)
    origins, dirs = batched_pixel_rays(torch.tensor(cam_to_box), torch.tensor(intrinsics), view, uv)
    t = torch.zeros(len(origins), dtype=origins.dtype)
    for _ in range(TRACE_STEPS):
        t = t + sdf(origins + t[:, None] * dirs)
    points = origins + t[:, None] * dirs
    hit = sdf(points).abs() < 1e-3
    colour = torch.where(hit[:, None], checker_colour(points), torch.zeros(1, dtype=points.dtype))
    images = (colour.reshape(num_views, height, width, 3).numpy() * 255).round().astype(np.uint8)
    masks = (hit.reshape(num_views, height, width).numpy() * 255).astype(np.uint8)
    return images, masks


def make_scene(
    sdf: SdfFunction, num_views: int = 24, size: int = 64, fov_degrees: float = 40.0, holdout: int = 2
) -> Scene:
    focal = 0.5 * size / np.tan(0.5 * np.radians(fov_degrees))
    cam_to_box = orbit_cameras(num_views)
    intrinsics = np.repeat(intrinsics_matrix(focal, focal, size / 2, size / 2)[None], num_views, axis=0)
    images, masks = render(sdf, cam_to_box, intrinsics, size, size)
    return Scene(
        images=images,
        masks=masks,
        intrinsics=intrinsics,
        cam_to_box=cam_to_box,
        box_to_world=np.eye(4),
        holdout=np.arange(holdout, dtype=np.int64) * (num_views // max(holdout, 1)),
        names=[f"view_{index:03d}.png" for index in range(num_views)],
    )


def write_job(job_dir: Path, scene: Scene) -> Path:
    """A job folder with ``work/preprocess/scene.npz``, as the preprocess stage leaves it."""
    folder = job_dir / "work" / "preprocess"
    folder.mkdir(parents=True, exist_ok=True)
    scene.save(folder)
    return job_dir
