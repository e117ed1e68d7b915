"""Stage 3: the visual hull, by silhouette carving on a grid, coarse to fine.

Every grid point ``(x_i, y_j, z_k)`` of ``grid_coordinates(R)`` is looked up in every view: the
view's mask sampled bilinearly at the point's projection (a point outside an image, or behind its
camera, reads 1, so partial views do not carve). k-of-n vote: a point is inside the hull when at
least N - ``tolerance_views`` views see it inside their silhouette, so the occupancy stored is
the (tolerance_views + 1)-th smallest of those N look-ups, a soft vote in [0, 1] whose surface is
the level 0.5 (sub-pixel silhouettes give a smooth field for marching cubes). One bad mask
therefore cannot carve away a part of the object. Masks may also be eroded (``erode_pixels``).

Coarse to fine: the full grid is evaluated at ``coarse_resolution``; each finer level (doubling
up to ``resolution``) takes the trilinear upsampling of the previous one and re-evaluates only
the points within ``refine_margin_cells`` coarse cells of the level set.

Writes ``work/hull/hull.npz`` (``occupancy`` (R, R, R) float32 in [0, 1], ``level`` = 0.5,
``resolution``) and
``stage.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gpu_container.engine.cameras import silhouette_coverage
from gpu_container.engine.context import CaptureError, StageContext, Stopwatch, write_stage_record
from gpu_container.engine.scene import Scene, grid_coordinates

STAGE = "hull"
HULL_FILE = "hull.npz"


@dataclass(frozen=True)
class HullParams:
    resolution: int  # points per axis of the final grid
    coarse_resolution: int  # points per axis of the first, fully evaluated grid
    tolerance_views: int = 1  # views allowed to disagree before a point is carved
    erode_pixels: int = 0  # erode every mask by this many pixels before carving
    refine_margin_cells: int = 2  # coarse cells around the level set re-evaluated at the finer level
    samples_per_chunk: int = 1 << 22  # views x points projected at once (~0.5 s a chunk on a CPU)


PRESET_PARAMS = {
    "draft": HullParams(resolution=96, coarse_resolution=24),
    "standard": HullParams(resolution=192, coarse_resolution=48),
    "high": HullParams(resolution=320, coarse_resolution=40),
}


def params_for(preset: str) -> HullParams:
    if preset not in PRESET_PARAMS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESET_PARAMS)}")
    return PRESET_PARAMS[preset]


@dataclass
class HullResult:
    occupancy: np.ndarray  # (R, R, R) float32 soft k-of-n vote in [0, 1]
    level: float  # occupancy >= level is inside

    @property
    def inside(self) -> np.ndarray:
        return self.occupancy >= self.level


SURFACE_LEVEL = 0.5  # occupancy at the hull's surface


def scene_masks(scene: Scene, device: torch.device, erode_pixels: int = 0) -> torch.Tensor:
    """(N, H, W) float32 masks in [0, 1] on ``device``, optionally eroded."""
    masks = torch.from_numpy(scene.masks).to(device=device, dtype=torch.float32) / 255.0
    if erode_pixels > 0:
        size = 2 * erode_pixels + 1
        masks = -F.max_pool2d(-masks[:, None], size, stride=1, padding=erode_pixels)[:, 0]
    return masks


def soft_vote(
    points: torch.Tensor,
    masks: torch.Tensor,
    cam_to_box: torch.Tensor,
    intrinsics: torch.Tensor,
    params: HullParams,
    ctx: StageContext | None = None,
) -> torch.Tensor:
    """(P,) occupancy of points (P, 3): the (tolerance + 1)-th smallest silhouette look-up, in chunks."""
    num_views = masks.shape[0]
    rank = min(params.tolerance_views, num_views - 1) + 1
    chunk = max(1, params.samples_per_chunk // num_views)
    out = torch.empty(points.shape[0], device=points.device, dtype=torch.float32)
    for start in range(0, points.shape[0], chunk):
        if ctx is not None:
            ctx.check_stop()
        block = points[start : start + chunk]
        coverage = silhouette_coverage(block, masks, cam_to_box, intrinsics)  # (N, chunk)
        out[start : start + chunk] = torch.kthvalue(coverage, rank, dim=0).values
    return out


def _grid_points(resolution: int, device: torch.device) -> torch.Tensor:
    axis = torch.from_numpy(grid_coordinates(resolution)).to(device=device, dtype=torch.float32)
    x, y, z = torch.meshgrid(axis, axis, axis, indexing="ij")
    return torch.stack([x, y, z], dim=-1)  # (R, R, R, 3)


def _near_level_set(volume: torch.Tensor, level: float, margin_cells: int) -> torch.Tensor:
    """(R, R, R) bool: points within ``margin_cells`` of both an inside and an outside point."""
    inside = (volume >= level).float()[None, None]
    size = 2 * margin_cells + 1
    any_inside = F.max_pool3d(inside, size, stride=1, padding=margin_cells)
    any_outside = F.max_pool3d(1.0 - inside, size, stride=1, padding=margin_cells)
    return ((any_inside > 0) & (any_outside > 0))[0, 0]


def carve(
    scene: Scene, params: HullParams, device: torch.device, ctx: StageContext | None = None
) -> tuple[HullResult, int]:
    """The hull of a scene; also returns how many grid points were evaluated exactly."""
    masks = scene_masks(scene, device, params.erode_pixels)
    cam_to_box = torch.from_numpy(scene.cam_to_box).to(device=device, dtype=torch.float32)
    intrinsics = torch.from_numpy(scene.intrinsics).to(device=device, dtype=torch.float32)
    level = SURFACE_LEVEL

    resolutions = [params.resolution]
    while resolutions[-1] // 2 >= params.coarse_resolution:
        resolutions.append(resolutions[-1] // 2)
    resolutions.reverse()

    volume = None
    evaluated = 0
    for index, resolution in enumerate(resolutions):
        points = _grid_points(resolution, device)
        if volume is None:
            flat = soft_vote(points.reshape(-1, 3), masks, cam_to_box, intrinsics, params, ctx)
            volume = flat.reshape(resolution, resolution, resolution)
            evaluated += flat.numel()
        else:
            refine = _near_level_set(volume, level, params.refine_margin_cells)
            shape = (resolution,) * 3
            volume = F.interpolate(volume[None, None], size=shape, mode="trilinear", align_corners=True)[0, 0]
            refine = F.interpolate(refine[None, None].float(), size=shape, mode="nearest")[0, 0] > 0
            targets = points[refine]
            volume[refine] = soft_vote(targets, masks, cam_to_box, intrinsics, params, ctx)
            evaluated += targets.shape[0]
        if ctx is not None:
            ctx.on_progress((index + 1) / len(resolutions), f"hull {resolution}^3")
    assert volume is not None
    return HullResult(volume.cpu().numpy().astype(np.float32), level), evaluated


def load(job_dir: Path) -> HullResult:
    path = job_dir / "work" / STAGE / HULL_FILE
    with np.load(path) as data:
        return HullResult(occupancy=data["occupancy"], level=float(data["level"]))


def run(ctx: StageContext, params: HullParams | None = None) -> dict:
    """The hull stage; ``params`` default to the preset's."""
    params = params or params_for(ctx.preset)
    watch = Stopwatch()
    scene_folder = ctx.job_dir / "work" / "preprocess"
    if not (scene_folder / "scene.npz").is_file():
        raise CaptureError("missing_scene", f"{scene_folder / 'scene.npz'} not found: run preprocess first")
    scene = Scene.load(scene_folder)
    ctx.on_progress(0.0, "carving the visual hull")
    result, evaluated = carve(scene, params, ctx.device, ctx)
    inside = result.inside
    if not inside.any():
        raise CaptureError("empty_hull", "the silhouettes share no common volume: masks or cameras disagree")
    figures = {
        "stage": STAGE,
        "seconds": round(watch.seconds, 3),
        "device": str(ctx.device),
        "resolution": params.resolution,
        "level": result.level,
        "occupied_fraction": float(inside.mean()),
        "points_evaluated": evaluated,
        "views": scene.num_views,
        "params": asdict(params),
    }
    ctx.check_stop()
    folder = ctx.work_dir(STAGE)
    np.savez_compressed(
        folder / HULL_FILE,
        occupancy=result.occupancy,
        level=np.float32(result.level),
        resolution=np.int64(params.resolution),
    )
    write_stage_record(folder, figures)
    ctx.on_progress(1.0, "hull done")
    return figures
