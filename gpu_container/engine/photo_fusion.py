"""Sub-voxel surface placement: photo-consistent depths along training rays, fused into the SDF.

Carving (``photo_carving``) only removes whole voxels, and only where a much deeper depth matches
clearly better; what is left is the hull's extra material within a voxel or two of the surface
(flat faces that bulge, concave edges and floors a little too high) and a voxel-quantised surface.
This pass places the surface where the photographs put it. Rays through pixels inside the
silhouettes find their current surface and sweep a short window across it, from a little in front
to a few voxels behind (within the hull only), scoring the same multi-view patch cost as carving
(``photo_carving.sweep_costs``). A ray whose cost has a clear interior minimum gets a depth,
refined between candidates by a parabola, and a weight: the minimum's contrast against the
window's median cost times how squarely the ray meets the surface.

Each such ray then votes a truncated signed distance, measured along the ray from its depth, into
the grid samples around its path, from its current surface (or the front truncation, if nearer) to
a short back truncation behind the depth (short so that a thin wall's far side is never voted
inside by rays from the front). The votes are averaged with the current SDF (itself truncated to
the same band, with a prior weight); grid samples with too little vote weight keep their value, and
the result never leaves the hull. Deterministic: no random draws, and the scatter-adds are summed
in a fixed order on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gpu_container.engine import grids
from gpu_container.engine.photo_carving import (
    InsideTest,
    ShadowMaps,
    StackedViews,
    parabola_offset,
    sweep_costs,
)
from gpu_container.engine.volume_render import SdfLookup

CORNERS = torch.tensor([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])  # (8, 3) x, y, z offsets


@dataclass(frozen=True)
class FusionSettings:
    candidates: int  # depths swept across the window
    front: float  # box units: the window starts this far in front of the current surface ...
    back: float  # ... and ends this far behind it
    patch_pixels: float  # spacing of the 3 x 3 patch, in pixels of the reference view
    min_contrast: float  # a depth counts when its cost is below (1 - this) x the window's median cost ...
    min_drop: float  # ... and at least this much below it (relative cost): texture-less rays never count
    truncation_front: float  # box units: votes reach this far in front of the depth (beyond: this) ...
    truncation_back: float  # ... and this far behind it
    sample_step: float  # box units between the points along a ray that vote into the grid
    compare_views: int = 2  # neighbour views a candidate's cost is the mean over (the best that see it)


@dataclass(frozen=True)
class RayDepths:
    """The rays (M,) of one batch that found a depth: origins, directions, depth, vote weight, and the
    distance where their votes start (their current surface)."""

    origins: torch.Tensor
    dirs: torch.Tensor
    depth: torch.Tensor
    weight: torch.Tensor
    start: torch.Tensor


def photo_depths(
    views: StackedViews,
    ray_view: torch.Tensor,
    origins: torch.Tensor,
    dirs: torch.Tensor,
    surface: torch.Tensor,
    sdf_lookup: SdfLookup,
    inside_hull: InsideTest,
    settings: FusionSettings,
    shadows: ShadowMaps | None = None,
) -> RayDepths:
    """Photo-consistent depths of rays (M,) around their current ``surface`` (M,) distances; with
    ``shadows``, each candidate is compared only with the views it is not hidden from."""
    step = (settings.front + settings.back) / max(settings.candidates - 1, 1)
    start = surface - settings.front
    t, cost = sweep_costs(
        views,
        ray_view,
        origins,
        dirs,
        start,
        torch.full_like(surface, step),
        settings.candidates,
        settings.patch_pixels,
        settings.compare_views,
        shadows,
    )
    points = origins[:, None] + t[..., None] * dirs[:, None]  # (M, D, 3)
    outside = ~inside_hull(points.reshape(-1, 3)).reshape(t.shape)
    cost = torch.where(outside, torch.full_like(cost, float("inf")), cost)
    best_cost, best = cost.min(dim=1)
    finite = torch.isfinite(cost)
    median = torch.where(finite, cost, torch.full_like(cost, float("nan"))).nanmedian(dim=1).values
    contrast = 1.0 - best_cost / median.clamp(min=1e-6)
    interior = (best > 0) & (best < settings.candidates - 1)
    found = (
        torch.isfinite(best_cost)
        & interior
        & (finite.sum(dim=1) >= 3)
        & (contrast >= settings.min_contrast)
        & (median - best_cost >= settings.min_drop)
    )
    depth = t.gather(1, best[:, None])[:, 0] + step * parabola_offset(cost, best)
    # How squarely the ray meets the current surface: |cos| between the ray and the SDF's gradient.
    at = origins + surface[:, None] * dirs
    gradient = sdf_gradient(sdf_lookup, at, settings.sample_step)
    facing = (gradient * dirs).sum(dim=1).abs() / gradient.norm(dim=1).clamp(min=1e-9)
    weight = contrast.clamp(0.0, 1.0) * facing
    keep = found & (weight > 0)
    return RayDepths(origins[keep], dirs[keep], depth[keep], weight[keep], surface[keep])


def sdf_gradient(sdf_lookup: SdfLookup, points: torch.Tensor, step: float) -> torch.Tensor:
    """(P, 3) central-difference gradient of the SDF at points (P, 3)."""
    offsets = torch.cat([torch.eye(3), -torch.eye(3)]).to(points) * step  # (6, 3)
    values = sdf_lookup((points[:, None] + offsets).reshape(-1, 3)).reshape(-1, 6)
    return (values[:, :3] - values[:, 3:]) / (2.0 * step)


class DepthFusion:
    """Weighted sums of truncated signed-distance votes over a grid (flat, ``grids.to_zyx`` order)."""

    def __init__(self, resolution: int, device: torch.device):
        self.resolution = resolution
        self.voxel = grids.voxel_size(resolution)
        self.weights = torch.zeros(resolution**3, device=device)
        self.sums = torch.zeros(resolution**3, device=device)
        self.rays = 0

    def add(self, rays: RayDepths, settings: FusionSettings) -> None:
        """Vote the rays' truncated along-ray distances into the grid samples around their paths."""
        if len(rays.depth) == 0:
            return
        self.rays += len(rays.depth)
        first = torch.minimum(rays.start, rays.depth - settings.truncation_front)  # (M,)
        last = rays.depth + settings.truncation_back
        count = int(torch.ceil(((last - first) / settings.sample_step).max()).item()) + 1
        steps = torch.arange(count, device=first.device, dtype=first.dtype) * settings.sample_step
        t = first[:, None] + steps  # (M, S)
        along = t <= last[:, None]
        points = rays.origins[:, None] + t[..., None] * rays.dirs[:, None]  # (M, S, 3)
        scale = 0.5 * (self.resolution - 1)
        grid = (points + 1.0) * scale  # continuous sample coordinates
        base = grid.floor().clamp(0, self.resolution - 2)
        fraction = (grid - base).clamp(0.0, 1.0)
        corners = CORNERS.to(grid)  # (8, 3)
        corner = base[..., None, :] + corners  # (M, S, 8, 3) integer sample coordinates
        trilinear = torch.where(corners.bool(), fraction[..., None, :], 1.0 - fraction[..., None, :]).prod(-1)
        position = corner / scale - 1.0  # the corners' box-unit positions
        along_ray = ((position - rays.origins[:, None, None]) * rays.dirs[:, None, None]).sum(-1)
        distance = rays.depth[:, None, None] - along_ray  # (M, S, 8): + in front of the depth
        votes = along[..., None] & (distance >= -settings.truncation_back)
        weight = trilinear * rays.weight[:, None, None] * votes
        value = distance.clamp(max=settings.truncation_front)
        index = corner.long()
        flat = (index[..., 2] * self.resolution + index[..., 1]) * self.resolution + index[..., 0]
        flat, weight, value = flat.reshape(-1), weight.reshape(-1), value.reshape(-1)
        used = weight > 0
        self.weights.index_add_(0, flat[used], weight[used])
        self.sums.index_add_(0, flat[used], (weight * value)[used])

    def fused(
        self, sdf: torch.Tensor, prior_weight: float, min_weight: float, settings: FusionSettings
    ) -> tuple[torch.Tensor, int]:
        """``sdf`` (R, R, R, ``to_zyx`` layout) with the votes averaged in where their weight is at least
        ``min_weight``, and the number of grid samples whose sign changed."""
        current = sdf.reshape(-1)
        prior = current.clamp(-settings.truncation_back, settings.truncation_front)
        average = (prior_weight * prior + self.sums) / (prior_weight + self.weights).clamp(min=1e-9)
        updated = torch.where(self.weights >= min_weight, average, current)
        flipped = int(((updated < 0) != (current < 0)).sum())
        return updated.reshape(sdf.shape), flipped
