"""Which training views see which surface points, and the best-facing views of each point.

A view sees a point when the point projects inside its image, the surface there faces the camera
(cos between the normal and the direction to the camera above ``min_cos``), optionally the pixel
lies inside the view's silhouette, and the ray from the camera meets no other surface first
(embree, ``RayCaster.unoccluded``). Used by the mesh stage (faces no camera sees, vertex colours)
and the texture atlas (per-face views).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from gpu_container.engine.render import RayCaster, sample_bilinear, scene_camera
from gpu_container.engine.scene import Scene

ViewProgress = Callable[[int, int], None]  # (views done, views in all); may raise StageCancelled


@dataclass(frozen=True)
class Sighting:
    view: int  # index into the scene's views
    points: np.ndarray  # (M,) indices of the points this view sees
    cos: np.ndarray  # (M,) cos(normal, direction to the camera)
    uv: np.ndarray  # (M, 2) pixel coordinates in the view


def sightings(
    points: np.ndarray,
    normals: np.ndarray,
    scene: Scene,
    caster: RayCaster,
    min_cos: float,
    tolerance: float,
    mask_threshold: int | None = None,
    point_faces: np.ndarray | None = None,
    pending: np.ndarray | None = None,
    on_view: ViewProgress | None = None,
) -> Iterator[Sighting]:
    """One ``Sighting`` per training view of ``points (P, 3)`` with unit ``normals (P, 3)``.

    ``mask_threshold``: also require the silhouette (mask >= threshold) at the projected pixel.
    ``point_faces (P,)``: the face each point lies on (a ray that hits it counts as seeing the point).
    ``pending (P,)`` bool: only points still True are tested; the caller may clear entries between
    views (e.g. once a face is known to be seen) to save rays.
    """
    views = scene.training_views
    for number, view in enumerate(views):
        if on_view is not None:
            on_view(number, len(views))
        camera = scene_camera(scene, int(view))
        uv, depth = camera.project(points)
        to_camera = camera.center - points
        cos = np.sum(normals * to_camera, axis=1) / np.maximum(np.linalg.norm(to_camera, axis=1), 1e-12)
        candidate = camera.in_image(uv, depth) & (cos > min_cos)
        if pending is not None:
            candidate &= pending
        chosen = np.flatnonzero(candidate)
        if mask_threshold is not None and len(chosen):
            pixels = np.floor(uv[chosen]).astype(np.int64)
            chosen = chosen[scene.masks[view][pixels[:, 1], pixels[:, 0]] >= mask_threshold]
        if len(chosen):
            faces = None if point_faces is None else point_faces[chosen]
            chosen = chosen[caster.unoccluded(points[chosen], camera.center, tolerance, faces)]
        yield Sighting(int(view), chosen, cos[chosen], uv[chosen])


class TopViews:
    """Streaming top-k: for each of ``count`` points, the ``k`` views offered with the highest weights."""

    def __init__(self, count: int, k: int) -> None:
        self.weight = np.zeros((count, k))  # 0 = empty slot
        self.view = np.full((count, k), -1, dtype=np.int64)

    def offer(self, points: np.ndarray, weights: np.ndarray, view: int) -> None:
        """Offer ``view`` to ``points (M,)`` with ``weights (M,)`` > 0: it replaces a weaker kept view."""
        slot = np.argmin(self.weight[points], axis=1)
        better = weights > self.weight[points, slot]
        self.weight[points[better], slot[better]] = weights[better]
        self.view[points[better], slot[better]] = view

    @property
    def seen(self) -> np.ndarray:
        """(count,) bool: at least one view was kept."""
        return self.weight.sum(axis=1) > 0

    def normalised_weight(self, view: int) -> tuple[np.ndarray, np.ndarray]:
        """Points that kept ``view`` and its share of their total weight: ``(points (M,), share (M,))``."""
        rows, slots = np.nonzero(self.view == view)
        total = self.weight.sum(axis=1)
        return rows, self.weight[rows, slots] / total[rows]

    @property
    def kept_views(self) -> np.ndarray:
        """Sorted distinct views kept by any point."""
        return np.unique(self.view[self.view >= 0])


def photo_samples(scene: Scene, view: int, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Colour ``(P, 3)`` float [0, 1] and silhouette coverage ``(P,)`` [0, 1] of ``points (P, 3)`` in a view.

    Bilinear over the pixels inside the silhouette only (image x mask, divided by the interpolated
    mask), so the background never bleeds into a colour sampled near a silhouette; callers weight
    samples by their coverage.
    """
    uv, _ = scene_camera(scene, view).project(points)
    mask = scene.masks[view].astype(np.float32) / 255.0
    premultiplied = np.concatenate([scene.images[view] * (mask[..., None] / 255.0), mask[..., None]], axis=-1)
    samples = sample_bilinear(premultiplied.astype(np.float32), uv)  # (P, 4): r*a, g*a, b*a, a
    coverage = samples[:, 3]
    colors = samples[:, :3] / np.maximum(coverage, 1e-6)[:, None]
    return np.clip(colors, 0.0, 1.0), coverage
