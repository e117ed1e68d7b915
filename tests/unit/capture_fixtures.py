"""Small generated captures for every engine test (import: ``from capture_fixtures import ...``).

``make_capture(tmp_path, obj="concave", views=12, size=48)`` writes a capture zip and returns its
path; ``make_job(tmp_path, ...)`` lays out a job folder ``{job_dir}/input/capture.zip``;
``capture_truth(...)`` gives the same rendering with its ground-truth mesh in world coordinates.
Renderings are cached per argument set, so many tests can share one cheaply.

Objects: ``"sphere"`` (convex, vertex colours), ``"concave"`` (the textured bowl), ``"spot"``
(Keenan Crane's cow from ``../shared/data/spot``, read in place), or any name in
``gpu_container.capture.objects.PROCEDURAL_OBJECTS`` (``"bowl"``, ``"cup"``, ``"pocket_block"``).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import trimesh

from gpu_container.capture import objects, synthetic

REPO_ROOT = Path(__file__).resolve().parents[2]
SPOT_DIR = Path(os.environ.get("RECONFLOW_SPOT_DIR", REPO_ROOT.parent / "shared" / "data" / "spot"))
CAPTURE_NAME = "capture.zip"

# An arbitrary similarity (scale 0.3, turned, moved) for tests that the result lands in world coordinates.
OFFSET_WORLD_TRANSFORM = np.array(
    [
        [0.0, -0.3, 0.0, 2.0],
        [0.3, 0.0, 0.0, -1.0],
        [0.0, 0.0, 0.3, 0.5],
        [0.0, 0.0, 0.0, 1.0],
    ]
)

_ALIASES = {"concave": "bowl"}
_HEMISPHERE_OBJECTS = {"bowl", "cup", "pocket_block"}  # open at the top: cameras look into them


@functools.cache
def fixture_mesh(obj: str) -> trimesh.Trimesh:
    """The named object in its own frame (cached; do not modify it)."""
    if obj == "spot":
        return objects.load_spot(SPOT_DIR)
    return objects.make_object(_ALIASES.get(obj, obj))


def _default_layout(obj: str) -> str:
    return "hemisphere" if _ALIASES.get(obj, obj) in _HEMISPHERE_OBJECTS else "sphere"


@functools.cache
def _render(
    obj: str, views: int, size: int, seed: int, layout: str, world: tuple | None, supersample: int
) -> synthetic.RenderedCapture:
    rig = synthetic.RigSettings(views=views, width=size, height=size, layout=layout, supersample=supersample)
    world_transform = None if world is None else np.array(world).reshape(4, 4)
    return synthetic.render_capture(fixture_mesh(obj), rig, seed=seed, world_transform=world_transform)


def capture_truth(
    obj: str = "sphere",
    views: int = 12,
    size: int = 48,
    seed: int = 0,
    layout: str | None = None,
    world_transform: np.ndarray | None = None,
    supersample: int = 2,
) -> synthetic.RenderedCapture:
    """The rendering behind ``make_capture`` with the same arguments (images, cameras, GT mesh)."""
    world = None if world_transform is None else tuple(np.asarray(world_transform, dtype=float).ravel())
    return _render(obj, views, size, seed, layout or _default_layout(obj), world, supersample)


def make_capture(
    tmp_path: Path,
    obj: str = "sphere",
    views: int = 12,
    size: int = 48,
    seed: int = 0,
    layout: str | None = None,
    world_transform: np.ndarray | None = None,
    supersample: int = 2,
    zip_layout: synthetic.ZipLayout | None = None,
    name: str = CAPTURE_NAME,
) -> Path:
    """Write a capture zip of ``obj`` to ``tmp_path/name`` and return its path.

    ``layout`` is the camera rig (``"sphere"`` or ``"hemisphere"``; default by object),
    ``zip_layout`` the file variants (extensionless paths, pixel intrinsics, JPEG + mask files).
    """
    capture = capture_truth(obj, views, size, seed, layout, world_transform, supersample)
    return synthetic.write_zip(synthetic.capture_files(capture, zip_layout), Path(tmp_path) / name)


def make_job(tmp_path: Path, capture: Path | None = None, **capture_options) -> Path:
    """A job folder ``tmp_path/job`` with ``input/capture.zip`` (given, or made by ``make_capture``)."""
    job_dir = Path(tmp_path) / "job"
    input_dir = job_dir / "input"
    input_dir.mkdir(parents=True, exist_ok=True)
    if capture is None:
        make_capture(input_dir, name=CAPTURE_NAME, **capture_options)
    else:
        (input_dir / CAPTURE_NAME).write_bytes(Path(capture).read_bytes())
    return job_dir


def zip_with(tmp_path: Path, files: dict[str, bytes], name: str = CAPTURE_NAME) -> Path:
    """A zip of exactly ``files`` (for hand-made bad captures)."""
    return synthetic.write_zip(files, Path(tmp_path) / name)


def capture_files(
    obj: str = "sphere",
    views: int = 12,
    size: int = 48,
    seed: int = 0,
    zip_layout: synthetic.ZipLayout | None = None,
) -> dict[str, bytes]:
    """A good capture's files ``{path: bytes}``, for a test to alter and zip with ``zip_with``."""
    return synthetic.capture_files(capture_truth(obj, views, size, seed), zip_layout)
