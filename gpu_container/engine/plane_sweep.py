"""What stands off the support plane: a plane sweep along the rays of a view's uncertain pixels.

Colour alone cannot split a dark part of an object from the dark shadow it casts on the table (a
hoof, a leg's foot, a base in its own shade), and both are too plain for features to be matched
on. Geometry can: the shadow lies ON the support plane, the part stands off it. For each pixel to
decide (only those whose ray runs through the object's region, the cylinder round the look-at axis
that holds the object's points, and meets the table within it behind), this module sweeps
candidate depths along the ray through that region, down to ``min_height`` above the plane, and
one more at the plane itself. Each candidate is scored by the zero-mean normalised
cross-correlation (ZNCC) of a 3 x 3 patch in the view with the same patch seen by its nearest
views (``photo_carving.StackedViews``: fronto-parallel patches; the best ``compare_views`` of the
neighbours that see it, so one occluded view does not decide). ZNCC, not a colour difference: dark
matches dark at any depth, but the patch's pattern (the part's edge against the table, the
shadow's edge on it) lines up at the right depth only.

Verdicts (``STANDING``, ``ON_PLANE``, ``UNDECIDED``): a pixel stands off the plane when its best
candidate above it correlates well (``min_zncc``), clearly better than the plane (``min_gain``),
and the pixel's own colour agrees better there than on the plane (``min_pixel_gain``: a patch lines
up at the depth of an edge it holds, so a table pixel beside a leg correlates at the leg's depth,
while its own colour matches where it lies, on the plane). It lies on the plane when the plane
correlates as well and by as much more than any candidate off it (rare: just above the plane the
candidates match the table nearly as well). Patches with too little contrast to correlate
(``min_contrast``) are left undecided.

``object_masks`` uses it where ``MaskParams.sweep`` is set (opt-in: see there for what it gives).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from gpu_container.engine.cameras import batched_pixel_rays
from gpu_container.engine.context import StageContext
from gpu_container.engine.photo_carving import StackedViews, ray_patches

if TYPE_CHECKING:  # object_masks imports this module
    from gpu_container.engine.object_masks import FoundObject

STANDING, ON_PLANE, UNDECIDED = 1, -1, 0


@dataclass(frozen=True)
class SweepParams:
    depth_candidates: int = 24  # candidates along each ray through the object's region
    neighbour_views: int = 4  # nearest views compared ...
    compare_views: int = 2  # ... and the best this many of them (occlusion) averaged
    patch_pixels: float = 1.0  # spacing of the 3 x 3 patch, pixels of the view
    min_zncc: float = 0.6  # a standing pixel's best candidate correlates at least this well ...
    min_gain: float = 0.25  # ... and by this much more than the plane does there ...
    min_pixel_gain: float = 0.02  # ... and its own colour's difference is this much lower (0..1)
    min_contrast: float = 0.02  # patch standard deviation (colour, 0..1) below which nothing is decided
    min_height: float = 0.01  # candidates stand this far above the plane (fraction of the camera distance)
    region_margin: float = 0.15  # the region's radius and top over the object points' (fraction)
    rays_per_chunk: int = 4096  # rays swept at once (a stop is checked between chunks)


def region_of(found: FoundObject, margin: float) -> tuple[np.ndarray, np.ndarray, float, float]:
    """The region of ``found`` (which has a plane): the axis's foot on the plane (3,), the plane's
    normal (3,), the radius and the top height."""
    plane = found.plane
    heights = plane.height(found.points)
    foot = found.look_at - plane.height(found.look_at[None])[0] * plane.normal
    offsets = found.points - foot
    radial = np.linalg.norm(offsets - np.outer(offsets @ plane.normal, plane.normal), axis=1)
    return foot, plane.normal, float(radial.max() * (1 + margin)), float(heights.max() * (1 + margin))


def _safe(values: torch.Tensor) -> torch.Tensor:
    return torch.where(values.abs() > 1e-9, values, torch.full_like(values, -1e-9))


def _ray_span(
    origins: torch.Tensor,
    dirs: torch.Tensor,
    foot: torch.Tensor,
    normal: torch.Tensor,
    radius: float,
    heights: tuple[float, float],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where rays (M, 3) run inside the cylinder (axis ``foot`` + s ``normal``, ``radius``) between
    the two ``heights``: entry and exit distances (M,), and whether they do at all (M,)."""
    height0 = (origins - foot) @ normal
    rise = dirs @ normal
    t_a, t_b = (heights[0] - height0) / _safe(rise), (heights[1] - height0) / _safe(rise)
    enter, leave = torch.minimum(t_a, t_b), torch.maximum(t_a, t_b)
    flat_o = (origins - foot) - height0[:, None] * normal  # the parts across the axis
    flat_d = dirs - rise[:, None] * normal
    a = (flat_d * flat_d).sum(dim=1).clamp(min=1e-12)
    b = 2.0 * (flat_o * flat_d).sum(dim=1)
    c = (flat_o * flat_o).sum(dim=1) - radius * radius
    disc = b * b - 4 * a * c
    root = disc.clamp(min=0).sqrt()
    enter = torch.maximum(enter, (-b - root) / (2 * a)).clamp(min=0.0)
    leave = torch.minimum(leave, (-b + root) / (2 * a))
    return enter, leave, (disc > 0) & (leave > enter)


def _plane_distance(
    origins: torch.Tensor, dirs: torch.Tensor, foot: torch.Tensor, normal: torch.Tensor
) -> torch.Tensor:
    """(M,) distance along each ray to the plane through ``foot`` with ``normal`` (negative: behind)."""
    return -((origins - foot) @ normal) / _safe(dirs @ normal)


def _zncc(colours: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """ZNCC (...) of patches ``colours`` (..., 27) with ``reference`` broadcast to them."""
    a = colours - colours.mean(dim=-1, keepdim=True)
    b = reference - reference.mean(dim=-1, keepdim=True)
    return (a * b).sum(dim=-1) / (a.norm(dim=-1) * b.norm(dim=-1) + 1e-6)


def standing_pixels(
    images: np.ndarray,
    cam_to_world: np.ndarray,
    intrinsics: np.ndarray,
    found: FoundObject,
    candidates: np.ndarray,
    params: SweepParams,
    ctx: StageContext,
) -> np.ndarray:
    """(N, H, W) int8 verdicts (``STANDING``, ``ON_PLANE``, ``UNDECIDED``) on the pixels of
    ``candidates`` (N, H, W) bool of ``images`` (N, H, W, 3) uint8 seen by pinhole cameras
    (camera-to-world, OpenGL axes); ``found`` without a plane: all undecided. Progress is reported
    per chunk of rays, a stop checked before each."""
    count, height, width = images.shape[:3]
    out = np.full((count, height, width), UNDECIDED, dtype=np.int8)
    if found.plane is None or not candidates.any():
        return out
    foot_np, normal_np, radius, top = region_of(found, params.region_margin)
    foot, normal = torch.from_numpy(foot_np).float(), torch.from_numpy(normal_np).float()
    c2w, k = torch.from_numpy(cam_to_world).float(), torch.from_numpy(intrinsics).float()
    views = StackedViews(torch.from_numpy(np.ascontiguousarray(images)), c2w, k, params.neighbour_views)
    view_index, rows, cols = np.nonzero(candidates)
    ray_view = torch.from_numpy(view_index)
    uv = torch.from_numpy(np.stack([cols, rows], axis=1)).float() + 0.5  # pixel centres
    origins, dirs = batched_pixel_rays(c2w, k, ray_view, uv)
    enter, leave, crosses = _ray_span(
        origins, dirs, foot, normal, radius, (params.min_height * found.scale, top)
    )
    plane_t = _plane_distance(origins, dirs, foot, normal)
    behind = origins + plane_t.clamp(min=0)[:, None] * dirs - foot
    across = behind - (behind @ normal)[:, None] * normal
    crosses &= (plane_t > 0) & (across.norm(dim=1) <= radius)  # the table round the object behind
    keep = torch.nonzero(crosses)[:, 0]
    verdict = torch.zeros(len(keep), dtype=torch.int8)
    chunk = params.rays_per_chunk
    for start in range(0, len(keep), chunk):
        ctx.check_stop()
        rays = keep[start : start + chunk]
        verdict[start : start + chunk] = _sweep(
            views, ray_view[rays], origins[rays], dirs[rays], enter[rays], leave[rays], plane_t[rays], params
        )
        done = min(start + chunk, len(keep))
        ctx.on_progress(done / len(keep), f"masks: swept {done} of {len(keep)} pixels")
    chosen = keep.numpy()
    out[view_index[chosen], rows[chosen], cols[chosen]] = verdict.numpy()
    return out


def _sweep(
    views: StackedViews,
    ray_view: torch.Tensor,
    origins: torch.Tensor,
    dirs: torch.Tensor,
    enter: torch.Tensor,
    leave: torch.Tensor,
    plane_t: torch.Tensor,
    params: SweepParams,
) -> torch.Tensor:
    """(M,) int8 verdicts of rays (M,) swept between ``enter`` and ``leave``, the plane at ``plane_t``."""
    steps = torch.linspace(0.0, 1.0, params.depth_candidates)
    t = torch.cat([enter[:, None] + (leave - enter)[:, None] * steps, plane_t[:, None]], dim=1)  # (M, D + 1)
    patches = ray_patches(views, ray_view, origins, dirs, t, params.patch_pixels)
    reference = patches.reference.reshape(len(ray_view), 9, 3)  # the view's own patch
    colours, usable = patches.colours, patches.usable  # (M, K, D + 1, 9, 3), (M, K, D + 1)
    score = _zncc(colours.flatten(-2), reference.reshape(-1, 1, 1, 27))
    score = torch.where(usable, score, torch.full_like(score, -1.0))
    score = score.topk(max(1, min(params.compare_views, score.shape[1])), dim=1).values.mean(dim=1)
    own = (colours[..., 4, :] - reference[:, None, None, 4]).abs().mean(dim=-1)  # the pixel itself
    own = torch.where(usable, own, torch.full_like(own, float("inf"))).min(dim=1).values  # (M, D + 1)
    off_plane, best = score[:, :-1].max(dim=1)
    plane = score[:, -1]
    decided = reference.reshape(len(ray_view), -1).std(dim=1) >= params.min_contrast
    standing = (
        decided
        & (off_plane >= params.min_zncc)
        & (off_plane >= plane + params.min_gain)
        & (own.gather(1, best[:, None])[:, 0] + params.min_pixel_gain < own[:, -1])
    )
    on_plane = decided & (plane >= params.min_zncc) & (plane >= off_plane + params.min_gain)
    return standing.to(torch.int8) * STANDING + on_plane.to(torch.int8) * ON_PLANE
