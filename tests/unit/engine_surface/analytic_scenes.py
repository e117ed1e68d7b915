"""Analytic inputs for the surface/export tests: SDF grids, orbiting cameras, scenes rendered with embree."""

from __future__ import annotations

import numpy as np
import trimesh

from gpu_container.engine.render import PinholeCamera, RayCaster, render, vertex_color_lookup
from gpu_container.engine.scene import Scene, grid_coordinates


def look_at(eye: np.ndarray, target: np.ndarray | None = None, up: np.ndarray | None = None) -> np.ndarray:
    """(4, 4) camera-to-frame matrix, OpenGL axes: the camera at ``eye`` looks down -Z at ``target``."""
    target = np.zeros(3) if target is None else target
    up = np.array([0.0, 0.0, 1.0]) if up is None else up
    back = (eye - target) / np.linalg.norm(eye - target)
    if abs(np.dot(back, up)) > 0.999:
        up = np.array([0.0, 1.0, 0.0])
    right = np.cross(up, back)
    right /= np.linalg.norm(right)
    matrix = np.eye(4)
    matrix[:3, 0], matrix[:3, 1], matrix[:3, 2], matrix[:3, 3] = right, np.cross(back, right), back, eye
    return matrix


def orbit_eyes(count: int, radius: float = 3.0, min_elevation: float = -60.0, max_elevation: float = 60.0):
    """(count, 3) camera positions on a spiral around the origin."""
    golden = np.pi * (3.0 - np.sqrt(5.0))
    heights = np.linspace(np.sin(np.radians(min_elevation)), np.sin(np.radians(max_elevation)), count)
    azimuths = golden * np.arange(count)
    rings = np.sqrt(1.0 - heights**2)
    return radius * np.stack([rings * np.cos(azimuths), rings * np.sin(azimuths), heights], axis=1)


def intrinsics(size: int, fov_degrees: float = 40.0) -> np.ndarray:
    focal = 0.5 * size / np.tan(np.radians(fov_degrees) / 2)
    return np.array([[focal, 0.0, size / 2], [0.0, focal, size / 2], [0.0, 0.0, 1.0]])


def render_scene(
    mesh: trimesh.Trimesh,
    vertex_colors: np.ndarray,
    eyes: np.ndarray,
    size: int = 48,
    holdout: tuple[int, ...] = (),
    box_to_world: np.ndarray | None = None,
) -> Scene:
    """A Scene whose images are embree renders of ``mesh`` (box frame) with ``vertex_colors (V, 3)``."""
    caster = RayCaster(mesh.vertices, mesh.faces)
    images, masks, cams = [], [], []
    for eye in eyes:
        camera = PinholeCamera(look_at(eye), intrinsics(size), size, size)
        view = render(caster, vertex_color_lookup(caster.faces, vertex_colors), camera)
        images.append(np.round(view.color * 255).astype(np.uint8))
        masks.append(np.where(view.mask, 255, 0).astype(np.uint8))
        cams.append(camera.cam_to_frame)
    return Scene(
        images=np.stack(images),
        masks=np.stack(masks),
        intrinsics=np.stack([intrinsics(size)] * len(eyes)),
        cam_to_box=np.stack(cams),
        box_to_world=np.eye(4) if box_to_world is None else box_to_world,
        holdout=np.array(holdout, dtype=np.int64),
        names=[f"view_{index:03d}.png" for index in range(len(eyes))],
    )


def grid_points(resolution: int) -> np.ndarray:
    """(R, R, R, 3) box coordinates of the engine grid, [i, j, k] -> (x_i, y_j, z_k)."""
    axis = grid_coordinates(resolution)
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1)


def sphere_sdf(resolution: int, radius: float = 0.6, center=(0.0, 0.0, 0.0)) -> np.ndarray:
    points = grid_points(resolution)
    return (np.linalg.norm(points - np.asarray(center), axis=-1) - radius).astype(np.float32)


def box_sdf(resolution: int, half_extent=(0.5, 0.5, 0.5), center=(0.0, 0.0, 0.0)) -> np.ndarray:
    offset = np.abs(grid_points(resolution) - np.asarray(center)) - np.asarray(half_extent)
    outside = np.linalg.norm(np.maximum(offset, 0.0), axis=-1)
    inside = np.minimum(offset.max(axis=-1), 0.0)
    return (outside + inside).astype(np.float32)


def position_colors(points: np.ndarray) -> np.ndarray:
    """A smooth colour that varies with position: (P, 3) in [0, 1]."""
    return np.clip(0.5 + 0.4 * points, 0.0, 1.0)


def color_grid(resolution: int) -> np.ndarray:
    return position_colors(grid_points(resolution).reshape(-1, 3)).reshape(
        resolution, resolution, resolution, 3
    )
