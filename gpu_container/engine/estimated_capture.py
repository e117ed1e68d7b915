"""What preprocess does for a capture that lacks cameras or masks: estimate them, before the rest runs.

``complete`` decodes the views at the size structure from motion works at (``SfmParams.max_image_size``),
then
- cameras absent (photo set, video): ``camera_estimation.estimate``; views that do not register are
  dropped (named in ``cameras.json`` and the stage record); cameras given (posed capture):
  ``camera_estimation.triangulate`` for the points only;
- finds the object and its support (``object_masks.find_object``);
- estimated cameras are moved into the upright frame (support plane y = 0, +Y up, the object's
  centre on the y axis) before anything else sees them, so the later steps of preprocess and every
  later stage get ordinary given cameras;
- masks absent: ``object_masks.estimate_masks``.

It returns a manifest in the validate stage's shape (the kept frames, with their cameras and
intrinsics at the original image size) and the masks, which preprocess puts in the alpha channel
of the decoded views. ``write_cameras`` writes ``cameras.json`` (every capture): the cameras used,
transforms.json convention, the result's frame, each view's status (used / held_out / dropped).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from gpu_container.engine import camera_estimation, object_masks, video_frames
from gpu_container.engine import preprocess as preprocess_stage  # circular: attributes used at call time only
from gpu_container.engine.context import StageContext

CAMERAS_FILE = "cameras.json"
SFM_FOLDER = "sfm"
ESTIMATION_BAND = 0.6  # share of the preprocess stage's progress the estimation takes when it runs
ESTIMATED_MASK_CARVE_TOLERANCE = 0.1  # preprocess's box carve lets this fraction of views disagree
# ... and its silhouettes crossing the box are warnings up to this fraction of the views, not 10 %:
# an estimated mask that takes in a patch of table beside the object crosses the box the others
# allow (the pocket block's photo set: 11 of 42 views, the job FAILED though its masks held the
# object); beyond it the masks broadly disagree (the wand's video with the table's strays: 33 of 41).
ESTIMATED_MASK_MAX_CROSSING_FRACTION = 0.4


@dataclass
class Completion:
    manifest: dict  # the validate manifest with only the kept frames, each with a camera
    masks: np.ndarray | None  # (N, h, w) uint8 estimated masks of the kept frames, None if given
    frame: str  # "capture" (given cameras) or "upright" (estimated)
    cameras: str  # "given" or "estimated"
    dropped: list[dict] = field(default_factory=list)  # {"file", "reason"}
    figures: dict = field(default_factory=dict)
    frame_images: np.ndarray | None = None  # (N, H, W, 3) uint8 kept frames of a video (no zip to decode)
    # (N, h, w) uint8: how sure each estimated mask is of its background (``hull.CONFIDENCE_FILE``)
    confidence: np.ndarray | None = None

    def confidence_at(self, width: int, height: int) -> np.ndarray:
        """(N, height, width) uint8 background confidence of the masks, area-resampled."""
        assert self.confidence is not None
        return resized(self.confidence, width, height)

    def rgba_at(self, width: int, height: int) -> np.ndarray:
        """(N, height, width, 4) uint8 of a video's kept frames (alpha 255)."""
        assert self.frame_images is not None
        rgb = resized(self.frame_images, width, height)
        alpha = np.full((*rgb.shape[:3], 1), 255, dtype=np.uint8)
        return np.concatenate([rgb, alpha], axis=-1)

    def masks_at(self, width: int, height: int) -> np.ndarray:
        """(N, height, width) uint8 masks, area-resampled."""
        assert self.masks is not None
        return resized(self.masks, width, height)

    @staticmethod
    def rest_of_stage(ctx: StageContext) -> StageContext:
        """``ctx`` whose progress maps the rest of preprocess after the estimation's share."""
        return ctx.within(ESTIMATION_BAND, 1.0)


def resized(images: np.ndarray, width: int, height: int) -> np.ndarray:
    """(N, height, width, ...) uint8 ``images`` (N, H, W, ...), area-resampled where the size differs."""
    if images.shape[1:3] == (height, width):
        return images
    size = (width, height)
    return np.stack(
        [np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX)) for image in images]
    )


def needed(manifest: dict) -> bool:
    """True when the manifest says the capture's cameras or masks must be estimated."""
    estimate = manifest.get("estimate") or {}
    return bool(estimate.get("cameras") or estimate.get("masks"))


def _known_intrinsics(frames: list[dict], width: int, height: int) -> np.ndarray | None:
    """(N, 3, 3) intrinsics at ``width`` x ``height`` when every frame has them, else None."""
    if not all(frame.get("fl_x") for frame in frames):
        return None
    return np.stack([preprocess_stage.scaled_intrinsics(frame, width, height) for frame in frames])


def _estimated_frame(
    frame: dict, cam_to_world: np.ndarray, intrinsics: np.ndarray, k1: float, size: tuple
) -> dict:
    """``frame`` with the estimated camera, intrinsics scaled from ``size`` (w, h) back to its own."""
    scale_x, scale_y = frame["w"] / size[0], frame["h"] / size[1]
    return {
        **frame,
        "transform_matrix": cam_to_world.tolist(),
        "fl_x": float(intrinsics[0, 0] * scale_x),
        "fl_y": float(intrinsics[1, 1] * scale_y),
        "cx": float(intrinsics[0, 2] * scale_x),
        "cy": float(intrinsics[1, 2] * scale_y),
        "distortion": {"k1": float(k1)} if k1 else None,
    }


def _video_views(
    ctx: StageContext, manifest: dict, band: tuple[float, float]
) -> tuple[list[dict], np.ndarray]:
    """The frames ``video_frames`` picks: manifest-like frames and their images (N, H, W, 3)."""
    low, high = band
    selection = video_frames.select_frames(
        ctx.input_dir / manifest["archive"],
        on_progress=lambda fraction, message: ctx.on_progress(low + (high - low) * fraction, message),
        should_stop=ctx.should_stop,
    )
    images = np.stack([picked.image for picked in selection.frames])
    height, width = images.shape[1:3]
    frames = [
        {
            "file": f"{manifest['archive']}#t={picked.time_s:.3f}",
            "mask": None,
            "transform_matrix": None,
            **dict.fromkeys(("fl_x", "fl_y", "cx", "cy")),
            "intrinsics": None,
            "distortion": None,
            "w": width,
            "h": height,
            "time_s": picked.time_s,
        }
        for picked in selection.frames
    ]
    return frames, images


def complete(ctx: StageContext, manifest: dict, workers: int = 4) -> Completion:
    """Estimate what ``manifest`` lacks (cameras and/or masks); progress in the first share of the stage."""
    sfm_params = camera_estimation.params_for(ctx.preset)
    mask_params = object_masks.params_for(ctx.preset)
    band = ESTIMATION_BAND
    video = manifest["form"] == "video"
    full_frames = None
    if video:
        frames, full_frames = _video_views(ctx, manifest, (0.0, 0.15 * band))
        manifest = {**manifest, "width": frames[0]["w"], "height": frames[0]["h"]}
    else:
        frames = manifest["frames"]
    size = preprocess_stage.resized_size(manifest["width"], manifest["height"], sfm_params.max_image_size)
    if video:
        images = resized(full_frames, *size)
    else:
        rgba = preprocess_stage.decode_frames(
            ctx.input_dir / manifest["archive"], frames, size, workers, ctx.within(0.0, 0.15 * band)
        )
        images = np.ascontiguousarray(rgba[..., :3])
    folder = ctx.work_dir(preprocess_stage.STAGE) / SFM_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    estimating = bool(manifest["estimate"]["cameras"])
    sfm_band = (0.15 * band, 0.7 * band)
    if estimating:
        sfm = camera_estimation.estimate(
            images,
            folder,
            sfm_params,
            ctx,
            intrinsics=_known_intrinsics(frames, *size),
            video=video,
            refine_intrinsics=any(frame.get("intrinsics") != "transforms" for frame in frames),
            band=sfm_band,
        )
    else:
        cam_to_world = np.array([frame["transform_matrix"] for frame in frames], dtype=np.float64)
        intrinsics = np.stack([preprocess_stage.scaled_intrinsics(frame, *size) for frame in frames])
        sfm = camera_estimation.triangulate(
            images, cam_to_world, intrinsics, folder, sfm_params, ctx, band=sfm_band
        )
    kept = np.flatnonzero(sfm.registered)
    found = object_masks.find_object(sfm.points, sfm.cam_to_world[kept], mask_params)
    if estimating:
        upright = object_masks.upright_transform(found)
        sfm = sfm.transformed(upright)
        found = found.transformed(upright)
    masks = confidence = None
    mask_figures: dict = {}
    if manifest["estimate"]["masks"]:
        # masks at the size the later stages work at or ``min_work_size`` (no finer than the features)
        long_side = preprocess_stage.params_for(ctx.preset).long_side
        mask_size = preprocess_stage.resized_size(*size, max(long_side, mask_params.min_work_size))
        scale = np.diag([mask_size[0] / size[0], mask_size[1] / size[1], 1.0])
        masks, confidence, mask_figures = object_masks.estimate_masks(
            resized(images[kept], *mask_size),
            sfm.cam_to_world[kept],
            scale @ sfm.intrinsics[kept],
            sfm.radial[kept],
            found,
            mask_params,
            ctx,
            band=(0.7 * band, band),
        )
    new_frames = [
        _estimated_frame(frames[view], sfm.cam_to_world[view], sfm.intrinsics[view], sfm.radial[view], size)
        if estimating
        else frames[view]
        for view in kept
    ]
    dropped = [
        {"file": frames[view]["file"], "reason": "not registered by structure from motion"}
        for view in np.flatnonzero(~sfm.registered)
    ]
    figures = {
        "cameras": "estimated" if estimating else "given",
        "masks": "estimated" if masks is not None else "given",
        "frame": "upright" if estimating else "capture",
        "camera_estimation": sfm.figures,
        "object": found.figures,
        "object_masks": mask_figures,
        "dropped_views": [entry["file"] for entry in dropped],
        # the plane the object stands on, in the result's frame (normal . x + offset = 0, normal up):
        # nothing of the object lies below it, though no silhouette seen from above can show that
        "support_plane": None
        if found.plane is None
        else {"normal": found.plane.normal.tolist(), "offset": float(found.plane.offset)},
    }
    return Completion(
        manifest={**manifest, "frames": new_frames},
        masks=masks,
        confidence=confidence,
        frame=figures["frame"],
        cameras=figures["cameras"],
        dropped=dropped,
        figures=figures,
        frame_images=None if full_frames is None else full_frames[kept],
    )


def _camera_entry(frame: dict, status: str) -> dict:
    entry = {
        "file_path": frame["file"],
        "transform_matrix": frame["transform_matrix"],
        **{key: frame.get(key) for key in ("fl_x", "fl_y", "cx", "cy", "w", "h")},
        "status": status,
    }
    entry.update(frame.get("distortion") or {})
    return entry


def write_cameras(folder: Path, manifest: dict, holdout: np.ndarray, completion: Completion | None) -> Path:
    """``folder/cameras.json``: the cameras used, in the result's frame, with each view's status."""
    held_out = {int(view) for view in holdout}
    frames = [
        _camera_entry(frame, "held_out" if index in held_out else "used")
        for index, frame in enumerate(manifest["frames"])
    ]
    for entry in completion.dropped if completion else []:
        frames.append(
            {
                "file_path": entry["file"],
                "transform_matrix": None,
                "status": "dropped",
                "reason": entry["reason"],
            }
        )
    document = {
        "frame": completion.frame if completion else "capture",
        "cameras": completion.cameras if completion else "given",
        "masks": (completion.figures["masks"] if completion else "given"),
        "support_plane": completion.figures["support_plane"] if completion else None,
        "camera_model": "OPENCV" if any("k1" in frame for frame in frames) else "PINHOLE",
        "frames": frames,
    }
    path = folder / CAMERAS_FILE
    path.write_text(json.dumps(document, indent=1))
    return path
