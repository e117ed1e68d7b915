"""Reading a capture zip safely and decoding its images and masks (shared by validate and preprocess).

Nothing is extracted to disk: entries are read one at a time into memory, and a read never returns
more than the entry's declared size (which validate has bounded), so a lying header cannot inflate.
"""

from __future__ import annotations

import io
import posixpath
import re
import stat
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from gpu_container.engine.context import CaptureError

IMAGE_FORMATS = ("PNG", "JPEG")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")


def open_archive(path: Path) -> zipfile.ZipFile:
    """The zip at ``path``; ``not_a_zip`` when it is not one (or its directory is damaged)."""
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise CaptureError("not_a_zip", f"{path.name} is not a readable zip archive ({error})") from None


def unsafe_entry_reason(info: zipfile.ZipInfo) -> str | None:
    """Why an entry would escape its folder when extracted (``None`` when it is safe)."""
    name = info.filename.replace("\\", "/")
    if "\x00" in name:
        return "contains a NUL byte"
    if name.startswith("/"):
        return "is an absolute path"
    if _DRIVE_LETTER.match(name):
        return "starts with a drive letter"
    if ".." in name.split("/"):
        return "climbs out of its folder with '..'"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "is a symbolic link"
    return None


def read_entry(archive: zipfile.ZipFile, name: str) -> bytes:
    """The bytes of one entry, at most its declared size; a damaged entry is ``corrupt_archive``."""
    info = archive.getinfo(name)
    try:
        with archive.open(info) as entry:
            return entry.read(info.file_size)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError, RuntimeError) as error:
        raise CaptureError("corrupt_archive", f"entry {name} cannot be read ({error})") from None


def resolve_entry(names: set[str], base: str, path: str, try_extensions: bool) -> str | None:
    """The archive entry a ``file_path``/``mask_path`` refers to, relative to ``base`` (a folder).

    Accepts ``./`` prefixes and backslashes; with ``try_extensions`` a path without an image
    extension also matches ``.png``/``.jpg``/``.jpeg`` (NeRF synthetic writes ``./train/r_0``).
    Raises ``zip_slip`` when the path climbs out of the archive.
    """
    cleaned = path.replace("\\", "/")
    if cleaned.startswith("/") or _DRIVE_LETTER.match(cleaned):
        raise CaptureError("zip_slip", f"{path!r} is an absolute path")
    joined = posixpath.normpath(posixpath.join(base, cleaned)) if base else posixpath.normpath(cleaned)
    if joined == ".." or joined.startswith("../"):
        raise CaptureError("zip_slip", f"{path!r} points outside the archive")
    if joined in names:
        return joined
    if try_extensions:
        for extension in IMAGE_EXTENSIONS:
            if joined + extension in names:
                return joined + extension
    return None


def open_image(data: bytes, name: str, max_pixels: int) -> Image.Image:
    """Decode a PNG/JPEG fully; ``image_too_large`` before decoding, ``corrupt_image`` on any failure."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in IMAGE_FORMATS:
                raise CaptureError("corrupt_image", f"{name} is {image.format}, not PNG or JPEG")
            width, height = image.size
            if width * height > max_pixels:
                raise CaptureError(
                    "image_too_large", f"{name} is {width}x{height}, over the limit of {max_pixels} pixels"
                )
            image.load()
    except CaptureError:
        raise
    except Exception as error:  # Pillow raises many kinds (OSError, SyntaxError, ValueError, ...)
        raise CaptureError("corrupt_image", f"{name} cannot be decoded ({error})") from None
    return image


def has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def rgba_array(image: Image.Image, mask: Image.Image | None) -> np.ndarray:
    """(H, W, 4) uint8: the image's colour and, as alpha, the mask image or else the image's alpha."""
    if mask is None:
        return np.asarray(image.convert("RGBA"))
    rgb = np.asarray(image.convert("RGB"))
    alpha = np.asarray(mask.convert("L"))
    if has_alpha(mask):  # white-on-transparent masks: luminance weighted by the mask's own alpha
        coverage = np.asarray(mask.convert("RGBA"))[..., 3].astype(np.uint16)
        alpha = ((alpha.astype(np.uint16) * coverage + 127) // 255).astype(np.uint8)
    return np.concatenate([rgb, alpha[..., None]], axis=-1)


def distort_normalised(
    x: np.ndarray, y: np.ndarray, coefficients: dict[str, float]
) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV radial-tangential distortion (k1, k2, k3, p1, p2) of normalised image coordinates (y down)."""
    k1, k2, k3, p1, p2 = (coefficients.get(key, 0.0) for key in ("k1", "k2", "k3", "p1", "p2"))
    r2 = x * x + y * y
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    x_d = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    y_d = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return x_d, y_d


def _distorted_sampler(
    shape: tuple[int, int], intrinsics: np.ndarray, coefficients: dict[str, float]
) -> Callable[[np.ndarray], np.ndarray]:
    """Bilinear sampling of an (H, W) plane at the distorted source position of every output pixel
    centre of the same intrinsics; outside the source: 0."""
    height, width = shape
    fl_x, fl_y, cx, cy = intrinsics[0, 0], intrinsics[1, 1], intrinsics[0, 2], intrinsics[1, 2]
    v, u = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    x_d, y_d = distort_normalised((u - cx) / fl_x, (v - cy) / fl_y, coefficients)
    coords = np.stack([fl_y * y_d + cy - 0.5, fl_x * x_d + cx - 0.5])  # (2, H, W) array indices
    return lambda plane: ndimage.map_coordinates(plane, coords, order=1, mode="constant", cval=0.0)


def undistort_rgba(rgba: np.ndarray, intrinsics: np.ndarray, coefficients: dict[str, float]) -> np.ndarray:
    """(H, W, 4) uint8 pinhole image of the same intrinsics from a distorted one (bilinear, premultiplied).

    Each output pixel centre is distorted into the source image and sampled there; what falls outside
    the source becomes background (alpha 0).
    """
    sample = _distorted_sampler(rgba.shape[:2], intrinsics, coefficients)
    alpha = rgba[..., 3].astype(np.float64)
    premultiplied = rgba[..., :3].astype(np.float64) * alpha[..., None] / 255.0
    alpha_out = sample(alpha)
    rgb_out = np.stack([sample(premultiplied[..., c]) for c in range(3)], axis=-1)
    rgb_out = rgb_out * 255.0 / np.maximum(alpha_out, 1e-6)[..., None]
    out = np.concatenate([rgb_out, alpha_out[..., None]], axis=-1)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def undistort_plane(plane: np.ndarray, intrinsics: np.ndarray, coefficients: dict[str, float]) -> np.ndarray:
    """(H, W) uint8 plane (a mask's confidence, say) resampled as ``undistort_rgba`` resamples colour:
    weighted by the share of each sample that falls inside the source; wholly outside it: 0."""
    sample = _distorted_sampler(plane.shape, intrinsics, coefficients)
    inside = sample(np.full(plane.shape, 255.0))
    out = sample(plane.astype(np.float64)) * 255.0 / np.maximum(inside, 1e-6)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
