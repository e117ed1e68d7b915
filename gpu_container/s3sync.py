"""Copying between a job's S3 prefix and a local folder, with boto3's managed transfers.

The stage runner's only S3 code. Keys become local paths by stripping a prefix, so a local job
folder mirrors the job's prefix (``jobs/{id}/work/hull/hull.npz`` -> ``{job_dir}/work/hull/hull.npz``).
A key whose remainder is not a plain relative path (``..``, empty or ``.`` segments, backslashes,
an absolute path) is refused before a file is written, and so is a target that would land
outside the folder.
"""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from boto3.s3.transfer import TransferConfig

logger = logging.getLogger(__name__)

MIB = 1024**2
# Types S3 should serve the outputs with (presigned links open in a browser or viewer).
CONTENT_TYPES: dict[str, str] = {
    ".glb": "model/gltf-binary",
    ".gltf": "model/gltf+json",
    ".obj": "model/obj",
    ".mtl": "model/mtl",
    ".ply": "application/octet-stream",
    ".npz": "application/octet-stream",
    ".json": "application/json",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".zip": "application/zip",
}
DEFAULT_CONTENT_TYPE = "application/octet-stream"
_FORBIDDEN_SEGMENTS = frozenset({"", ".", ".."})


class UnsafeKeyError(ValueError):
    """An object key that would not map to a path inside the local folder."""


class TransferStoppedError(Exception):
    """``should_stop`` turned true between two files; what was already copied stays as it is."""


@dataclass(frozen=True)
class TransferSettings:
    """Managed-transfer tuning: parts of 16 MiB from 16 MiB on, a few parts in flight per file."""

    multipart_threshold_bytes: int = 16 * MIB
    multipart_chunksize_bytes: int = 16 * MIB
    max_concurrency: int = 8
    use_threads: bool = field(default=True)

    def transfer_config(self) -> TransferConfig:
        return TransferConfig(
            multipart_threshold=self.multipart_threshold_bytes,
            multipart_chunksize=self.multipart_chunksize_bytes,
            max_concurrency=self.max_concurrency,
            use_threads=self.use_threads,
        )


def relative_name(key: str, prefix: str) -> str:
    """The part of ``key`` after ``prefix``, checked to be a plain relative path."""
    if not key.startswith(prefix):
        raise UnsafeKeyError(f"key {key!r} is not under {prefix!r}")
    rest = key[len(prefix) :]
    if not rest or "\\" in rest or "\x00" in rest or rest.startswith("/"):
        raise UnsafeKeyError(f"key {key!r} has no plain relative name under {prefix!r}")
    if any(segment in _FORBIDDEN_SEGMENTS for segment in rest.split("/")):
        raise UnsafeKeyError(f"key {key!r} has an empty, '.' or '..' segment")
    return rest


def local_path(folder: Path, name: str) -> Path:
    """``folder / name``, refusing anything that resolves outside ``folder``."""
    root = folder.resolve()
    target = (root / PurePosixPath(name)).resolve()
    if not target.is_relative_to(root) or target == root:
        raise UnsafeKeyError(f"{name!r} escapes {folder}")
    return target


def list_keys(s3: Any, bucket: str, prefix: str) -> Iterator[str]:
    """Every object key under ``prefix`` (folder markers ending in '/' left out), following pagination."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for entry in page.get("Contents", []):
            if not entry["Key"].endswith("/"):
                yield entry["Key"]


def content_type(name: str) -> str:
    suffix = PurePosixPath(name).suffix.lower()
    return CONTENT_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or DEFAULT_CONTENT_TYPE


def download_prefix(
    s3: Any,
    bucket: str,
    prefix: str,
    folder: Path,
    *,
    settings: TransferSettings | None = None,
) -> list[Path]:
    """Copy every object under ``prefix`` to ``folder/<rest of the key>``; the files written."""
    config = (settings or TransferSettings()).transfer_config()
    written: list[Path] = []
    for key in list_keys(s3, bucket, prefix):
        target = local_path(folder, relative_name(key, prefix))
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(target), Config=config)
        written.append(target)
    return written


def download_key(
    s3: Any,
    bucket: str,
    key: str,
    target: Path,
    *,
    settings: TransferSettings | None = None,
    version_id: str | None = None,
) -> bool:
    """Copy one object to ``target``; False (and nothing written) when there is no such key.

    With ``version_id`` that version is copied, whatever was written to the key since.
    """
    if version_id is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(
            bucket,
            key,
            str(target),
            ExtraArgs={"VersionId": version_id},
            Config=(settings or TransferSettings()).transfer_config(),
        )
        return True
    for found in list_keys(s3, bucket, key):
        if found == key:
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(
                bucket, key, str(target), Config=(settings or TransferSettings()).transfer_config()
            )
            return True
    return False


def local_files(folder: Path) -> list[tuple[str, Path]]:
    """(relative posix name, path) of every regular file under ``folder``, sorted by name."""
    if not folder.is_dir():
        return []
    files = [path for path in folder.rglob("*") if path.is_file() and not path.is_symlink()]
    return sorted((path.relative_to(folder).as_posix(), path) for path in files)


def upload_folder(
    s3: Any,
    bucket: str,
    folder: Path,
    key_for: Callable[[str], str],
    *,
    should_stop: Callable[[], bool] = lambda: False,
    settings: TransferSettings | None = None,
    tagging: str | None = None,
) -> dict[str, str]:
    """Upload every file under ``folder`` to ``key_for(relative name)``; {name: key} of what was sent.

    ``tagging`` (``key=value&...``) is set on every object, e.g. the area tag the lifecycle rules use.

    ``should_stop`` is asked before each file; when it turns true, ``TransferStoppedError`` is raised
    and no further file is sent.
    """
    config = (settings or TransferSettings()).transfer_config()
    uploaded: dict[str, str] = {}
    for name, path in local_files(folder):
        if should_stop():
            raise TransferStoppedError(f"stopped after {len(uploaded)} of the files under {folder}")
        key = key_for(name)
        extra = {"ContentType": content_type(name)} | ({"Tagging": tagging} if tagging else {})
        s3.upload_file(str(path), bucket, key, ExtraArgs=extra, Config=config)
        uploaded[name] = key
    return uploaded
