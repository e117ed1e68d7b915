"""Stage 2: decode, resize, and place the scene in a normalised box derived from the silhouettes.

Images and masks are decoded from the zip (names from the manifest), resized so the longer side is
at most the preset's ``long_side`` (never upsampled; area averaging on premultiplied colour, so the
mask keeps sub-pixel coverage), and the intrinsics scaled by the same per-axis factors (continuous
pixel coordinates with the origin at the image corner scale exactly). Frames with OpenCV lens
distortion are then resampled into pinhole images with the same intrinsics.

The box comes from the silhouettes alone: a coarse k-of-n carve over the region the cameras look
at (the least-squares meeting point of their optical axes, out to the median camera distance,
grown if the carve touches its edge), then a finer carve over the bounds of the first. The carved
points' bounding cube, grown by ``box_margin``, becomes [-1, 1]^3: ``box_to_world`` is a
similarity (uniform scale + translation, no rotation). Cameras are stored RIGID in box units:
``cam_to_box = [[R, (t - centre) / scale], [0, 1]]`` for ``cam_to_world = [[R, t], [0, 1]]``,
which projects exactly like ``world_to_box @ cam_to_world`` but keeps depths in box units.

Held-out views (for report figures): every ``holdout_every``-th view starting half-way into the
first stride, none below ``min_views_for_holdout`` views.

Writes ``work/preprocess/scene.npz`` (``Scene``) and ``stage.json``.
"""

from __future__ import annotations

import json
import math
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gpu_container.engine import imageio
from gpu_container.engine.cameras import intrinsics_matrix, project
from gpu_container.engine.context import PRESETS, CaptureError, StageContext, Stopwatch, write_stage_record
from gpu_container.engine.scene import Scene
from gpu_container.engine.validate import MANIFEST_FILE
from gpu_container.engine.validate import STAGE as VALIDATE_STAGE

STAGE = "preprocess"
DECODE_PIXEL_LIMIT = 1 << 31  # validate enforced the real limit; this only silences Pillow's guess


@dataclass(frozen=True)
class PreprocessParams:
    long_side: int  # pixels of the resized images' longer side (images already smaller stay as they are)
    coarse_resolution: int = 32  # grid points per axis of the carve that finds the object
    carve_resolution: int = 48  # grid points per axis of the carve over the coarse bounds
    carve_tolerance_fraction: float = 0.05  # views allowed to disagree (k-of-n), as a fraction of all views
    carve_min_seen_fraction: float = 0.5  # a kept point must project inside this fraction of the images
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


def carve_points(
    points: torch.Tensor,
    masks: torch.Tensor,
    cam_to_frame: torch.Tensor,
    intrinsics: torch.Tensor,
    params: PreprocessParams,
) -> torch.Tensor:
    """(P,) bool: inside all silhouettes but a tolerated few, and inside enough of the images."""
    num_views, height, width = masks.shape
    tolerance = math.floor(params.carve_tolerance_fraction * num_views)
    min_seen = math.ceil(params.carve_min_seen_fraction * num_views)
    chunk = max(1, params.samples_per_chunk // num_views)
    view = torch.arange(num_views, device=points.device)[:, None]
    keep = []
    for start in range(0, len(points), chunk):
        uv, depth = project(points[start : start + chunk], cam_to_frame, intrinsics)  # (N, p, 2), (N, p)
        u, v = uv[..., 0], uv[..., 1]
        seen = (depth > 0) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
        cols = u.floor().long().clamp(0, width - 1)
        rows = v.floor().long().clamp(0, height - 1)
        misses = seen & ~masks[view, rows, cols]
        keep.append((misses.sum(dim=0) <= tolerance) & (seen.sum(dim=0) >= min_seen))
    return torch.cat(keep)


def _grid(low: np.ndarray, high: np.ndarray, resolution: int, origin: np.ndarray, device: torch.device):
    """(R^3, 3) float32 grid points relative to ``origin`` (float32 keeps precision near the object)."""
    axes = [np.linspace(low[i] - origin[i], high[i] - origin[i], resolution) for i in range(3)]
    points = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    return torch.from_numpy(points.astype(np.float32)).to(device)


def _kept_index_bounds(kept: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    index = kept.nonzero().cpu().numpy()
    return index.min(axis=0), index.max(axis=0)


def silhouette_bounds(
    masks: np.ndarray,
    cam_to_world: np.ndarray,
    intrinsics: np.ndarray,
    params: PreprocessParams,
    ctx: StageContext,
) -> tuple[np.ndarray, np.ndarray, float]:
    """(low, high) world corners of the carved silhouettes' bounds and the kept fraction of the fine grid."""
    device = ctx.device
    full_views = int((masks >= params.mask_threshold).all(axis=(1, 2)).sum())
    if full_views > params.max_full_mask_fraction * len(masks):
        raise CaptureError(
            "missing_mask", f"{full_views} of {len(masks)} masks have no background: the object is not masked"
        )
    masks_t = torch.from_numpy(masks >= params.mask_threshold).to(device)
    centre = look_at_point(cam_to_world)
    cams_local = cam_to_world.copy()
    cams_local[:, :3, 3] -= centre
    cams = torch.from_numpy(cams_local.astype(np.float32)).to(device)
    intr = torch.from_numpy(intrinsics.astype(np.float32)).to(device)
    half = float(np.median(np.linalg.norm(cams_local[:, :3, 3], axis=1)))
    resolution = params.coarse_resolution
    for _ in range(params.max_search_growths + 1):
        ctx.check_stop()
        low, high = centre - half, centre + half
        kept = carve_points(_grid(low, high, resolution, centre, device), masks_t, cams, intr, params)
        kept = kept.reshape((resolution,) * 3)
        if not kept.any():
            raise CaptureError(
                "empty_silhouette_hull",
                "no point lies inside the silhouettes: the masks and cameras disagree",
            )
        faces = (kept[0], kept[-1], kept[:, 0], kept[:, -1], kept[:, :, 0], kept[:, :, -1])
        if not any(bool(face.any()) for face in faces):
            break
        half *= params.search_growth
    else:
        raise CaptureError(
            "unbounded_silhouette_hull",
            "the silhouettes do not bound the object (do the cameras surround it?)",
        )
    ctx.on_progress(0.8, "carved the coarse bounds")
    coarse_cell = 2 * half / (resolution - 1)
    first, last = _kept_index_bounds(kept)
    low_fine, high_fine = low + (first - 1) * coarse_cell, low + (last + 1) * coarse_cell
    resolution = params.carve_resolution
    kept_fine = carve_points(
        _grid(low_fine, high_fine, resolution, centre, device), masks_t, cams, intr, params
    )
    if not kept_fine.any():  # thinner than the fine grid's sampling: keep the coarse bounds
        return low_fine, high_fine, 0.0
    fine_cell = (high_fine - low_fine) / (resolution - 1)
    first, last = _kept_index_bounds(kept_fine.reshape((resolution,) * 3))
    low_obj, high_obj = low_fine + (first - 1) * fine_cell, low_fine + (last + 1) * fine_cell
    return low_obj, high_obj, float(kept_fine.float().mean())


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
    frames = manifest["frames"]
    width, height = resized_size(manifest["width"], manifest["height"], params.long_side)
    rgba = decode_frames(
        ctx.input_dir / manifest["archive"], frames, (width, height), params.decode_workers, ctx
    )
    intrinsics = np.stack([scaled_intrinsics(frame, width, height) for frame in frames])
    for index, frame in enumerate(frames):
        if frame.get("distortion"):
            rgba[index] = imageio.undistort_rgba(rgba[index], intrinsics[index], frame["distortion"])
    cam_to_world = np.array([frame["transform_matrix"] for frame in frames], dtype=np.float64)
    masks = rgba[..., 3]
    low, high, kept_fraction = silhouette_bounds(masks, cam_to_world, intrinsics, params, ctx)
    box_to_world = box_to_world_matrix(low, high, params.box_margin)
    ctx.check_stop()
    scene = Scene(
        images=np.ascontiguousarray(rgba[..., :3]),
        masks=np.ascontiguousarray(masks),
        intrinsics=intrinsics,
        cam_to_box=cameras_in_box(cam_to_world, box_to_world),
        box_to_world=box_to_world,
        holdout=holdout_views(len(frames), params),
        names=[frame["file"] for frame in frames],
    )
    out = ctx.work_dir(STAGE)
    scene.save(out)
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
        "carve_kept_fraction": kept_fraction,
        "params": asdict(params),
    }
    write_stage_record(out, figures)
    return figures
