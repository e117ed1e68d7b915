"""Stage 3: the visual hull, by silhouette carving on a grid, coarse to fine.

Only the training views carve (held-out views never shape the result). Every grid point
``(x_i, y_j, z_k)`` of ``grid_coordinates(R)`` is looked up in every view: the view's mask sampled
bilinearly at the point's projection (a point outside an image, or behind its camera, reads 1: it
constrains nothing). Where masks are given the carve is strict: the occupancy is the smallest
look-up, so a point that any silhouette excludes is never inside (a soft value in [0, 1] whose
surface is the level 0.5: sub-pixel silhouettes give a smooth field for marching cubes). Where masks
were estimated, ``tolerance_views`` > 0 turns it into a k-of-n vote (the (tolerance + 1)-th smallest
look-up), so that a few bad masks cannot carve away part of the object, and a view's exclusion
carves only where one of its ``neighbour_views`` nearest views (by direction from the box centre)
excludes the point too: a silhouette changes little between neighbouring views, so an exclusion no
neighbour repeats is a mask error, while the true outline, seen from a run of neighbouring views,
still carves strictly (a k-of-n vote alone keeps the shell just outside the object that only the
few views tangent to it exclude: a pixel of extra material all round). Estimated masks come with
how sure each view is of its background (``CONFIDENCE_FILE``): where a view is sure, its exclusion
carves alone, as a given mask's does, so a correct outline carves strictly and a doubtful strip
keeps the rules' protection; near the support plane (``estimated_mask_support_zone``) only sure
views carve, since masks miss dark feet beside their shadows in every view alike. A view shown to be
inconsistent (it alone carves more than ``inconsistent_view_fraction`` of what the others keep, at
the coarse level) is left out of the carve and named in the stage record.

Resolution follows the images: the grid has about ``voxels_per_pixel`` points per pixel that the box
spans in the median training view, between ``coarse_resolution`` and ``resolution`` (the preset's
cap). Coarse to fine: the full grid is evaluated at the coarsest level; each finer level (doubling up
to the resolution) takes the trilinear upsampling of the previous one and re-evaluates only the
points within ``refine_margin_cells`` coarse cells of the level set.

Writes ``work/hull/hull.npz`` (``occupancy`` (R, R, R) float32 in [0, 1], ``level`` = 0.5,
``resolution``) and
``stage.json``.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gpu_container.engine.cameras import nearest_views, project, silhouette_coverage
from gpu_container.engine.context import (
    STAGE_RECORD,
    CaptureError,
    StageContext,
    Stopwatch,
    write_stage_record,
)
from gpu_container.engine.footprints import footprints, integral_images, rectangle_sums
from gpu_container.engine.scene import Scene, grid_coordinates

STAGE = "hull"
HULL_FILE = "hull.npz"
# Written by preprocess beside the scene where it estimated the masks: ``confidence`` (N, H, W) uint8,
# how sure each view's mask is of its background (255: sure), at the scene's image size.
CONFIDENCE_FILE = "mask_confidence.npz"


@dataclass(frozen=True)
class HullParams:
    resolution: int  # most points per axis of the final grid
    coarse_resolution: int  # points per axis of the coarsest, fully evaluated grid (and the fewest at all)
    # Points of the final grid per pixel that the box spans in the median view (0: always ``resolution``).
    voxels_per_pixel: float = 1.0
    # Views allowed to disagree before a point is carved: 0 (strict) where masks are given; estimated
    # masks (which may miss parts of the object) raise it.
    tolerance_views: int = 0
    # A view that alone carves more than this fraction of what the other views keep is inconsistent
    # (a mask that misses part of the object, a wrong camera) and is left out (0: never). A correct
    # view may carve a lot too: one edge-on to a thin plate carved 20 % of what the others keep.
    inconsistent_view_fraction: float = 0.4
    # Where the preprocess stage estimated the masks (its record says ``"masks": "estimated"``), this
    # fraction of the training views may disagree (the k-of-n vote) instead of ``tolerance_views``.
    estimated_mask_tolerance_fraction: float = 0.1
    # A view's exclusion carves alone only where one of its this many nearest views (by direction)
    # excludes the point too (0: every exclusion counts, the strict carve of given masks).
    neighbour_views: int = 0
    # ... where the masks were estimated (a lone view's mask error is ignored, the true outline is not).
    estimated_mask_neighbour_views: int = 2
    # Estimated masks with their background confidence, over a support plane: below this fraction of the
    # box's height above the support only views sure of their background carve. Masks miss dark feet
    # and bases beside their shadows in view after view, so the neighbour rule does not protect them,
    # while the shadows, the table's colour, stay unsure and carve nothing either (0: no zone).
    estimated_mask_support_zone: float = 0.1
    erode_pixels: int = 0  # erode every mask by this many pixels before carving
    refine_margin_cells: int = 2  # coarse cells around the level set re-evaluated at the finer level
    samples_per_chunk: int = 1 << 22  # views x points projected at once (~0.5 s a chunk on a CPU)


PRESET_PARAMS = {
    "draft": HullParams(resolution=128, coarse_resolution=24),
    "standard": HullParams(resolution=256, coarse_resolution=24),
    "high": HullParams(resolution=384, coarse_resolution=24),
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
    confidence: torch.Tensor | None = None,
    zone: torch.Tensor | None = None,
) -> torch.Tensor:
    """(P,) occupancy of points (P, 3): the (tolerance + 1)-th smallest silhouette look-up, in chunks;
    ``confidence`` (N, H, W) in [0, 1]: where a view is sure of its background it carves alone;
    ``zone`` (4,): points with ``zone[:3] . p + zone[3] < 0`` (near the support) are carved by sure
    views only."""
    occupancy, _ = _votes(
        points, masks, cam_to_box, intrinsics, params, ctx, confidence=confidence, zone=zone
    )
    return occupancy


def _votes(
    points: torch.Tensor,
    masks: torch.Tensor,
    cam_to_box: torch.Tensor,
    intrinsics: torch.Tensor,
    params: HullParams,
    ctx: StageContext | None = None,
    blame: bool = False,
    confidence: torch.Tensor | None = None,
    zone: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Occupancy (P,) as ``soft_vote``; with ``blame`` also (N,) how many points each view alone
    carves out of what all the other views keep (a point inside every silhouette but one)."""
    num_views = masks.shape[0]
    rank = min(params.tolerance_views, num_views - 1) + 1
    neighbours = neighbour_views(cam_to_box, params.neighbour_views)
    # a chunk stays as long with the confidence's second look-up: half as many points
    chunk = max(1, params.samples_per_chunk // (num_views * (1 if confidence is None else 2)))
    out = torch.empty(points.shape[0], device=points.device, dtype=torch.float32)
    carved_alone = torch.zeros(num_views, device=points.device, dtype=torch.int64) if blame else None
    for start in range(0, points.shape[0], chunk):
        if ctx is not None:
            ctx.check_stop()
        block = points[start : start + chunk]
        coverage = silhouette_coverage(block, masks, cam_to_box, intrinsics)  # (N, chunk)
        occupancy = coverage.amin(dim=0) if rank == 1 else torch.kthvalue(coverage, rank, dim=0).values
        if neighbours is not None:  # a view's exclusion stands where a neighbour's look-up is as low
            confirmed = torch.maximum(coverage, coverage[neighbours].amin(dim=1)).amin(dim=0)
            occupancy = torch.minimum(occupancy, confirmed) if rank > 1 else confirmed
        if confidence is not None:  # a view sure of its background there carves alone, strictly
            sure = silhouette_coverage(block, confidence, cam_to_box, intrinsics)
            alone = torch.maximum(coverage, 1.0 - sure).amin(dim=0)
            occupancy = torch.minimum(occupancy, alone)
            if zone is not None:  # near the support only the sure views carve
                occupancy = torch.where(block @ zone[:3] + zone[3] < 0, alone, occupancy)
        out[start : start + chunk] = occupancy
        if carved_alone is not None and num_views > 1:
            smallest, view = torch.topk(coverage, 2, dim=0, largest=False)
            alone = (smallest[0] < SURFACE_LEVEL) & (smallest[1] >= SURFACE_LEVEL)
            carved_alone += torch.bincount(view[0][alone], minlength=num_views)
    return out, carved_alone


def neighbour_views(cam_to_box: torch.Tensor, count: int) -> torch.Tensor | None:
    """(N, count) indices of each view's nearest views by direction from the box centre; ``None``
    when ``count`` is 0 or there are too few views."""
    if count <= 0 or cam_to_box.shape[0] <= count:
        return None
    return nearest_views(cam_to_box, count)


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


def grid_resolution(scene: Scene, params: HullParams) -> int:
    """Points per axis of the final grid: ``voxels_per_pixel`` per pixel the box spans in the median
    training view (its centre's depth against the focal length), within the preset's bounds."""
    if params.voxels_per_pixel <= 0:
        return params.resolution
    pixels = 2.0 * scene.pixels_per_unit()  # the box's side is 2 box units
    wanted = math.ceil(params.voxels_per_pixel * pixels) + 1
    return int(min(params.resolution, max(params.coarse_resolution, wanted)))


@dataclass(frozen=True)
class CarveReport:
    evaluated: int  # grid points evaluated exactly
    resolution: int
    views: list[int]  # the scene's views that carved
    inconsistent_views: list[int]  # training views left out (shown inconsistent)


def _unsettled_points(
    points: torch.Tensor,
    masks: torch.Tensor,
    cam_to_box: torch.Tensor,
    intrinsics: torch.Tensor,
    params: HullParams,
    ctx: StageContext | None,
    confidence: torch.Tensor | None = None,
) -> torch.Tensor:
    """(R, R, R) bool: grid points (R, R, R, 3) next to a cell the silhouettes do not settle.

    A cell is settled inside when in all views but ``tolerance`` (at most one with the neighbour
    rule) the pixels its projection can reach (its bounding rectangle, grown by the bilinear
    look-up's pixel) are all object, and no view is sure of a background pixel there (``confidence``:
    such a view carves alone); settled
    outside when in more than ``tolerance`` views they lie in the image and are all background.
    Anything else (a hole, a thin part, the surface) is unsettled.
    """
    resolution = points.shape[0]
    num_views, height, width = masks.shape
    object_table = integral_images(masks >= SURFACE_LEVEL)
    background_table = integral_images(masks < SURFACE_LEVEL)
    sure_table = None
    if confidence is not None:
        sure_table = integral_images((masks < SURFACE_LEVEL) & (confidence > SURFACE_LEVEL))
    nodes = points.reshape(-1, 3)
    cells = (resolution - 1,) * 3
    not_inside = torch.zeros(cells, dtype=torch.int32, device=points.device)
    sure_background = torch.zeros(cells, dtype=torch.int32, device=points.device)
    outside = torch.zeros(cells, dtype=torch.int32, device=points.device)
    chunk = max(1, params.samples_per_chunk // (8 * len(nodes)))  # views whose corners fit at once
    for first in range(0, num_views, chunk):
        if ctx is not None:
            ctx.check_stop()
        views = slice(first, first + chunk)
        uv, depth = project(nodes, cam_to_box[views], intrinsics[views])
        n = uv.shape[0]
        corners = [
            _cell_corners(values.reshape(n, resolution, resolution, resolution))
            for values in (uv[..., 0], uv[..., 1], depth)
        ]
        rect = footprints(*corners, width, height, grow=1)
        background = rectangle_sums(background_table[views], rect).reshape(n, *cells)
        objects = rectangle_sums(object_table[views], rect).reshape(n, *cells)
        in_front = rect.in_front.reshape(n, *cells)
        not_inside += (~in_front | (background > 0)).sum(dim=0, dtype=torch.int32)
        outside += (rect.inside_image.reshape(n, *cells) & (objects == 0)).sum(dim=0, dtype=torch.int32)
        if sure_table is not None:
            sure = rectangle_sums(sure_table[views], rect).reshape(n, *cells)
            sure_background += (in_front & (sure > 0)).sum(dim=0, dtype=torch.int32)
    tolerance = min(params.tolerance_views, num_views - 1)
    # with the neighbour rule two views can carve already (where they are neighbours)
    inside_tolerance = min(tolerance, 1) if params.neighbour_views > 0 else tolerance
    open_inside = (not_inside > inside_tolerance) | (sure_background > 0)
    unsettled = (open_inside & (outside <= tolerance)).float()[None, None]
    return F.max_pool3d(F.pad(unsettled, (1, 1, 1, 1, 1, 1)), 2, stride=1)[0, 0] > 0


def _cell_corners(values: torch.Tensor) -> torch.Tensor:
    """(n, C, 8) the values at the 8 corners of each cell of node values (n, R, R, R)."""
    size = values.shape[1] - 1
    corners = [
        values[:, dx : dx + size, dy : dy + size, dz : dz + size].reshape(values.shape[0], -1)
        for dx, dy, dz in itertools.product((0, 1), repeat=3)
    ]
    return torch.stack(corners, dim=2)


def carve(
    scene: Scene,
    params: HullParams,
    device: torch.device,
    ctx: StageContext | None = None,
    confidence: np.ndarray | None = None,
    zone: np.ndarray | None = None,
) -> tuple[HullResult, CarveReport]:
    """The hull of a scene from its training views; also how it was carved. ``confidence`` (N, H, W)
    uint8 (the scene's views): how sure each view is of its background (``CONFIDENCE_FILE``);
    ``zone`` (4,) box frame: where ``zone[:3] . p + zone[3] < 0`` only sure views carve."""
    views = scene.training_views
    masks = scene_masks(scene, device, params.erode_pixels)[torch.from_numpy(views).to(device)]
    sure = None
    if confidence is not None:
        sure = torch.from_numpy(confidence[views]).to(device=device, dtype=torch.float32) / 255.0
    near = None if zone is None or sure is None else torch.as_tensor(zone, dtype=torch.float32, device=device)
    cam_to_box = torch.from_numpy(scene.cam_to_box[views]).to(device=device, dtype=torch.float32)
    intrinsics = torch.from_numpy(scene.intrinsics[views]).to(device=device, dtype=torch.float32)
    level = SURFACE_LEVEL
    final = grid_resolution(scene, params)

    resolutions = [final]
    while resolutions[-1] // 2 >= params.coarse_resolution:
        resolutions.append(resolutions[-1] // 2)
    resolutions.reverse()

    volume = None
    evaluated = 0
    inconsistent: list[int] = []
    for index, resolution in enumerate(resolutions):
        points = _grid_points(resolution, device)
        if volume is None:
            flat, carved_alone = _votes(
                points.reshape(-1, 3),
                masks,
                cam_to_box,
                intrinsics,
                params,
                ctx,
                blame=True,
                confidence=sure,
                zone=near,
            )
            evaluated += flat.numel()
            kept = int((flat >= level).sum())
            assert carved_alone is not None
            limit = params.inconsistent_view_fraction * (kept + carved_alone)
            bad = carved_alone > limit
            if params.inconsistent_view_fraction > 0 and bad.any() and not bad.all():
                good = ~bad
                inconsistent = [int(views[i]) for i in torch.nonzero(bad)[:, 0].tolist()]
                views = views[good.cpu().numpy()]
                masks, cam_to_box, intrinsics = masks[good], cam_to_box[good], intrinsics[good]
                sure = None if sure is None else sure[good]
                flat = soft_vote(
                    points.reshape(-1, 3), masks, cam_to_box, intrinsics, params, ctx, sure, near
                )
                evaluated += flat.numel()
            volume = flat.reshape(resolution, resolution, resolution)
            # Points in coarse cells that the silhouettes do not settle away from the coarse surface (a
            # hole or a thin part between the coarse points) are evaluated at every finer level, as the
            # surface's band is: the final grid stays strict.
            unsettled = _unsettled_points(points, masks, cam_to_box, intrinsics, params, ctx, sure)
            unsettled &= ~_near_level_set(volume, level, params.refine_margin_cells)
        else:
            refine = _near_level_set(volume, level, params.refine_margin_cells) | unsettled
            shape = (resolution,) * 3
            volume = F.interpolate(volume[None, None], size=shape, mode="trilinear", align_corners=True)[0, 0]
            refine = F.interpolate(refine[None, None].float(), size=shape, mode="nearest")[0, 0] > 0
            unsettled = F.interpolate(unsettled[None, None].float(), size=shape, mode="nearest")[0, 0] > 0
            targets = points[refine]
            volume[refine] = soft_vote(targets, masks, cam_to_box, intrinsics, params, ctx, sure, near)
            evaluated += targets.shape[0]
        if ctx is not None:
            ctx.on_progress((index + 1) / len(resolutions), f"hull {resolution}^3")
    assert volume is not None
    report = CarveReport(evaluated, final, [int(view) for view in views], inconsistent)
    return HullResult(volume.cpu().numpy().astype(np.float32), level), report


def load_confidence(scene_folder: Path) -> np.ndarray | None:
    """(N, H, W) uint8: how sure the scene's estimated masks are of their background
    (``CONFIDENCE_FILE``); None where the masks were given (or preprocess wrote none)."""
    if _preprocess_record(scene_folder).get("masks") != "estimated":
        return None
    if not (scene_folder / CONFIDENCE_FILE).is_file():
        return None
    with np.load(scene_folder / CONFIDENCE_FILE) as data:
        return data["confidence"]


def _preprocess_record(scene_folder: Path) -> dict:
    record = scene_folder / STAGE_RECORD
    return json.loads(record.read_text()) if record.is_file() else {}


def support_in_box(scene: Scene, plane: dict) -> tuple[np.ndarray, float]:
    """The support ``plane`` (world frame, as preprocess records it) in the box frame: (normal (3,),
    offset) with ``normal . p + offset`` a point's height above it in box units."""
    linear, offset = scene.box_to_world[:3, :3], scene.box_to_world[:3, 3]
    normal = np.asarray(plane["normal"], dtype=np.float64)
    normal_box = linear.T @ normal  # signed world distance = normal_box . box + constant
    constant = float(normal @ offset + float(plane["offset"]))
    scale = float(np.linalg.norm(normal_box))  # world units per box unit along the normal
    return normal_box / scale, constant / scale


def support_zone(scene: Scene, plane: dict, fraction: float) -> np.ndarray:
    """(4,) the points within ``fraction`` of the box's height above the support: ``zone[:3] . p +
    zone[3] < 0`` (``carve``'s ``zone``)."""
    normal, offset = support_in_box(scene, plane)
    corners = np.array(list(itertools.product((-1.0, 1.0), repeat=3)))
    top = float((corners @ normal + offset).max())
    return np.append(normal, offset - fraction * max(top, 0.0))


def clip_below_support(result: HullResult, scene: Scene, plane: dict) -> HullResult:
    """The hull with nothing below the plane the object stands on.

    ``plane`` is in the world frame (``normal . x + offset = 0``, the normal pointing up, as
    preprocess records it for estimated masks). Every camera of such a capture looks down on the
    table, so no silhouette can carve under the object: without the cut, the hull hangs below the
    table top. The occupancy is capped by a one-voxel ramp across the plane, so the cut surface lies
    on the plane to a fraction of a voxel.
    """
    resolution = result.occupancy.shape[0]
    normal_box, constant = support_in_box(scene, plane)
    axis = grid_coordinates(resolution)
    height = (
        normal_box[0] * axis[:, None, None]
        + normal_box[1] * axis[None, :, None]
        + normal_box[2] * axis[None, None, :]
        + constant
    )  # (R, R, R) box units above the plane
    voxel = 2.0 / (resolution - 1)
    cap = np.clip(result.level + height / voxel, 0.0, 1.0).astype(np.float32)
    return HullResult(occupancy=np.minimum(result.occupancy, cap), level=result.level)


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
    preprocessed = _preprocess_record(scene_folder)
    if preprocessed.get("masks") == "estimated":
        tolerance = math.floor(params.estimated_mask_tolerance_fraction * len(scene.training_views))
        params = replace(
            params,
            tolerance_views=max(params.tolerance_views, tolerance),
            neighbour_views=max(params.neighbour_views, params.estimated_mask_neighbour_views),
        )
    confidence = load_confidence(scene_folder)
    support = preprocessed.get("support_plane")
    zone = None
    if confidence is not None and support and params.estimated_mask_support_zone > 0:
        zone = support_zone(scene, support, params.estimated_mask_support_zone)
    ctx.on_progress(0.0, "carving the visual hull")
    result, report = carve(scene, params, ctx.device, ctx, confidence, zone)
    carved_inside = int(result.inside.sum())
    if support:
        result = clip_below_support(result, scene, support)
    inside = result.inside
    below_support_removed = 1.0 - int(inside.sum()) / max(carved_inside, 1)
    if not inside.any():
        raise CaptureError("empty_hull", "the silhouettes share no common volume: masks or cameras disagree")
    figures = {
        "stage": STAGE,
        "seconds": round(watch.seconds, 3),
        "device": str(ctx.device),
        "resolution": report.resolution,
        "level": result.level,
        "occupied_fraction": float(inside.mean()),
        "below_support_removed": below_support_removed,
        "points_evaluated": report.evaluated,
        "views": len(report.views),
        "background_confidence": confidence is not None,  # estimated masks: sure views carve alone
        "inconsistent_views": [scene.names[view] for view in report.inconsistent_views],
        "warnings": [
            f"view {scene.names[view]} disagrees with the others and was left out of the hull"
            for view in report.inconsistent_views
        ],
        "params": asdict(params),
    }
    ctx.check_stop()
    folder = ctx.work_dir(STAGE)
    np.savez_compressed(
        folder / HULL_FILE,
        occupancy=result.occupancy,
        level=np.float32(result.level),
        resolution=np.int64(report.resolution),
    )
    write_stage_record(folder, figures)
    ctx.on_progress(1.0, "hull done")
    return figures
