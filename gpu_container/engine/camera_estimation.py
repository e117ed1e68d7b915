"""Cameras when the capture has none: structure from motion with pycolmap, run where it can be stopped.

Photo sets and video frames get SIFT features at a capped image size (tuned for small images: a low
peak threshold, so a 256² view still yields several hundred features), exhaustive matching up to
``exhaustive_max_views`` views (sequential matching beyond, and always for video frames, whose order
is the walk's), and incremental mapping; the largest model wins. Intrinsics the manifest gives (EXIF
or ``transforms.json``) seed the camera and, from EXIF, are refined; a video has one shared camera.
Views outside the model are dropped and named; fewer than the minimum registered fail the job with
``pose_estimation_failed``. Posed captures only need points: the same features, triangulated from
the given poses (``triangulate``).

pycolmap runs in a child process (``sfm_worker``): its calls run for seconds inside C++ where no
``should_stop()`` is polled, so the parent polls (``poll_seconds``) and kills the child on a cancel.
The child's glog lines are read (``Processed file [k/N]`` for the extraction count) and never shown.

Frames: COLMAP poses are ``cam_from_world`` with OpenCV axes; everything returned here is
camera-to-world with OpenGL axes (the engine's convention, ``cameras.py``), in SfM's own frame and
scale (``upright`` in ``object_masks`` then puts the support plane at y = 0).
"""

from __future__ import annotations

import json
import math
import queue
import re
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from gpu_container.engine.context import CaptureError, StageCancelled, StageContext

REQUEST_FILE = "request.json"
# What the worker writes beside the request (named in it: the parent never imports the worker, whose
# pycolmap import loads its native libraries).
RESULT_FILE = "result.npz"
IMAGE_FOLDER = "images"
_GL_TO_CV = np.diag([1.0, -1.0, -1.0])
_EXTRACTED = re.compile(r"Processed file \[(\d+)/(\d+)\]")


@dataclass(frozen=True)
class SfmParams:
    max_image_size: int = 512  # longer side (pixels) the features are found at; smaller images as they are
    max_num_features: int = 2048  # per image
    peak_threshold: float = (
        0.001  # SIFT's contrast threshold (COLMAP's default 0.0067 finds ~90 in a 256² view)
    )
    first_octave: int = -1  # -1: SIFT starts on the image upsampled twice
    exhaustive_max_views: int = 200  # photo sets up to this many views are matched every pair with every pair
    sequential_overlap: int = 12  # video frames (and larger sets): each matched with this many neighbours
    min_num_matches: int = 12  # verified matches for a pair to count
    init_min_num_inliers: int = 30  # the initial pair's inliers (COLMAP's 100 is for large images)
    abs_pose_min_num_inliers: int = 15  # 2D-3D inliers to register a view
    min_model_size: int = 3
    min_registered_views: int = 8  # fewer registered views fail the job (pose_estimation_failed)
    min_registered_fraction: float = 0.5  # ... as do fewer than this fraction of the views
    # pycolmap's threads (-1: all cores). One: with more, the order in which threads finish (in
    # feature extraction as well as matching and mapping) changed the cameras, and so the masks, from
    # run to run even with every RANSAC seeded; at these image sizes one thread costs little.
    num_threads: int = 1
    log_level: int = 0  # glog's minloglevel in the child (0 INFO: the extraction count is read from it)
    poll_seconds: float = 0.2  # how often the parent checks should_stop() while the child works
    max_seconds: float = 1800.0  # the child is ended and the job fails after this long
    seed: int = 0


PRESET_PARAMS = {
    "draft": SfmParams(max_image_size=384, max_num_features=1024),
    "standard": SfmParams(),
    "high": SfmParams(max_image_size=1024, max_num_features=4096),
}


@dataclass
class SfmResult:
    """What structure from motion found, per view of the request (``registered`` marks the posed ones)."""

    registered: np.ndarray  # (N,) bool
    cam_to_world: np.ndarray  # (N, 4, 4) OpenGL axes, NaN where not registered
    intrinsics: np.ndarray  # (N, 3, 3) pixels of the images passed in (NaN where not registered)
    radial: np.ndarray  # (N,) SIMPLE_RADIAL k1 (0 for pinhole cameras)
    points: np.ndarray  # (P, 3) triangulated points, same frame as the cameras
    colours: np.ndarray  # (P, 3) uint8
    track_point: np.ndarray  # (T,) observations: point index ...
    track_view: np.ndarray  # (T,) ... seen in this view ...
    track_xy: np.ndarray  # (T, 2) ... at this pixel (image corner origin)
    mean_reprojection_error: float
    seconds: float
    figures: dict = field(default_factory=dict)

    def transformed(self, transform: np.ndarray) -> SfmResult:
        """The same result in another frame: ``transform`` (4, 4) a similarity new <- old."""
        scale = float(np.cbrt(np.linalg.det(transform[:3, :3])))
        cams = np.einsum("ij,njk->nik", transform, self.cam_to_world)
        cams[:, :3, :3] /= scale  # keep the camera rotations rigid
        points = self.points @ transform[:3, :3].T + transform[:3, 3]
        return SfmResult(
            **{**self.__dict__, "cam_to_world": cams, "points": points, "figures": dict(self.figures)}
        )


def params_for(preset: str) -> SfmParams:
    if preset not in PRESET_PARAMS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESET_PARAMS)}")
    return PRESET_PARAMS[preset]


# --- conventions -----------------------------------------------------------------------------


def cam_to_world_gl(cam_from_world: np.ndarray) -> np.ndarray:
    """(N, 4, 4) camera-to-world, OpenGL axes, from COLMAP's (N, 3, 4) ``cam_from_world`` (OpenCV axes)."""
    rotation, translation = cam_from_world[:, :, :3], cam_from_world[:, :, 3]
    out = np.repeat(np.eye(4)[None], len(cam_from_world), axis=0)
    out[:, :3, :3] = np.transpose(rotation, (0, 2, 1)) @ _GL_TO_CV
    out[:, :3, 3] = -np.einsum("nji,nj->ni", rotation, translation)
    return out


def cam_from_world_cv(cam_to_world: np.ndarray) -> np.ndarray:
    """The inverse of ``cam_to_world_gl``: (N, 3, 4) COLMAP poses from rigid OpenGL camera-to-world."""
    rotation = np.transpose(cam_to_world[:, :3, :3] @ _GL_TO_CV, (0, 2, 1))
    translation = -np.einsum("nij,nj->ni", rotation, cam_to_world[:, :3, 3])
    return np.concatenate([rotation, translation[:, :, None]], axis=2)


def umeyama(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(4, 4) similarity ``s R x + t`` taking ``source`` (P, 3) closest to ``target`` (least squares)."""
    mean_s, mean_t = source.mean(axis=0), target.mean(axis=0)
    centred_s, centred_t = source - mean_s, target - mean_t
    u, sigma, vt = np.linalg.svd(centred_t.T @ centred_s / len(source))
    sign = np.eye(3)
    sign[2, 2] = np.sign(np.linalg.det(u @ vt)) or 1.0
    rotation = u @ sign @ vt
    scale = float(np.trace(np.diag(sigma) @ sign) / max((centred_s**2).sum(axis=1).mean(), 1e-300))
    out = np.eye(4)
    out[:3, :3] = scale * rotation
    out[:3, 3] = mean_t - scale * rotation @ mean_s
    return out


# --- the child process ------------------------------------------------------------------------


def _pipe_reader(stream, sink: queue.Queue, tag: str) -> None:
    for line in stream:
        sink.put((tag, line))
    sink.put((tag, None))


def _step_progress(event: dict) -> tuple[float, str]:
    """(fraction of the estimation, message) of one worker event."""
    step, done, total = event["step"], event.get("done", 0), event.get("total", 0)
    if step == "features":
        return 0.3 * done / max(total, 1), f"features {done} of {total}"
    if step == "matching":
        return 0.3, "matching features"
    if step == "registered":
        return 0.45 + 0.55 * done / max(total, 1), f"views registered {done} of {total}"
    if step == "triangulating":
        return 0.6, "triangulating points"
    return 1.0, "cameras done"


def run_worker(request: dict, folder: Path, params: SfmParams, ctx: StageContext, band: tuple[float, float]):
    """Run ``sfm_worker`` on ``request`` in a child process; progress into ``band`` of the stage.

    Kills the child and raises ``StageCancelled`` as soon as ``ctx.should_stop()`` turns true.
    """
    (folder / REQUEST_FILE).write_text(json.dumps(request | {"result_file": RESULT_FILE}))
    low, high = band
    command = [sys.executable, "-m", "gpu_container.engine.sfm_worker", str(folder / REQUEST_FILE)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    lines: queue.Queue = queue.Queue()
    readers = [
        threading.Thread(target=_pipe_reader, args=(child.stdout, lines, "out"), daemon=True),
        threading.Thread(target=_pipe_reader, args=(child.stderr, lines, "err"), daemon=True),
    ]
    for reader in readers:
        reader.start()
    started = time.monotonic()
    tail: list[str] = []
    total = len(request["names"])
    reached = 0.0
    try:
        while True:
            if ctx.should_stop():
                raise StageCancelled("stop requested during structure from motion")
            if time.monotonic() - started > params.max_seconds:
                raise CaptureError(
                    "pose_estimation_failed", f"structure from motion ran over {params.max_seconds:.0f} s"
                )
            try:
                tag, line = lines.get(timeout=params.poll_seconds)
            except queue.Empty:
                if child.poll() is not None and all(not reader.is_alive() for reader in readers):
                    break
                continue
            if line is None:
                continue
            if tag == "out":
                fraction, message = _step_progress(json.loads(line))
            else:
                tail = [*tail[-20:], line.rstrip()]
                extracted = _EXTRACTED.search(line)
                if not extracted:
                    continue
                done = int(extracted.group(1))
                fraction, message = 0.3 * done / total, f"features {done} of {total}"
            if fraction >= reached:  # progress only grows
                reached = fraction
                ctx.on_progress(low + (high - low) * fraction, message)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
    if child.returncode != 0 or not (folder / RESULT_FILE).is_file():
        raise RuntimeError(f"sfm_worker exited with {child.returncode}: " + " | ".join(tail[-5:]))
    with np.load(folder / RESULT_FILE) as data:
        return {key: data[key] for key in data.files}


def _write_images(images: np.ndarray, folder: Path) -> list[str]:
    """Each (H, W, 3) uint8 view as ``folder/images/NNNN.png``; the names, in view order."""
    image_dir = folder / IMAGE_FOLDER
    image_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for index, image in enumerate(images):
        name = f"{index:04d}.png"
        Image.fromarray(image).save(image_dir / name, compress_level=1)
        names.append(name)
    return names


def _request(
    mode: str, names: list[str], folder: Path, params: SfmParams, intrinsics: np.ndarray | None, video: bool
) -> dict:
    shared = video or intrinsics is None or bool(np.allclose(intrinsics, intrinsics[0]))
    if intrinsics is None:
        model, camera_params = "SIMPLE_RADIAL", []
    else:
        model = "PINHOLE"
        first = intrinsics[0]
        camera_params = [first[0, 0], first[1, 1], first[0, 2], first[1, 2]] if shared else []
    return {
        "mode": mode,
        "image_dir": str(folder / IMAGE_FOLDER),
        "names": names,
        "camera_model": model,
        "camera_params": camera_params,
        "shared_camera": shared,
        "sequential": video or len(names) > params.exhaustive_max_views,
        **{
            key: value
            for key, value in asdict(params).items()
            if key not in ("poll_seconds", "max_seconds", "min_registered_views", "min_registered_fraction")
        },
    }


def _result(raw: dict, names: list[str], seconds: float) -> SfmResult:
    count = len(names)
    index = {name: position for position, name in enumerate(names)}
    views = np.array([index[str(name)] for name in raw["names"]], dtype=np.int64)
    registered = np.zeros(count, dtype=bool)
    registered[views] = True
    cam_to_world = np.full((count, 4, 4), np.nan)
    intrinsics = np.full((count, 3, 3), np.nan)
    radial = np.zeros(count)
    if len(views):
        cam_to_world[views] = cam_to_world_gl(raw["cam_from_world"])
        fx, fy, cx, cy, k1 = raw["cameras"].T
        intrinsics[views] = 0.0
        intrinsics[views, 0, 0], intrinsics[views, 1, 1] = fx, fy
        intrinsics[views, 0, 2], intrinsics[views, 1, 2] = cx, cy
        intrinsics[views, 2, 2] = 1.0
        radial[views] = k1
    return SfmResult(
        registered=registered,
        cam_to_world=cam_to_world,
        intrinsics=intrinsics,
        radial=radial,
        points=raw["points"],
        colours=raw["colours"],
        track_point=raw["track_point"],
        track_view=views[raw["track_image"]] if len(views) else raw["track_image"],
        track_xy=raw["track_xy"],
        mean_reprojection_error=float(raw["mean_reprojection_error"]),
        seconds=seconds,
    )


def min_registered(views: int, params: SfmParams) -> int:
    return max(params.min_registered_views, math.ceil(params.min_registered_fraction * views))


def estimate(
    images: np.ndarray,
    folder: Path,
    params: SfmParams,
    ctx: StageContext,
    intrinsics: np.ndarray | None = None,
    video: bool = False,
    refine_intrinsics: bool = True,
    band: tuple[float, float] = (0.0, 1.0),
) -> SfmResult:
    """Cameras and points of ``images`` (N, H, W, 3) uint8; ``intrinsics`` (N, 3, 3) when known.

    ``refine_intrinsics``: bundle adjustment refines the focal length (unknown, or from EXIF) and
    the radial term; False keeps intrinsics given in ``transforms.json`` as they are.

    Raises ``CaptureError("pose_estimation_failed")`` when fewer than ``min_registered`` views register.
    """
    started = time.perf_counter()
    names = _write_images(images, folder)
    request = _request("map", names, folder, params, intrinsics, video)
    request["refine_intrinsics"] = refine_intrinsics or intrinsics is None
    result = _result(run_worker(request, folder, params, ctx, band), names, time.perf_counter() - started)
    count, needed = int(result.registered.sum()), min_registered(len(images), params)
    if count < needed:
        raise CaptureError(
            "pose_estimation_failed",
            f"only {count} of {len(images)} views registered (at least {needed} are needed): "
            "the photos do not overlap enough, or show too little texture to match",
        )
    result.figures = {
        "views": len(images),
        "registered_views": count,
        "dropped_views": len(images) - count,
        "mean_reprojection_error_px": result.mean_reprojection_error,
        "points": len(result.points),
        "matching": "sequential" if request["sequential"] else "exhaustive",
        "shared_camera": request["shared_camera"],
        "seconds": result.seconds,
    }
    return result


def triangulate(
    images: np.ndarray,
    cam_to_world: np.ndarray,
    intrinsics: np.ndarray,
    folder: Path,
    params: SfmParams,
    ctx: StageContext,
    band: tuple[float, float] = (0.0, 1.0),
) -> SfmResult:
    """Points seen in ``images`` (N, H, W, 3) from the GIVEN cameras (OpenGL camera-to-world, (N, 3, 3))."""
    started = time.perf_counter()
    names = _write_images(images, folder)
    request = _request("triangulate", names, folder, params, intrinsics, video=False)
    request["refine_intrinsics"] = False
    request["cam_from_world"] = cam_from_world_cv(cam_to_world).tolist()
    request["pinhole"] = [[k[0, 0], k[1, 1], k[0, 2], k[1, 2]] for k in intrinsics]
    raw = run_worker(request, folder, params, ctx, band)
    result = _result(raw, names, time.perf_counter() - started)
    result.cam_to_world = cam_to_world.copy()
    result.intrinsics = intrinsics.copy()
    result.registered[:] = True
    result.figures = {"points": len(result.points), "seconds": result.seconds}
    return result
