"""Embree ray casting of a triangle mesh into pinhole cameras: visibility tests and rendered views.

Cameras follow the engine's convention (scene.py, engine-spec): camera-to-frame matrices with OpenGL
axes (the camera looks down -Z, +Y up), intrinsics ``[[fl_x, 0, cx], [0, fl_y, cy], [0, 0, 1]]``,
continuous pixel coordinates with pixel (i, j) covering [i, i+1) x [j, j+1), v growing downwards:
``u = cx + fl_x * x_c / (-z_c)``, ``v = cy - fl_y * y_c / (-z_c)``. The mesh and the cameras must be
in the same frame (the box frame inside the engine).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from embreex import rtcore_scene
from embreex.mesh_construction import TriangleMesh

from gpu_container.engine.scene import Scene

NO_HIT = -1
# Embree reports this distance for rays that hit nothing.
_EMBREE_MISS_DISTANCE = 1e30


def apply_linear(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``matrix (3, 3)`` applied to each row of ``points (P, 3)`` (einsum: far faster than a BLAS matmul
    with an inner size of 3 on busy cores)."""
    return np.einsum("ij,pj->pi", matrix, points)


@dataclass(frozen=True)
class PinholeCamera:
    cam_to_frame: np.ndarray  # (4, 4) camera-to-frame, OpenGL axes
    intrinsics: np.ndarray  # (3, 3) pixels
    height: int
    width: int

    @property
    def center(self) -> np.ndarray:
        """(3,) camera position in the frame."""
        return self.cam_to_frame[:3, 3]

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates ``uv (P, 2)`` and depth ``(P,)`` (> 0 in front) of ``points (P, 3)``."""
        frame_to_cam = np.linalg.inv(self.cam_to_frame)  # exact inverse: similarity blocks work too
        in_camera = apply_linear(frame_to_cam[:3, :3], points) + frame_to_cam[:3, 3]  # (P, 3)
        depth = -in_camera[:, 2]
        safe_depth = np.where(np.abs(depth) > 1e-12, depth, 1e-12)
        fl_x, fl_y = self.intrinsics[0, 0], self.intrinsics[1, 1]
        cx, cy = self.intrinsics[0, 2], self.intrinsics[1, 2]
        u = cx + fl_x * in_camera[:, 0] / safe_depth
        v = cy - fl_y * in_camera[:, 1] / safe_depth
        return np.stack([u, v], axis=1), depth

    def in_image(self, uv: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """(P,) bool: in front of the camera and inside the image."""
        return (
            (depth > 0)
            & (uv[:, 0] >= 0)
            & (uv[:, 0] < self.width)
            & (uv[:, 1] >= 0)
            & (uv[:, 1] < self.height)
        )

    def pixel_rays(self) -> tuple[np.ndarray, np.ndarray]:
        """Rays through every pixel centre, row-major: origins ``(H*W, 3)``, unit directions ``(H*W, 3)``."""
        rows, cols = np.meshgrid(np.arange(self.height), np.arange(self.width), indexing="ij")
        fl_x, fl_y = self.intrinsics[0, 0], self.intrinsics[1, 1]
        cx, cy = self.intrinsics[0, 2], self.intrinsics[1, 2]
        x_c = (cols.ravel() + 0.5 - cx) / fl_x
        y_c = -(rows.ravel() + 0.5 - cy) / fl_y
        in_camera = np.stack([x_c, y_c, -np.ones_like(x_c)], axis=1)
        directions = apply_linear(self.cam_to_frame[:3, :3], in_camera)
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        origins = np.broadcast_to(self.center, directions.shape)
        return origins, directions

    def resized(self, width: int) -> PinholeCamera:
        """The same camera with an image ``width`` pixels wide (aspect ratio kept)."""
        scale = width / self.width
        intrinsics = self.intrinsics.copy()
        intrinsics[:2] *= scale
        return PinholeCamera(self.cam_to_frame, intrinsics, max(1, round(self.height * scale)), width)


def scene_camera(scene: Scene, view: int) -> PinholeCamera:
    """View ``view`` of the scene as a camera in the box frame."""
    height, width = scene.image_size
    return PinholeCamera(scene.cam_to_box[view], scene.intrinsics[view], height, width)


@dataclass(frozen=True)
class RayHits:
    face: np.ndarray  # (M,) int, NO_HIT where the ray hits nothing
    distance: np.ndarray  # (M,) float, inf where the ray hits nothing
    barycentric: np.ndarray  # (M, 3) weights of the hit face's three vertices

    @property
    def hit(self) -> np.ndarray:
        return self.face != NO_HIT


class RayCaster:
    """An embree scene over one triangle mesh (built once, queried many times)."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray) -> None:
        self.vertices = np.asarray(vertices, dtype=np.float64)
        self.faces = np.asarray(faces, dtype=np.int64)
        self.vertex_normals = vertex_normals(self.vertices, self.faces)
        self._scene = rtcore_scene.EmbreeScene()
        TriangleMesh(
            scene=self._scene,
            vertices=self.vertices.astype(np.float32),
            indices=self.faces.astype(np.int32),
        )

    def cast(self, origins: np.ndarray, directions: np.ndarray) -> RayHits:
        """First hit of each ray ``origins (M, 3)`` + t * ``directions (M, 3)`` (unit), t > 0."""
        if len(origins) == 0:
            return RayHits(np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 3)))
        result = self._scene.run(
            np.ascontiguousarray(origins, dtype=np.float32),
            np.ascontiguousarray(directions, dtype=np.float32),
            output=1,
        )
        face = result["primID"].astype(np.int64)
        missed = face == NO_HIT
        distance = np.where(missed | (result["tfar"] >= _EMBREE_MISS_DISTANCE), np.inf, result["tfar"])
        u, v = result["u"].astype(np.float64), result["v"].astype(np.float64)
        barycentric = np.stack([1.0 - u - v, u, v], axis=1)
        return RayHits(face, distance.astype(np.float64), barycentric)

    def unoccluded(
        self, points: np.ndarray, eye: np.ndarray, tolerance: float, faces: np.ndarray | None = None
    ) -> np.ndarray:
        """(P,) bool: the segment from ``eye`` to each of ``points (P, 3)`` meets no other surface first.

        A point counts as seen when the first hit along the ray from the eye lies within ``tolerance``
        of it, or is ``faces (P,)`` (the face the point lies on), when given.
        """
        offsets = points - eye
        distance = np.linalg.norm(offsets, axis=1)
        directions = offsets / np.maximum(distance, 1e-12)[:, None]
        hits = self.cast(np.broadcast_to(eye, points.shape), directions)
        seen = hits.distance >= distance - tolerance
        if faces is not None:
            seen |= hits.face == faces
        return seen


@dataclass(frozen=True)
class RenderedView:
    face: np.ndarray  # (H, W) int, NO_HIT on the background
    depth: np.ndarray  # (H, W) float distance along the ray, inf on the background
    color: np.ndarray  # (H, W, 3) float [0, 1], 0 on the background
    normal: np.ndarray  # (H, W, 3) unit interpolated vertex normal, 0 on the background
    view_dir: np.ndarray  # (H, W, 3) unit ray direction

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool: pixels the mesh covers."""
        return self.face != NO_HIT


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F, 3) unit normals, right-handed winding (counter-clockwise seen from outside)."""
    corners = vertices[faces]
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-20)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) area-weighted unit vertex normals."""
    corners = vertices[faces]
    weighted = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])  # |n| = 2 * area
    normals = np.zeros_like(vertices)
    for corner in range(3):
        np.add.at(normals, faces[:, corner], weighted)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-20)


SurfaceColors = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""Colour of surface points: ``(face (M,), barycentric (M, 3)) -> (M, 3)`` float [0, 1]."""


def vertex_color_lookup(faces: np.ndarray, vertex_colors: np.ndarray) -> SurfaceColors:
    """Surface colours interpolated from ``vertex_colors (V, 3)`` float [0, 1]."""

    def lookup(face: np.ndarray, barycentric: np.ndarray) -> np.ndarray:
        return np.einsum("mc,mck->mk", barycentric, vertex_colors[faces[face]])

    return lookup


def sample_bilinear(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """(P, C) samples of ``image (H, W, C)`` at continuous pixel coordinates ``xy (P, 2)``.

    Pixel (i, j) covers [i, i+1) x [j, j+1); positions are clamped to the pixel centres at the border.
    Float images keep their dtype; integer images are sampled as float64.
    """
    height, width = image.shape[:2]
    data = image if np.issubdtype(image.dtype, np.floating) else image.astype(np.float64)
    flat = data.reshape(height * width, -1)
    x = np.clip(xy[:, 0] - 0.5, 0.0, width - 1.0)
    y = np.clip(xy[:, 1] - 0.5, 0.0, height - 1.0)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    fx, fy = (x - x0).astype(data.dtype)[:, None], (y - y0).astype(data.dtype)[:, None]
    top = flat[y0 * width + x0] * (1 - fx) + flat[y0 * width + x1] * fx
    bottom = flat[y1 * width + x0] * (1 - fx) + flat[y1 * width + x1] * fx
    return top * (1 - fy) + bottom * fy


def texture_lookup(face_uv: np.ndarray, texture: np.ndarray) -> SurfaceColors:
    """Surface colours from ``texture (S, S, 3)`` uint8 at ``face_uv (F, 3, 2)`` (v = 0 at the bottom row)."""
    height, width = texture.shape[:2]

    def lookup(face: np.ndarray, barycentric: np.ndarray) -> np.ndarray:
        uv = np.einsum("mc,mck->mk", barycentric, face_uv[face])
        xy = np.stack([uv[:, 0] * width, (1.0 - uv[:, 1]) * height], axis=1)
        return sample_bilinear(texture, xy) / 255.0

    return lookup


def render(caster: RayCaster, colors: SurfaceColors, camera: PinholeCamera) -> RenderedView:
    """Unlit ``colors``, face, depth and smooth normal of every pixel of ``camera``."""
    origins, directions = camera.pixel_rays()
    hits = caster.cast(origins, directions)
    shape = (camera.height, camera.width)
    color = np.zeros((len(hits.face), 3))
    normal = np.zeros((len(hits.face), 3))
    hit = hits.hit
    if hit.any():
        face, barycentric = hits.face[hit], hits.barycentric[hit]
        color[hit] = colors(face, barycentric)
        smooth = np.einsum("mc,mck->mk", barycentric, caster.vertex_normals[caster.faces[face]])
        normal[hit] = smooth / np.maximum(np.linalg.norm(smooth, axis=1, keepdims=True), 1e-20)
    return RenderedView(
        face=hits.face.reshape(shape),
        depth=hits.distance.reshape(shape),
        color=np.clip(color, 0.0, 1.0).reshape(*shape, 3),
        normal=normal.reshape(*shape, 3),
        view_dir=directions.reshape(*shape, 3),
    )


def shaded_rgba(view: RenderedView, ambient: float) -> np.ndarray:
    """(H, W, 4) uint8 preview: colour lit by a headlight (``ambient`` + diffuse), transparent background."""
    facing = np.abs(np.sum(view.normal * view.view_dir, axis=-1, keepdims=True))
    lit = view.color * (ambient + (1.0 - ambient) * facing)
    rgba = np.zeros((*view.face.shape, 4), dtype=np.uint8)
    rgba[..., :3] = np.round(np.clip(lit, 0.0, 1.0) * 255).astype(np.uint8)
    rgba[..., 3] = np.where(view.mask, 255, 0)
    return rgba
