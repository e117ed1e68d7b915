"""Stage 2: decode, resize, and place the scene in a normalised box derived from the silhouettes.

Images and masks are decoded from the zip (names from the manifest), resized so the longer side is
at most the preset's ``long_side`` (never upsampled; area averaging on premultiplied colour, so the
mask keeps sub-pixel coverage), and the intrinsics scaled by the same per-axis factors (continuous
pixel coordinates with the origin at the image corner scale exactly). Frames with OpenCV lens
distortion are then resampled into pinhole images with the same intrinsics.

The box comes from the training views' silhouettes alone (held-out views never shape it): a
conservative cell carve (a cell goes only when some view proves that no point of it projects into
the silhouette, so thin parts are never lost to the grid's sampling) over a cube around the point
the cameras look at (the least-squares meeting point of their optical axes, out to the median
camera distance), grown while kept cells touch its faces, then a finer carve over the kept cells'
bounds. Their bounding cube, grown by ``box_margin``, becomes [-1, 1]^3: ``box_to_world`` is a
similarity (uniform scale + translation, no rotation). The cube is then projected into every
training view: silhouettes crossing its projection inside the image (the object clipped, or masks
that disagree) fail the job beyond ``max_crossing_view_fraction`` (more for estimated masks:
``estimated_capture.ESTIMATED_MASK_MAX_CROSSING_FRACTION``) and are warnings below it, as are
silhouettes that touch the image border (the object leaves the frame). Cameras are stored RIGID in box units:
``cam_to_box = [[R, (t - centre) / scale], [0, 1]]`` for ``cam_to_world = [[R, t], [0, 1]]``,
which projects exactly like ``world_to_box @ cam_to_world`` but keeps depths in box units.

Held-out views (for report figures): every ``holdout_every``-th view starting half-way into the
first stride, none below ``min_views_for_holdout`` views.

Writes ``work/preprocess/scene.npz`` (``Scene``) and ``stage.json``.
"""

from __future__ import annotations

import itertools
import json
import math
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from gpu_container.engine import estimated_capture, imageio
from gpu_container.engine.cameras import intrinsics_matrix, project
from gpu_container.engine.context import PRESETS, CaptureError, StageContext, Stopwatch, write_stage_record
from gpu_container.engine.footprints import footprints, integral_images, rectangle_sums
from gpu_container.engine.hull import CONFIDENCE_FILE
from gpu_container.engine.scene import Scene
from gpu_container.engine.validate import MANIFEST_FILE
from gpu_container.engine.validate import STAGE as VALIDATE_STAGE

STAGE = "preprocess"
DECODE_PIXEL_LIMIT = 1 << 31  # validate enforced the real limit; this only silences Pillow's guess
PROJECTION_SHIFT = 4  # fractional bits of the box projection's polygon (OpenCV fixed point)
PROJECTION_SUBPIXELS = 1 << PROJECTION_SHIFT


@dataclass(frozen=True)
class PreprocessParams:
    long_side: int  # pixels of the resized images' longer side (images already smaller stay as they are)
    coarse_resolution: int = 32  # cells per axis of the carve that finds the object
    carve_resolution: int = 64  # cells along the longest axis of the carve over the coarse bounds
    # Views allowed to exclude a cell that is kept anyway, as a fraction of the views: 0 where the masks
    # are given (exact); estimated masks may miss parts of the object, and a tolerance keeps those.
    carve_tolerance_fraction: float = 0.0
    carve_min_seen_fraction: float = 0.5  # a kept cell must project (partly) into this fraction of the images
    # Pieces of the carve smaller than this fraction of the largest are phantoms of sparse views, dropped.
    min_piece_fraction: float = 0.05
    # More training views than this fraction with a silhouette crossing the box's projection (inside the
    # image): the object is clipped and the job fails (fewer: a warning in the stage record).
    max_crossing_view_fraction: float = 0.1
    mask_threshold: int = 1  # mask values (0-255) counted as object while carving: any coverage
    max_full_mask_fraction: float = 0.5  # more views than this with no background: the masks are missing
    box_margin: float = 0.05  # bounding cube's half side grown by this fraction
    search_growth: float = 2.0  # the search cube grows by this factor when the carve touches its edge
    max_search_growths: int = 3
    holdout_every: int = 8
    min_views_for_holdout: int = 8
    decode_workers: int = 4  # threads decoding images (Pillow releases the GIL)
    samples_per_chunk: int = 1 << 22  # views x points projected at once (memory bound)


PRESET_PARAMS = {
    "draft": PreprocessParams(long_side=128),
    "standard": PreprocessParams(long_side=256),
    "high": PreprocessParams(long_side=512),
}


def params_for(preset: str) -> PreprocessParams:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {PRESETS}")
    return PRESET_PARAMS[preset]


# --- images ----------------------------------------------------------------------------------


def resized_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """(width, height) with the longer side at most ``long_side``; never larger than the original."""
    scale = min(1.0, long_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _decode_frame(archive: zipfile.ZipFile, frame: dict, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 4) uint8 RGBA (alpha = mask) of one manifest frame at ``size`` (width, height)."""
    image = imageio.open_image(imageio.read_entry(archive, frame["file"]), frame["file"], DECODE_PIXEL_LIMIT)
    mask = None
    if frame["mask"]:
        mask = imageio.open_image(
            imageio.read_entry(archive, frame["mask"]), frame["mask"], DECODE_PIXEL_LIMIT
        )
    rgba = Image.fromarray(imageio.rgba_array(image, mask), mode="RGBA")
    if rgba.size != size:
        rgba = rgba.resize(size, Image.Resampling.BOX)  # Pillow resamples RGBA premultiplied
    return np.asarray(rgba)


def decode_frames(
    archive_path: Path, frames: list[dict], size: tuple[int, int], workers: int, ctx: StageContext
) -> np.ndarray:
    """(N, H, W, 4) uint8 of all frames, decoded in threads (one zip handle per thread)."""
    out = np.empty((len(frames), size[1], size[0], 4), dtype=np.uint8)
    local = threading.local()
    handles: list[zipfile.ZipFile] = []

    def work(index: int) -> None:
        if not hasattr(local, "archive"):
            local.archive = imageio.open_archive(archive_path)
            handles.append(local.archive)
        out[index] = _decode_frame(local.archive, frames[index], size)

    try:
        with ThreadPoolExecutor(max(1, workers)) as pool:
            futures = [pool.submit(work, index) for index in range(len(frames))]
            try:
                for done, future in enumerate(as_completed(futures), start=1):
                    future.result()
                    ctx.check_stop()
                    ctx.on_progress(0.6 * done / len(frames), f"decoded image {done} of {len(frames)}")
            finally:
                for future in futures:
                    future.cancel()
    finally:
        for handle in handles:
            handle.close()
    return out


def scaled_intrinsics(frame: dict, width: int, height: int) -> np.ndarray:
    """(3, 3) intrinsics of ``frame`` for its image resized to ``width`` x ``height``."""
    scale_x, scale_y = width / frame["w"], height / frame["h"]
    return intrinsics_matrix(
        frame["fl_x"] * scale_x, frame["fl_y"] * scale_y, frame["cx"] * scale_x, frame["cy"] * scale_y
    )


# --- the box from the silhouettes --------------------------------------------------------------


def look_at_point(cam_to_world: np.ndarray) -> np.ndarray:
    """(3,) least-squares meeting point of the cameras' optical axes (their -Z axes)."""
    origins = cam_to_world[:, :3, 3]
    axes = -cam_to_world[:, :3, 2]
    axes = axes / np.linalg.norm(axes, axis=1, keepdims=True)
    projectors = np.eye(3)[None] - axes[:, :, None] * axes[:, None, :]  # (N, 3, 3)
    lhs = projectors.sum(axis=0)
    rhs = np.einsum("nij,nj->i", projectors, origins)
    point, *_ = np.linalg.lstsq(lhs, rhs, rcond=None)
    return point


def carve_cells(
    low: np.ndarray,
    cell: np.ndarray,
    counts: tuple[int, int, int],
    origin: np.ndarray,
    silhouettes: Silhouettes,
    params: PreprocessParams,
    candidates: torch.Tensor | None = None,
) -> torch.Tensor:
    """(X, Y, Z) bool: the cells of a grid that may hold part of the object (a conservative carve).

    Cell ``(i, j, k)`` spans ``low + (i, j, k) * cell`` to one cell further (world units). A view
    excludes a cell only when the cell lies in front of it, its projection's bounding rectangle lies
    wholly inside the image and no silhouette pixel falls in that rectangle: then no point of the
    cell projects into the silhouette. A cell is kept when at most ``tolerance`` views exclude it and
    at least ``min_seen`` views see part of it, so a cell holding object is never carved however
    thin the object is (with correct masks), and a point outside an image constrains nothing.
    ``candidates`` (X, Y, Z) bool: only these cells are tested (the others are known to be empty).
    """
    num_views = silhouettes.count
    height, width = silhouettes.height, silhouettes.width
    device = silhouettes.device
    tolerance = math.floor(params.carve_tolerance_fraction * num_views)
    min_seen = math.ceil(params.carve_min_seen_fraction * num_views)
    nodes = _grid(low, low + cell * np.asarray(counts), np.asarray(counts) + 1, origin, device)
    ny, nz = counts[1] + 1, counts[2] + 1
    index = torch.arange(math.prod(counts), device=device)
    i, j, k = index // (counts[1] * counts[2]), (index // counts[2]) % counts[1], index % counts[2]
    base = (i * ny + j) * nz + k  # (C,) node index of each cell's lowest corner
    offsets = torch.tensor(
        [(dx * ny + dy) * nz + dz for dx, dy, dz in itertools.product((0, 1), repeat=3)], device=device
    )
    alive = index if candidates is None else index[candidates.reshape(-1)]  # each chunk tests only these
    misses = torch.zeros(len(index), dtype=torch.int32, device=device)
    seen = torch.zeros(len(index), dtype=torch.int32, device=device)
    first = 0
    while first < num_views and len(alive):
        corners, inverse = torch.unique(base[alive][:, None] + offsets[None], return_inverse=True)  # (M, 8)
        chunk = max(1, params.samples_per_chunk // (8 * len(alive)))
        views = slice(first, first + chunk)
        uv, depth = project(nodes[corners], silhouettes.cam_to_world[views], silhouettes.intrinsics[views])
        n = uv.shape[0]
        u, v, depth = uv[..., 0][:, inverse], uv[..., 1][:, inverse], depth[:, inverse]  # (n, M, 8)
        rect = footprints(u, v, depth, width, height)
        pixels = rectangle_sums(silhouettes.integral[views], rect)
        misses[alive] += (rect.inside_image & (pixels == 0)).sum(dim=0, dtype=torch.int32)
        seen[alive] += rect.overlaps_image.sum(dim=0, dtype=torch.int32)
        first += n
        possible = (misses[alive] <= tolerance) & (seen[alive] + (num_views - first) >= min_seen)
        alive = alive[possible]
    kept = torch.zeros(len(index), dtype=torch.bool, device=device)
    kept[alive] = seen[alive] >= min_seen
    return kept.reshape(counts)


@dataclass
class Silhouettes:
    """The training views' silhouettes and cameras on the device, relative to ``origin`` (float32
    keeps precision near the object)."""

    integral: torch.Tensor  # (N, H + 1, W + 1) int32 summed-area tables of the masks
    cam_to_world: torch.Tensor  # (N, 4, 4) float32, positions relative to ``origin``
    intrinsics: torch.Tensor  # (N, 3, 3) float32
    origin: np.ndarray  # (3,) world
    height: int
    width: int

    @property
    def count(self) -> int:
        return int(self.integral.shape[0])

    @property
    def device(self) -> torch.device:
        return self.integral.device


def _grid(low: np.ndarray, high: np.ndarray, resolution, origin: np.ndarray, device: torch.device):
    """(prod(resolution), 3) float32 grid points relative to ``origin`` (``resolution`` per axis or one
    for all)."""
    counts = np.broadcast_to(np.asarray(resolution), (3,))
    axes = [np.linspace(low[i] - origin[i], high[i] - origin[i], int(counts[i])) for i in range(3)]
    points = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    return torch.from_numpy(points.astype(np.float32)).to(device)


def _kept_bounds(kept: torch.Tensor, low: np.ndarray, cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World corners of the bounding box of the kept cells."""
    index = kept.nonzero().cpu().numpy()
    return low + index.min(axis=0) * cell, low + (index.max(axis=0) + 1) * cell


def main_components(kept: torch.Tensor, min_fraction: float) -> torch.Tensor:
    """The kept cells in connected pieces (cells sharing a corner) of at least ``min_fraction`` of
    the largest piece's cells.

    A connected object lies in one piece of a conservative carve; the small pieces beside it are the
    phantom volumes that few silhouettes cannot rule out (consistent with every view, empty in fact).
    """
    labels, count = ndimage.label(kept.cpu().numpy(), structure=np.ones((3, 3, 3), dtype=bool))
    if count <= 1:
        return kept
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    chosen = np.flatnonzero(sizes >= min_fraction * sizes.max())
    return torch.from_numpy(np.isin(labels, chosen)).to(kept.device)


def _touches_faces(kept: torch.Tensor) -> bool:
    faces = (kept[0], kept[-1], kept[:, 0], kept[:, -1], kept[:, :, 0], kept[:, :, -1])
    return any(bool(face.any()) for face in faces)


@dataclass(frozen=True)
class Bounds:
    """What ``silhouette_bounds`` found: the object's world bounds and how the views agree with them."""

    low: np.ndarray  # (3,) world
    high: np.ndarray  # (3,) world
    kept_fraction: float  # of the fine carve's cells
    searches: int  # search cubes carved (1 + growths)
    frame_views: list[
        int
    ]  # training views whose silhouette touches the image border (object leaves the frame)
    crossing_views: list[int]  # ... whose silhouette crosses the box's projection (inside the image)


def silhouette_bounds(
    masks: np.ndarray,
    cam_to_world: np.ndarray,
    intrinsics: np.ndarray,
    params: PreprocessParams,
    ctx: StageContext,
    box_margin: float | None = None,
) -> Bounds:
    """World bounds that contain every point the silhouettes (of the views given) allow.

    A conservative cell carve (``carve_cells``) over a cube around the cameras' meeting point, grown
    while kept cells touch its faces, then a finer carve over the kept cells' bounds. Last, the box
    (grown by ``box_margin``) is projected into every view: a silhouette that crosses the projection
    inside the image is a view the box does not explain (its mask disagrees with the others, or the
    object is clipped); one that touches the image border shows the object leaving the frame.
    """
    device = ctx.device
    full_views = int((masks >= params.mask_threshold).all(axis=(1, 2)).sum())
    if full_views > params.max_full_mask_fraction * len(masks):
        raise CaptureError(
            "missing_mask", f"{full_views} of {len(masks)} masks have no background: the object is not masked"
        )
    binary = masks >= params.mask_threshold
    centre = look_at_point(cam_to_world)
    cams_local = cam_to_world.copy()
    cams_local[:, :3, 3] -= centre
    silhouettes = Silhouettes(
        integral=integral_images(torch.from_numpy(binary).to(device)),
        cam_to_world=torch.from_numpy(cams_local.astype(np.float32)).to(device),
        intrinsics=torch.from_numpy(intrinsics.astype(np.float32)).to(device),
        origin=centre,
        height=masks.shape[1],
        width=masks.shape[2],
    )
    half = float(np.median(np.linalg.norm(cams_local[:, :3, 3], axis=1)))
    resolution = params.coarse_resolution
    counts = (resolution,) * 3
    searches = 0
    while True:
        searches += 1
        ctx.check_stop()
        low = centre - half
        cell = np.full(3, 2 * half / resolution)
        kept = carve_cells(low, cell, counts, centre, silhouettes, params)
        if not kept.any():
            raise CaptureError(
                "empty_silhouette_hull",
                "no point lies inside the silhouettes: the masks and cameras disagree",
            )
        kept = main_components(kept, params.min_piece_fraction)
        if not _touches_faces(kept):
            break
        if searches > params.max_search_growths:
            raise CaptureError(
                "unbounded_silhouette_hull",
                "the silhouettes do not bound the object (do the cameras surround it?)",
            )
        half *= params.search_growth
    ctx.on_progress(0.75, "carved the coarse bounds")
    # The fine grid splits each coarse cell of the kept cells' bounds into ``split`` a side; only the
    # children of kept coarse cells can hold the object.
    index = kept.nonzero()
    first, last = index.amin(dim=0), index.amax(dim=0)
    kept = kept[first[0] : last[0] + 1, first[1] : last[1] + 1, first[2] : last[2] + 1]
    split = max(1, math.ceil(params.carve_resolution / max(kept.shape)))
    for axis in range(3):
        kept = kept.repeat_interleave(split, dim=axis)
    low = low + first.cpu().numpy() * cell
    fine_cell = cell / split
    kept_fine = carve_cells(low, fine_cell, tuple(kept.shape), centre, silhouettes, params, kept)
    if kept_fine.any():
        kept_fine = main_components(kept_fine, params.min_piece_fraction)
        low, high = _kept_bounds(kept_fine, low, fine_cell)
    ctx.on_progress(0.85, "carved the fine bounds")
    margin = params.box_margin if box_margin is None else box_margin
    frame_views, crossing_views = box_agreement(binary, cam_to_world, intrinsics, low, high, margin)
    return Bounds(
        low=low,
        high=high,
        kept_fraction=float(kept_fine.float().mean()),
        searches=searches,
        frame_views=frame_views,
        crossing_views=crossing_views,
    )


def box_agreement(
    silhouettes: np.ndarray,
    cam_to_world: np.ndarray,
    intrinsics: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    margin: float,
) -> tuple[list[int], list[int]]:
    """Views whose silhouette (N, H, W bool) touches the image border, and views whose silhouette has
    pixels outside the projection of the cube ``box_to_world_matrix(low, high, margin)``."""
    box = box_to_world_matrix(low, high, margin)
    corners = np.array(list(itertools.product((-1.0, 1.0), repeat=3))) @ box[:3, :3].T + box[:3, 3]
    origin = box[:3, 3]
    uv, depth = project(
        torch.from_numpy((corners - origin).astype(np.float64)),
        torch.from_numpy(_shifted(cam_to_world, origin)),
        torch.from_numpy(intrinsics.astype(np.float64)),
    )
    uv, depth = uv.numpy(), depth.numpy()
    frame, crossing = [], []
    for view, silhouette in enumerate(silhouettes):
        border = (
            silhouette[0].any() or silhouette[-1].any() or silhouette[:, 0].any() or silhouette[:, -1].any()
        )
        if border:
            frame.append(view)
        if (depth[view] <= 0).any():  # the camera is inside the box or beside it: no projection to test
            continue
        footprint = np.zeros(silhouette.shape, dtype=np.uint8)
        hull = cv2.convexHull(np.round(uv[view] * PROJECTION_SUBPIXELS).astype(np.int32))
        cv2.fillConvexPoly(footprint, hull, 1, shift=PROJECTION_SHIFT)
        if (silhouette & (footprint == 0)).any():
            crossing.append(view)
    return frame, crossing


def _shifted(cam_to_world: np.ndarray, origin: np.ndarray) -> np.ndarray:
    shifted = cam_to_world.astype(np.float64).copy()
    shifted[:, :3, 3] -= origin
    return shifted


def box_to_world_matrix(low: np.ndarray, high: np.ndarray, margin: float) -> np.ndarray:
    """(4, 4) similarity taking [-1, 1]^3 to the cube around [low, high] grown by ``margin``."""
    centre = 0.5 * (low + high)
    half = 0.5 * float(np.max(high - low)) * (1.0 + margin)
    matrix = np.eye(4)
    matrix[:3, :3] *= half
    matrix[:3, 3] = centre
    return matrix


def cameras_in_box(cam_to_world: np.ndarray, box_to_world: np.ndarray) -> np.ndarray:
    """(N, 4, 4) rigid camera-to-box matrices (rotation kept, position in box units)."""
    scale = box_to_world[0, 0]
    cam_to_box = cam_to_world.copy()
    cam_to_box[:, :3, 3] = (cam_to_world[:, :3, 3] - box_to_world[:3, 3]) / scale
    return cam_to_box


def holdout_views(num_views: int, params: PreprocessParams) -> np.ndarray:
    if num_views < params.min_views_for_holdout:
        return np.zeros(0, dtype=np.int64)
    return np.arange(params.holdout_every // 2, num_views, params.holdout_every, dtype=np.int64)


# --- the stage ---------------------------------------------------------------------------------


def run(ctx: StageContext, params: PreprocessParams | None = None) -> dict:
    """Decode the capture listed in the manifest and write ``work/preprocess/scene.npz``."""
    params = params or params_for(ctx.preset)
    watch = Stopwatch()
    manifest_path = ctx.job_dir / "work" / VALIDATE_STAGE / MANIFEST_FILE
    if not manifest_path.is_file():
        raise CaptureError("missing_manifest", f"{manifest_path} not found: run validate first")
    manifest = json.loads(manifest_path.read_text())
    completion = None  # cameras and/or masks estimated where the capture lacks them (estimated_capture)
    if estimated_capture.needed(manifest):
        completion = estimated_capture.complete(ctx, manifest, params.decode_workers)
        manifest, ctx = completion.manifest, completion.rest_of_stage(ctx)
        params = replace(params, carve_tolerance_fraction=estimated_capture.ESTIMATED_MASK_CARVE_TOLERANCE)
        if completion.masks is not None:
            crossing = estimated_capture.ESTIMATED_MASK_MAX_CROSSING_FRACTION
            params = replace(params, max_crossing_view_fraction=crossing)
    frames = manifest["frames"]
    width, height = resized_size(manifest["width"], manifest["height"], params.long_side)
    if completion is not None and completion.frame_images is not None:  # a video's frames
        rgba = completion.rgba_at(width, height)
    else:
        rgba = decode_frames(
            ctx.input_dir / manifest["archive"], frames, (width, height), params.decode_workers, ctx
        )
    confidence = None  # how sure the estimated masks are of their background, for the hull stage
    if completion is not None and completion.masks is not None:
        rgba[..., 3] = completion.masks_at(width, height)
        if completion.confidence is not None:
            confidence = completion.confidence_at(width, height)
    intrinsics = np.stack([scaled_intrinsics(frame, width, height) for frame in frames])
    for index, frame in enumerate(frames):
        if frame.get("distortion"):
            rgba[index] = imageio.undistort_rgba(rgba[index], intrinsics[index], frame["distortion"])
            if confidence is not None:  # resampled as the mask is (beyond the source: not sure)
                confidence[index] = imageio.undistort_plane(
                    confidence[index], intrinsics[index], frame["distortion"]
                )
    cam_to_world = np.array([frame["transform_matrix"] for frame in frames], dtype=np.float64)
    masks = rgba[..., 3]
    holdout = holdout_views(len(frames), params)
    training = np.setdiff1d(np.arange(len(frames)), holdout)  # held-out views never shape the box
    bounds = silhouette_bounds(masks[training], cam_to_world[training], intrinsics[training], params, ctx)
    low, high = bounds.low, bounds.high
    crossing = [frames[int(training[view])]["file"] for view in bounds.crossing_views]
    leaving = [frames[int(training[view])]["file"] for view in bounds.frame_views]
    if len(crossing) > params.max_crossing_view_fraction * len(training):
        raise CaptureError(
            "object_clipped",
            f"in {len(crossing)} of {len(training)} views the object's silhouette crosses the bounds "
            f"the other views allow (first: {crossing[0]}): the object is clipped or the masks disagree",
        )
    warnings = []
    if crossing:
        warnings.append(
            f"{len(crossing)} view(s) show the object beyond the bounds the other views allow "
            f"(their masks disagree): {', '.join(crossing[:5])}"
        )
    if leaving:
        warnings.append(f"the object leaves the frame in {len(leaving)} view(s): {', '.join(leaving[:5])}")
    box_to_world = box_to_world_matrix(low, high, params.box_margin)
    ctx.check_stop()
    scene = Scene(
        images=np.ascontiguousarray(rgba[..., :3]),
        masks=np.ascontiguousarray(masks),
        intrinsics=intrinsics,
        cam_to_box=cameras_in_box(cam_to_world, box_to_world),
        box_to_world=box_to_world,
        holdout=holdout,
        names=[frame["file"] for frame in frames],
    )
    out = ctx.work_dir(STAGE)
    scene.save(out)
    if confidence is not None:
        np.savez_compressed(out / CONFIDENCE_FILE, confidence=np.ascontiguousarray(confidence))
    estimated_capture.write_cameras(out, manifest, holdout, completion)
    ctx.on_progress(1.0, "scene written")
    figures = {
        "stage": STAGE,
        "seconds": watch.seconds,
        "device": str(ctx.device),
        "views": scene.num_views,
        "holdout_views": len(scene.holdout),
        "width": width,
        "height": height,
        "resize_factor": width / manifest["width"],
        "box_to_world": box_to_world.tolist(),
        "object_extent_in_box": ((high - low) / box_to_world[0, 0]).tolist(),
        "carve_kept_fraction": bounds.kept_fraction,
        "bounds_searches": bounds.searches,
        "views_leaving_frame": len(leaving),
        "views_crossing_box": crossing,
        "warnings": warnings,
        "params": asdict(params),
        **(completion.figures if completion else {}),
    }
    write_stage_record(out, figures)
    return figures
