"""Stage `mesh`: the reconstructed signed-distance field to a clean, decimated, coloured triangle mesh.

Reads ``work/reconstruct/field.npz`` (sdf, color, resolution) and ``work/preprocess/scene.npz``;
writes ``work/mesh/mesh.ply`` in BOX coordinates with per-vertex colours, and ``stage.json``.

Steps: marching cubes at level 0 (faces wound so normals point away from negative SDF), the largest
connected component, faces that no training view sees (centre in the image, front-facing,
unoccluded) removed, decimation to the preset's face budget, then per-vertex colours blended from
the best-facing views that see the vertex unoccluded and inside their silhouette (the colour grid
fills the vertices that no view sees).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import fast_simplification
import numpy as np
import trimesh
from scipy.ndimage import map_coordinates
from skimage.measure import marching_cubes

from gpu_container.engine.context import CaptureError, StageContext, Stopwatch
from gpu_container.engine.render import RayCaster, face_normals, sample_bilinear, scene_camera
from gpu_container.engine.scene import Scene

STAGE = "mesh"
MESH_FILE = "mesh.ply"
FIELD_FILE = "field.npz"


@dataclass(frozen=True)
class MeshParams:
    target_faces: int  # decimation budget
    min_facing_cos: float = 0.05  # a view sees a face/vertex only when cos(normal, to-camera) exceeds this
    occlusion_tolerance_voxels: float = (
        0.5  # a ray hit this close to the point (in voxels) is the point itself
    )
    color_views: int = 3  # number of best-facing views blended into each vertex colour
    color_cos_power: float = 4.0  # weight of a view = cos ** power, favouring views that face the surface
    mask_threshold: int = 128  # a projected vertex samples colour only where the mask is at least this
    decimation_aggression: float = 7.0  # fast-simplification `agg` (0 = slow and faithful, 10 = fast)


_PRESETS = {
    "draft": MeshParams(target_faces=20_000, color_views=2),
    "standard": MeshParams(target_faces=100_000),
    "high": MeshParams(target_faces=300_000, decimation_aggression=5.0),
}


def params_for(preset: str) -> MeshParams:
    try:
        return _PRESETS[preset]
    except KeyError:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(_PRESETS)}") from None


# --- geometry steps (pure functions on arrays, each tested on its own) ---------------------------


def extract_surface(sdf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero level set of ``sdf (R, R, R)`` (negative inside): box-frame ``vertices (V, 3)``, ``faces (F, 3)``.

    Faces are wound counter-clockwise seen from the positive side, so face normals point outward.
    """
    resolution = sdf.shape[0]
    if not (sdf.min() < 0.0 < sdf.max()):
        raise CaptureError(
            "empty_surface",
            f"work/reconstruct/{FIELD_FILE}: the signed distance never crosses zero (no surface)",
        )
    spacing = 2.0 / (resolution - 1)
    # skimage's default gradient direction ("descent") winds faces outward for values that grow
    # outward, i.e. an SDF that is negative inside; test_surface_normals_point_outward pins it.
    vertices, faces, _, _ = marching_cubes(sdf, level=0.0, spacing=(spacing,) * 3)
    return vertices - 1.0, faces.astype(np.int64)


def compact(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop vertices no face uses and renumber the faces."""
    used, inverse = np.unique(faces, return_inverse=True)
    return vertices[used], inverse.reshape(faces.shape)


def largest_component(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The connected component (faces sharing an edge) with the most faces."""
    adjacency = trimesh.graph.face_adjacency(faces=faces)
    labels = trimesh.graph.connected_component_labels(adjacency, node_count=len(faces))
    keep = labels == np.argmax(np.bincount(labels))
    return compact(vertices, faces[keep])


def seen_faces(
    vertices: np.ndarray,
    faces: np.ndarray,
    scene: Scene,
    params: MeshParams,
    tolerance: float,
    ctx: StageContext | None = None,
) -> np.ndarray:
    """(F,) bool: some training view sees the face centre in its image, front-facing and unoccluded."""
    caster = RayCaster(vertices, faces)
    centers = vertices[faces].mean(axis=1)
    normals = face_normals(vertices, faces)
    face_ids = np.arange(len(faces))
    seen = np.zeros(len(faces), dtype=bool)
    views = scene.training_views
    for number, view in enumerate(views):
        if ctx is not None:
            ctx.check_stop()
            ctx.on_progress(0.2 + 0.4 * number / len(views), f"visibility in view {number + 1}/{len(views)}")
        camera = scene_camera(scene, view)
        uv, depth = camera.project(centers)
        to_camera = camera.center - centers
        facing = np.sum(normals * to_camera, axis=1) > params.min_facing_cos * np.linalg.norm(
            to_camera, axis=1
        )
        candidates = np.flatnonzero(camera.in_image(uv, depth) & facing & ~seen)
        if len(candidates):
            visible = caster.unoccluded(centers[candidates], camera.center, tolerance, face_ids[candidates])
            seen[candidates[visible]] = True
    return seen


def decimate(
    vertices: np.ndarray, faces: np.ndarray, target_faces: int, aggression: float
) -> tuple[np.ndarray, np.ndarray]:
    """Quadric decimation to about ``target_faces`` (no change when already under budget)."""
    if len(faces) <= target_faces:
        return vertices, faces
    vertices, faces = fast_simplification.simplify(
        vertices.astype(np.float64), faces.astype(np.int32), target_count=target_faces, agg=aggression
    )
    cleaned = trimesh.Trimesh(vertices, faces, process=True)  # merge duplicates, drop degenerate faces
    return np.asarray(cleaned.vertices), np.asarray(cleaned.faces, dtype=np.int64)


def sample_grid(volume: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(P, C) trilinear samples of ``volume (R, R, R, C)`` on the engine grid at box points ``(P, 3)``."""
    resolution = volume.shape[0]
    indices = ((np.clip(points, -1.0, 1.0) + 1.0) * (resolution - 1) / 2.0).T  # (3, P)
    return np.stack(
        [map_coordinates(volume[..., c], indices, order=1, mode="nearest") for c in range(volume.shape[3])],
        axis=1,
    )


def view_colors(
    vertices: np.ndarray,
    faces: np.ndarray,
    scene: Scene,
    params: MeshParams,
    tolerance: float,
    ctx: StageContext | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-vertex colours ``(V, 3)`` float [0, 1] from the best-facing views, and ``(V,)`` bool seen-by-any.

    Each training view that sees a vertex (inside the image and its silhouette, front-facing,
    unoccluded) offers the bilinear image colour with weight cos**power; the ``color_views``
    highest weights are blended.
    """
    caster = RayCaster(vertices, faces)
    normals = caster.vertex_normals
    count = len(vertices)
    best_weight = np.zeros((count, params.color_views))
    best_color = np.zeros((count, params.color_views, 3))
    rows = np.arange(count)
    views = scene.training_views
    for number, view in enumerate(views):
        if ctx is not None:
            ctx.check_stop()
            ctx.on_progress(0.7 + 0.25 * number / len(views), f"colours from view {number + 1}/{len(views)}")
        camera = scene_camera(scene, view)
        uv, depth = camera.project(vertices)
        to_camera = camera.center - vertices
        cos = np.sum(normals * to_camera, axis=1) / np.maximum(np.linalg.norm(to_camera, axis=1), 1e-12)
        candidates = np.flatnonzero(camera.in_image(uv, depth) & (cos > params.min_facing_cos))
        pixels = np.floor(uv[candidates]).astype(np.int64)
        inside = scene.masks[view][pixels[:, 1], pixels[:, 0]] >= params.mask_threshold
        candidates = candidates[inside]
        candidates = candidates[caster.unoccluded(vertices[candidates], camera.center, tolerance)]
        weight = cos[candidates] ** params.color_cos_power
        # Streaming top-k: replace each vertex's weakest kept view when this one faces it better.
        slot = np.argmin(best_weight[candidates], axis=1)
        better = weight > best_weight[candidates, slot]
        target_rows, target_slots = rows[candidates[better]], slot[better]
        best_weight[target_rows, target_slots] = weight[better]
        best_color[target_rows, target_slots] = (
            sample_bilinear(scene.images[view], uv[candidates[better]]) / 255.0
        )
    total = best_weight.sum(axis=1)
    seen = total > 0
    colors = np.zeros((count, 3))
    colors[seen] = np.einsum("vk,vkc->vc", best_weight[seen], best_color[seen]) / total[seen, None]
    return colors, seen


# --- the stage -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColoredMesh:
    vertices: np.ndarray  # (V, 3) box frame
    faces: np.ndarray  # (F, 3)
    colors: np.ndarray  # (V, 3) float [0, 1]

    def to_trimesh(self) -> trimesh.Trimesh:
        rgba = np.full((len(self.vertices), 4), 255, dtype=np.uint8)
        rgba[:, :3] = np.round(np.clip(self.colors, 0.0, 1.0) * 255).astype(np.uint8)
        return trimesh.Trimesh(self.vertices, self.faces, vertex_colors=rgba, process=False)


def build_mesh(
    sdf: np.ndarray,
    color_grid: np.ndarray,
    scene: Scene,
    params: MeshParams,
    ctx: StageContext | None = None,
) -> tuple[ColoredMesh, dict]:
    """All the mesh steps in order; returns the mesh and the face counts after each step."""
    tolerance = params.occlusion_tolerance_voxels * 2.0 / (sdf.shape[0] - 1)
    vertices, faces = extract_surface(sdf)
    counts = {"faces_marching_cubes": len(faces)}
    vertices, faces = largest_component(vertices, faces)
    counts["faces_largest_component"] = len(faces)
    seen = seen_faces(vertices, faces, scene, params, tolerance, ctx)
    if not seen.any():
        raise CaptureError("empty_surface", "no camera sees any face of the reconstructed surface")
    vertices, faces = compact(vertices, faces[seen])
    counts["faces_seen"] = len(faces)
    if ctx is not None:
        ctx.on_progress(0.6, "decimating")
    vertices, faces = decimate(vertices, faces, params.target_faces, params.decimation_aggression)
    counts["faces_final"] = len(faces)
    counts["vertices_final"] = len(vertices)
    colors, colored = view_colors(vertices, faces, scene, params, tolerance, ctx)
    if not colored.all():
        colors[~colored] = np.clip(sample_grid(color_grid, vertices[~colored]), 0.0, 1.0)
    counts["vertices_colored_from_grid"] = int((~colored).sum())
    return ColoredMesh(vertices, faces, colors), counts


def run(ctx: StageContext) -> dict:
    clock = Stopwatch()
    params = params_for(ctx.preset)
    field_path = ctx.job_dir / "work" / "reconstruct" / FIELD_FILE
    with np.load(field_path) as field:
        sdf, color_grid = field["sdf"], field["color"]
    scene = Scene.load(ctx.job_dir / "work" / "preprocess")
    ctx.on_progress(0.0, "marching cubes")
    mesh, counts = build_mesh(sdf, color_grid, scene, params, ctx)
    out_dir = ctx.work_dir(STAGE)
    mesh.to_trimesh().export(out_dir / MESH_FILE)
    figures = {
        "stage": STAGE,
        "seconds": round(clock.seconds, 3),
        "device": str(ctx.device),
        "resolution": int(sdf.shape[0]),
        **counts,
        "params": asdict(params),
    }
    write_stage_json(out_dir, figures)
    ctx.on_progress(1.0, f"{counts['faces_final']} faces")
    return figures


def write_stage_json(folder: Path, figures: dict) -> Path:
    path = folder / "stage.json"
    path.write_text(json.dumps(figures, indent=2))
    return path
