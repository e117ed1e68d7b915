"""Stage 1: check the capture (a zip, or a video) and write a normalised manifest.

Rules (DESIGN.md, "The capture"): a real zip; no entry escaping its folder; within the entry,
byte and compression-ratio limits; ``transforms.json`` (NeRF / instant-ngp convention) well formed
when present; every referenced image (and mask) present, a PNG or JPEG that decodes, under the
pixel limit, all of one size that agrees with ``w``/``h``; every camera matrix a finite rigid 4x4;
intrinsics resolvable when cameras are given; enough views. Each failure is a ``CaptureError``
with its own code.

The form of the capture is told by its content, never by its name:

- ``lab``: ``transforms.json`` with poses, masks (alpha or ``mask_path``); nothing to estimate;
- ``posed``: ``transforms.json`` with poses, RGB images (or every alpha opaque); masks to be found;
- ``photos``: images only, or ``transforms.json`` whose frames have no poses; cameras to be
  estimated, and masks unless every image carries one;
- ``video``: one MP4/MOV file (ISO-BMFF header, H.264/H.265); frames, cameras and masks to be found.

A zip without ``transforms.json`` is a photo set of every PNG/JPEG in it (sorted by name; macOS
``__MACOSX/`` and ``._`` files skipped). ``transforms.json`` is looked for at the root of the
archive or in the shallowest folder holding one; failing that, the NeRF synthetic split files
``transforms_{train,val,test}.json`` of one folder are merged. Paths in it are relative to its
folder; a ``file_path`` may omit the image's extension. The mask is a frame's ``mask_path`` image
if given, else the image's alpha channel; a capture whose every alpha is fully opaque has no masks.
Intrinsics (``camera_angle_x``/``fl_x``.., and OpenCV lens distortion ``k1 k2 k3 p1 p2``, which
preprocess undoes) may sit at the top or in a frame, the frame's winning; fisheye models are
refused. A photo without intrinsics in ``transforms.json`` takes them from its EXIF
(``FocalLengthIn35mmFilm`` along the diagonal, else ``FocalLength`` with ``FocalPlaneXResolution``).
A video's header is checked by ``video_frames.probe`` (duration, frame count, frame size, bytes);
its frames are picked later, in preprocess (``video_frames.select_frames``).

Nothing is extracted: entries are read into memory one at a time after the size checks.
Writes ``work/validate/manifest.json`` and ``stage.json``. The manifest (read by preprocess, and
by camera estimation and object masks where the capture lacks them)::

    form          "lab" | "posed" | "photos" | "video"
    estimate      {"cameras": bool, "masks": bool, "intrinsics": bool}: what later stages must find
                  (intrinsics: some frame has none, neither in transforms.json nor in EXIF)
    archive       the capture's file name in input/ (the zip, or the video)
    transforms    the transforms file(s) read, [] when none
    width, height the images' size (a video: its frames' stored size)
    fl_x, fl_y, cx, cy   the first frame's intrinsics in pixels, null when unknown
    masks         "mask_path" | "alpha" | null (null: none given, to be found)
    frames[]      one per image (a video: [], frames are picked in preprocess):
                  file (entry in the zip), mask (entry of its mask_path image, or null),
                  transform_matrix (4x4 camera-to-world, OpenGL axes; null when estimated),
                  fl_x, fl_y, cx, cy (null when unknown), intrinsics ("transforms" | "exif" | null),
                  distortion ({k1..p2} or null), w, h
    video         (video only) the header: file, format, codec, width, height, duration_s, fps,
                  frames (estimated count), bytes, rotation_deg
"""

from __future__ import annotations

import json
import math
import posixpath
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from gpu_container.engine import imageio, video_frames
from gpu_container.engine.context import PRESETS, CaptureError, StageContext, Stopwatch, write_stage_record

STAGE = "validate"
MANIFEST_FILE = "manifest.json"
TRANSFORMS_NAME = "transforms.json"
SPLIT_NAMES = ("transforms_train.json", "transforms_val.json", "transforms_test.json")
IGNORED_FOLDERS = ("__MACOSX/",)
HIDDEN_PREFIX = "."  # "._IMG_0001.JPG" (macOS resource forks), ".DS_Store"
ARCHIVE_SUFFIXES = (".zip",)
CAPTURE_SUFFIXES = (*ARCHIVE_SUFFIXES, *video_frames.VIDEO_SUFFIXES)
EXIF_IFD = 0x8769
EXIF_FOCAL_LENGTH = 0x920A  # millimetres
EXIF_FOCAL_LENGTH_35MM = 0xA405  # the 35 mm film equivalent, millimetres
EXIF_FOCAL_PLANE_X_RESOLUTION = 0xA20E  # pixels per resolution unit on the sensor
EXIF_FOCAL_PLANE_UNIT = 0xA210  # 2 inch, 3 centimetre, 4 millimetre, 5 micrometre
FOCAL_PLANE_UNIT_MM = {2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}
FILM_DIAGONAL_MM = math.hypot(36.0, 24.0)
FOCAL_KEYS = ("fl_x", "fl_y", "camera_angle_x", "camera_angle_y")
DISTORTION_KEYS = ("k1", "k2", "k3", "p1", "p2")  # OpenCV radial-tangential, undistorted by preprocess
UNSUPPORTED_DISTORTION_KEYS = ("k4",)  # fisheye terms
UNSUPPORTED_CAMERA_MODELS = ("OPENCV_FISHEYE", "FISHEYE", "EQUIRECTANGULAR", "FOV", "THIN_PRISM_FISHEYE")
INTRINSIC_KEYS = (
    *("fl_x", "fl_y", "cx", "cy", "w", "h", "camera_angle_x", "camera_angle_y"),
    *DISTORTION_KEYS,
    *UNSUPPORTED_DISTORTION_KEYS,
    *("camera_model", "is_fisheye"),
)


@dataclass(frozen=True)
class ValidateParams:
    max_entries: int = 20_000  # zip entries, all kinds
    max_total_bytes: int = 4 << 30  # sum of the declared uncompressed sizes
    max_compression_ratio: float = 100.0  # per entry, checked for entries of ratio_check_min_bytes or more
    ratio_check_min_bytes: int = 1 << 20
    max_transforms_bytes: int = 32 << 20
    max_image_pixels: int = 64_000_000  # per image (width x height)
    min_views: int = 8
    rigid_tolerance: float = 1e-3  # |R^T R - I|, |last row - (0,0,0,1)|, |det R - 1|
    exif_focal_range: tuple[float, float] = (
        0.2,
        10.0,
    )  # EXIF focal lengths outside (x image diagonal) are ignored
    video: video_frames.VideoParams = field(default_factory=video_frames.VideoParams)


def params_for(preset: str) -> ValidateParams:
    """The limits do not depend on the preset."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {PRESETS}")
    return ValidateParams()


# --- the archive -------------------------------------------------------------------------------


def check_entries(archive: zipfile.ZipFile, params: ValidateParams) -> list[zipfile.ZipInfo]:
    """The archive's entries after the zip-slip and zip-bomb checks."""
    infos = archive.infolist()
    if len(infos) > params.max_entries:
        raise CaptureError("zip_bomb", f"{len(infos)} entries, over the limit of {params.max_entries}")
    for info in infos:
        reason = imageio.unsafe_entry_reason(info)
        if reason:
            raise CaptureError("zip_slip", f"entry {info.filename!r} {reason}")
    total = sum(info.file_size for info in infos)
    if total > params.max_total_bytes:
        raise CaptureError(
            "zip_bomb", f"{total} uncompressed bytes, over the limit of {params.max_total_bytes}"
        )
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size >= params.ratio_check_min_bytes and ratio > params.max_compression_ratio:
            raise CaptureError(
                "zip_bomb",
                f"entry {info.filename} expands {ratio:.0f}x, "
                f"over the limit of {params.max_compression_ratio:.0f}x",
            )
    return infos


def _depth(name: str) -> int:
    return name.count("/")


def find_transforms(names: list[str]) -> list[str]:
    """The transforms file(s) to read: ``transforms.json``, else one folder's NeRF split files."""
    candidates = [name for name in names if not name.startswith(IGNORED_FOLDERS)]
    for wanted in ((TRANSFORMS_NAME,), SPLIT_NAMES):
        found = [name for name in candidates if posixpath.basename(name) in wanted]
        if not found:
            continue
        shallowest = min(_depth(name) for name in found)
        folders = sorted({posixpath.dirname(name) for name in found if _depth(name) == shallowest})
        if len(folders) > 1:
            raise CaptureError(
                "malformed_transforms", f"{wanted[0]} found in several folders: {', '.join(folders)}"
            )
        return sorted(name for name in found if posixpath.dirname(name) == folders[0])
    return []


def photo_entries(names: list[str]) -> list[str]:
    """The images of a photo set (a zip without transforms.json), sorted; ``missing_transforms`` if none."""
    photos = [
        name
        for name in sorted(names)
        if not name.startswith(IGNORED_FOLDERS)
        and not posixpath.basename(name).startswith(HIDDEN_PREFIX)
        and name.endswith(imageio.IMAGE_EXTENSIONS)
    ]
    if not photos:
        raise CaptureError(
            "missing_transforms", f"the archive holds no {TRANSFORMS_NAME} and no PNG or JPEG photos"
        )
    return photos


def load_json(archive: zipfile.ZipFile, name: str, params: ValidateParams) -> dict[str, Any]:
    info = archive.getinfo(name)
    if info.file_size > params.max_transforms_bytes:
        raise CaptureError(
            "malformed_transforms", f"{name} is {info.file_size} bytes, over {params.max_transforms_bytes}"
        )
    try:
        document = json.loads(imageio.read_entry(archive, name).decode("utf-8-sig"))
    except UnicodeDecodeError as error:
        raise CaptureError("malformed_transforms", f"{name} is not UTF-8 text ({error})") from None
    except json.JSONDecodeError as error:
        raise CaptureError(
            "malformed_transforms",
            f"{name} is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}",
        ) from None
    if not isinstance(document, dict):
        raise CaptureError("malformed_transforms", f"{name} must hold a JSON object")
    return document


def transforms_frames(archive: zipfile.ZipFile, names: list[str], params: ValidateParams) -> list[dict]:
    """The frames of all transforms files, each with its file's intrinsics merged in and a ``where``."""
    frames = []
    for name in names:
        document = load_json(archive, name, params)
        listed = document.get("frames")
        if not isinstance(listed, list):
            raise CaptureError("malformed_transforms", f"{name}: 'frames' must be a list")
        shared = {key: document[key] for key in INTRINSIC_KEYS if key in document}
        for index, frame in enumerate(listed):
            if not isinstance(frame, dict):
                raise CaptureError("malformed_transforms", f"{name}: frames[{index}] must be an object")
            frames.append({**shared, **frame, "where": f"{name}: frames[{index}]"})
    return frames


# --- fields ------------------------------------------------------------------------------------


def _number(value: Any, where: str, code: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CaptureError(code, f"{where} must be a finite number, got {value!r}")
    return float(value)


def camera_matrix(value: Any, where: str, tolerance: float) -> np.ndarray:
    """A finite, rigid 4x4 camera-to-world matrix, or ``bad_camera_matrix`` saying what is wrong."""
    if value is None:
        raise CaptureError("bad_camera_matrix", f"{where} is missing")
    try:
        matrix = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CaptureError("bad_camera_matrix", f"{where} is not a 4x4 list of numbers") from None
    if matrix.shape != (4, 4):
        raise CaptureError("bad_camera_matrix", f"{where} has shape {matrix.shape}, not 4x4")
    if not np.isfinite(matrix).all():
        raise CaptureError("bad_camera_matrix", f"{where} has non-finite entries")
    if np.abs(matrix[3] - [0, 0, 0, 1]).max() > tolerance:
        raise CaptureError("bad_camera_matrix", f"{where}: last row {matrix[3].tolist()} is not [0, 0, 0, 1]")
    rotation = matrix[:3, :3]
    error = np.abs(rotation.T @ rotation - np.eye(3)).max()
    if error > tolerance:
        raise CaptureError(
            "bad_camera_matrix", f"{where} is not rigid: rotation part is not orthonormal (error {error:.3g})"
        )
    if abs(np.linalg.det(rotation) - 1.0) > tolerance:
        raise CaptureError(
            "bad_camera_matrix", f"{where} is a reflection (determinant {np.linalg.det(rotation):.3f})"
        )
    return matrix


def intrinsics(frame: dict, width: int, height: int) -> dict[str, float]:
    """fl_x, fl_y, cx, cy (pixels) of a frame whose image is ``width`` x ``height``."""
    where = frame["where"]
    for key, actual in (("w", width), ("h", height)):
        if key in frame and _number(frame[key], f"{where}.{key}", "bad_intrinsics") != actual:
            raise CaptureError(
                "image_size_mismatch", f"{where}: {key} = {frame[key]} but the image is {width}x{height}"
            )

    def focal(key: str, angle_key: str, side: int) -> float | None:
        if key in frame:
            return _number(frame[key], f"{where}.{key}", "bad_intrinsics")
        if angle_key in frame:
            angle = _number(frame[angle_key], f"{where}.{angle_key}", "bad_intrinsics")
            if not 0 < angle < math.pi:
                raise CaptureError("bad_intrinsics", f"{where}.{angle_key} = {angle} is not in (0, pi)")
            return 0.5 * side / math.tan(0.5 * angle)
        return None

    fl_x = focal("fl_x", "camera_angle_x", width)
    fl_y = focal("fl_y", "camera_angle_y", height)
    if fl_x is None and fl_y is None:
        raise CaptureError(
            "bad_intrinsics", f"{where}: no camera_angle_x or fl_x (in the frame or at the top)"
        )
    fl_x = fl_y if fl_x is None else fl_x
    fl_y = fl_x if fl_y is None else fl_y
    if fl_x <= 0 or fl_y <= 0:
        raise CaptureError("bad_intrinsics", f"{where}: focal lengths must be positive, got {fl_x}, {fl_y}")
    cx = _number(frame["cx"], f"{where}.cx", "bad_intrinsics") if "cx" in frame else width / 2
    cy = _number(frame["cy"], f"{where}.cy", "bad_intrinsics") if "cy" in frame else height / 2
    return {"fl_x": fl_x, "fl_y": fl_y, "cx": cx, "cy": cy}


def distortion(frame: dict) -> dict[str, float] | None:
    """The frame's OpenCV lens distortion coefficients, or ``None`` for a pinhole camera."""
    where = frame["where"]
    model = str(frame.get("camera_model", "")).upper()
    if frame.get("is_fisheye") or model in UNSUPPORTED_CAMERA_MODELS:
        raise CaptureError(
            "bad_intrinsics",
            f"{where}: fisheye/panoramic cameras are not supported ({model or 'is_fisheye'})",
        )
    for key in UNSUPPORTED_DISTORTION_KEYS:
        if key in frame and _number(frame[key], f"{where}.{key}", "bad_intrinsics") != 0:
            raise CaptureError("bad_intrinsics", f"{where}.{key}: fisheye distortion is not supported")
    coefficients = {
        key: _number(frame[key], f"{where}.{key}", "bad_intrinsics")
        for key in DISTORTION_KEYS
        if key in frame
    }
    return coefficients if any(coefficients.values()) else None


def _path_field(frame: dict, key: str) -> str | None:
    value = frame.get(key)
    if value is None and key == "mask_path":
        return None
    if not isinstance(value, str) or not value.strip():
        raise CaptureError("malformed_transforms", f"{frame['where']}.{key} must be a non-empty string")
    return value


# --- the stage ---------------------------------------------------------------------------------


def _decoded(archive: zipfile.ZipFile, entry: str, params: ValidateParams):
    return imageio.open_image(imageio.read_entry(archive, entry), entry, params.max_image_pixels)


def frame_entries(frame: dict, names: set[str], base: str) -> tuple[str, str | None]:
    """The archive entries of a frame's image and mask (``None``: the image's alpha)."""
    where = frame["where"]
    file_path = _path_field(frame, "file_path")
    image_entry = imageio.resolve_entry(names, base, file_path, try_extensions=True)
    if image_entry is None:
        raise CaptureError("missing_image", f"{where}.file_path {file_path!r} is not in the archive")
    mask_path = _path_field(frame, "mask_path")
    if mask_path is None:
        return image_entry, None
    mask_entry = imageio.resolve_entry(names, base, mask_path, try_extensions=True)
    if mask_entry is None:
        raise CaptureError("missing_image", f"{where}.mask_path {mask_path!r} is not in the archive")
    return image_entry, mask_entry


def exif_intrinsics(image: Image.Image, params: ValidateParams) -> dict[str, float] | None:
    """fl_x, fl_y, cx, cy (pixels) from a photo's EXIF focal length, or ``None`` without a usable one.

    ``FocalLengthIn35mmFilm`` is taken along the diagonal (36 x 24 mm film: 43.3 mm), as phone
    makers do; else ``FocalLength`` x ``FocalPlaneXResolution``. Values out of
    ``exif_focal_range`` (in image diagonals) are ignored, the principal point is the centre.
    """
    width, height = image.size
    diagonal = math.hypot(width, height)
    try:
        tags = image.getexif().get_ifd(EXIF_IFD)
        fl = None
        if float(tags.get(EXIF_FOCAL_LENGTH_35MM) or 0) > 0:
            fl = float(tags[EXIF_FOCAL_LENGTH_35MM]) * diagonal / FILM_DIAGONAL_MM
        elif tags.get(EXIF_FOCAL_LENGTH) and tags.get(EXIF_FOCAL_PLANE_X_RESOLUTION):
            unit_mm = FOCAL_PLANE_UNIT_MM.get(int(tags.get(EXIF_FOCAL_PLANE_UNIT, 2)))
            if unit_mm:
                fl = float(tags[EXIF_FOCAL_LENGTH]) * float(tags[EXIF_FOCAL_PLANE_X_RESOLUTION]) / unit_mm
    except (ValueError, TypeError, ZeroDivisionError, SyntaxError, OSError):
        return None  # unreadable EXIF is no EXIF: the cameras are estimated instead
    low, high = params.exif_focal_range
    if fl is None or not math.isfinite(fl) or not low * diagonal <= fl <= high * diagonal:
        return None
    return {"fl_x": fl, "fl_y": fl, "cx": width / 2, "cy": height / 2}


@dataclass
class CheckedImage:
    """What decoding a frame's image (and mask) told: its size, its mask and its EXIF intrinsics."""

    size: tuple[int, int]  # (width, height)
    mask: str  # "file" (mask_path), "alpha" (some pixel not opaque), "opaque" (alpha, all 255), "none"
    exif: dict[str, float] | None


def check_images(
    archive: zipfile.ZipFile,
    image_entry: str,
    mask_entry: str | None,
    size: tuple[int, int] | None,
    params: ValidateParams,
) -> CheckedImage:
    """Decode a frame's image (and mask); its size must equal ``size`` if given."""
    image = _decoded(archive, image_entry, params)
    if size is not None and image.size != size:
        raise CaptureError(
            "image_size_mismatch",
            f"{image_entry} is {image.size[0]}x{image.size[1]}, others are {size[0]}x{size[1]}",
        )
    if mask_entry is not None:
        mask = _decoded(archive, mask_entry, params)
        if mask.size != image.size:
            raise CaptureError(
                "image_size_mismatch",
                f"mask {mask_entry} is {mask.size[0]}x{mask.size[1]}, "
                f"its image {image_entry} is {image.size[0]}x{image.size[1]}",
            )
        state = "file"
    elif imageio.has_alpha(image):
        state = "alpha" if imageio.rgba_array(image, None)[..., 3].min() < 255 else "opaque"
    else:
        state = "none"
    return CheckedImage(image.size, state, exif_intrinsics(image, params))


def mask_source(states: list[str], where: list[str], entries: list[str]) -> str | None:
    """How the capture's masks are given ("mask_path", "alpha") or ``None`` when it has none.

    No frame with a real mask: none (posed captures, photo sets). Some: then every frame needs
    one (alpha, even fully opaque for a view filled by the object, or a mask file): ``missing_mask``.
    """
    if not any(state in ("file", "alpha") for state in states):
        return None
    for state, place, entry in zip(states, where, entries, strict=True):
        if state == "none":
            raise CaptureError(
                "missing_mask",
                f"{entry} has no alpha channel and {place} no mask_path, but other frames have masks",
            )
    return "mask_path" if "file" in states else "alpha"


def _has_focal(frame: dict) -> bool:
    return any(key in frame for key in FOCAL_KEYS)


def capture_frames(
    archive: zipfile.ZipFile, names: set[str], params: ValidateParams
) -> tuple[list[str], str, list[dict]]:
    """(transforms files, their folder, frames): from transforms.json, or one frame per photo."""
    transforms_names = find_transforms(sorted(names))
    if not transforms_names:
        photos = photo_entries(sorted(names))
        return [], "", [{"file_path": name, "where": name} for name in photos]
    return (
        transforms_names,
        posixpath.dirname(transforms_names[0]),
        transforms_frames(archive, transforms_names, params),
    )


def build_manifest(
    archive: zipfile.ZipFile, archive_name: str, params: ValidateParams, ctx: StageContext
) -> dict[str, Any]:
    """Check everything in the open archive and return the manifest (module docstring)."""
    infos = check_entries(archive, params)
    names = {info.filename for info in infos if not info.is_dir()}
    transforms_names, base, frames = capture_frames(archive, names, params)
    if len(frames) < params.min_views:
        kind = "frames" if transforms_names else "photos"
        raise CaptureError("too_few_views", f"{len(frames)} {kind}, at least {params.min_views} are needed")
    posed = any(frame.get("transform_matrix") is not None for frame in frames)
    cameras = [
        camera_matrix(
            frame.get("transform_matrix"), f"{frame['where']}.transform_matrix", params.rigid_tolerance
        )
        if posed
        else None
        for frame in frames
    ]
    size: tuple[int, int] | None = None
    manifest_frames, states = [], []
    for index, (frame, matrix) in enumerate(zip(frames, cameras, strict=True)):
        ctx.check_stop()
        image_entry, mask_entry = frame_entries(frame, names, base)
        checked = check_images(archive, image_entry, mask_entry, size, params)
        size = checked.size
        width, height = size
        if posed or _has_focal(frame):
            known, source = intrinsics(frame, width, height), "transforms"
        elif checked.exif is not None:
            known, source = checked.exif, "exif"
        else:
            known, source = dict.fromkeys(("fl_x", "fl_y", "cx", "cy")), None
        states.append(checked.mask)
        manifest_frames.append(
            {
                "file": image_entry,
                "mask": mask_entry,
                "transform_matrix": None if matrix is None else matrix.tolist(),
                **known,
                "intrinsics": source,
                "distortion": distortion(frame),
                "w": width,
                "h": height,
            }
        )
        ctx.on_progress((index + 1) / len(frames), f"checked image {index + 1} of {len(frames)}")

    masks = mask_source(states, [frame["where"] for frame in frames], [f["file"] for f in manifest_frames])
    width, height = size
    first = manifest_frames[0]
    return {
        "form": ("lab" if masks else "posed") if posed else "photos",
        "estimate": {
            "cameras": not posed,
            "masks": masks is None,
            "intrinsics": any(frame["intrinsics"] is None for frame in manifest_frames),
        },
        "archive": archive_name,
        "transforms": transforms_names,
        "width": width,
        "height": height,
        **{key: first[key] for key in ("fl_x", "fl_y", "cx", "cy")},
        "masks": masks,
        "frames": manifest_frames,
    }


def video_manifest(path: Path, params: ValidateParams) -> dict[str, Any]:
    """The manifest of a video capture: its checked header; frames are picked in preprocess."""
    info = video_frames.probe(path, params.video)
    return {
        "form": "video",
        "estimate": {"cameras": True, "masks": True, "intrinsics": True},
        "archive": path.name,
        "transforms": [],
        "width": info.width,
        "height": info.height,
        **dict.fromkeys(("fl_x", "fl_y", "cx", "cy")),
        "masks": None,
        "frames": [],
        "video": info.as_dict(),
    }


def find_capture(input_dir: Path) -> Path:
    """The single capture file in ``input/``: a ``.zip``, ``.mp4``, ``.mov`` or ``.m4v``."""
    found = sorted(path for path in Path(input_dir).glob("*") if path.suffix.lower() in CAPTURE_SUFFIXES)
    if not found:
        raise CaptureError("missing_archive", f"no .zip or video capture in {Path(input_dir).name}/")
    if len(found) > 1:
        names = ", ".join(path.name for path in found)
        raise CaptureError(
            "too_many_archives", f"expected one capture in {Path(input_dir).name}/, found {names}"
        )
    return found[0]


def is_video(path: Path) -> bool:
    """A video by content (an MP4/MOV header), or by name when it is not a zip either."""
    if video_frames.looks_like_video(path):
        return True
    return path.suffix.lower() in video_frames.VIDEO_SUFFIXES and not zipfile.is_zipfile(path)


def run(ctx: StageContext, params: ValidateParams | None = None) -> dict:
    """Validate the capture in ``input/`` and write ``work/validate/manifest.json``."""
    params = params or params_for(ctx.preset)
    watch = Stopwatch()
    path = find_capture(ctx.input_dir)
    if is_video(path):
        ctx.check_stop()
        manifest, entries = video_manifest(path, params), 0
    else:
        with imageio.open_archive(path) as archive:
            manifest = build_manifest(archive, path.name, params, ctx)
            entries = len(archive.infolist())
    out = ctx.work_dir(STAGE)
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))
    figures = {
        "stage": STAGE,
        "seconds": watch.seconds,
        "device": str(ctx.device),
        "form": manifest["form"],
        "estimate": manifest["estimate"],
        "views": len(manifest["frames"]),
        "width": manifest["width"],
        "height": manifest["height"],
        "archive_bytes": path.stat().st_size,
        "entries": entries,
        "masks": manifest["masks"],
    }
    if "video" in manifest:
        figures["video"] = manifest["video"]
    write_stage_record(out, figures)
    return figures
