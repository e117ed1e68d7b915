"""Dense voxel grids over the box [-1, 1]^3: trilinear look-ups, resampling, signed distances.

A grid of resolution R holds samples at ``grid_coordinates(R)`` on each axis and is indexed
``[i, j, k]`` for the point ``(x_i, y_j, z_k)`` (``scene.py``). Tensors here carry channels first:
``(C, R, R, R)``. ``grid_sample`` reads its last grid axis as the fastest volume axis, so points
(x, y, z) are handed to it as (z, y, x).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage


def voxel_size(resolution: int) -> float:
    """Spacing of the grid samples in box units."""
    return 2.0 / (resolution - 1)


def sample(volume: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Trilinear look-up of ``volume`` (C, R, R, R) at ``points`` (P, 3) in box units: (P, C).

    Outside the box the border value is repeated.
    """
    return sample_zyx(to_zyx(volume), points)


def to_zyx(volume: torch.Tensor) -> torch.Tensor:
    """(C, R, R, R) indexed [i, j, k] -> indexed [k, j, i], the layout ``grid_sample`` reads (x, y, z) from.

    Its own inverse. Grids that are looked up often are kept in this layout (no per-call copies).
    """
    return volume.permute(0, 3, 2, 1)


def sample_zyx(volume_zyx: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Trilinear look-up of a (C, R, R, R) volume in ``to_zyx`` layout at points (P, 3): (P, C)."""
    grid = points.to(volume_zyx.dtype)[None, :, None, None, :]  # (1, P, 1, 1, 3)
    values = F.grid_sample(volume_zyx[None], grid, mode="bilinear", padding_mode="border", align_corners=True)
    return values[0, :, :, 0, 0].T


def resample(volume: torch.Tensor, resolution: int) -> torch.Tensor:
    """``volume`` (C, R, R, R) resampled trilinearly onto the grid of another resolution."""
    size = (resolution,) * 3
    return F.interpolate(volume[None], size=size, mode="trilinear", align_corners=True)[0]


def signed_distance(inside: np.ndarray) -> np.ndarray:
    """(R, R, R) float32 signed distance in box units (negative inside) of a boolean occupancy grid.

    The surface is taken half a voxel beyond the inside samples, where marching cubes would put it.
    """
    spacing = voxel_size(inside.shape[0])
    if inside.all() or not inside.any():
        raise ValueError("a signed distance needs both inside and outside samples")
    outside_distance = ndimage.distance_transform_edt(~inside)
    inside_distance = ndimage.distance_transform_edt(inside)
    distance = np.where(inside, -(inside_distance - 0.5), outside_distance - 0.5) * spacing
    return distance.astype(np.float32)


def bounds_of(inside: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Box-unit corners (lower (3,), upper (3,)) of the inside samples, grown by ``margin``, in the box."""
    axis = np.linspace(-1.0, 1.0, inside.shape[0])
    indices = np.argwhere(inside)
    lower = axis[indices.min(axis=0)] - margin
    upper = axis[indices.max(axis=0)] + margin
    return np.clip(lower, -1.0, 1.0), np.clip(upper, -1.0, 1.0)
