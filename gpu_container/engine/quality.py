"""Reconstruction quality against a ground-truth mesh (DESIGN.md, "Quality figures").

Both meshes are put in the frame where the ground truth's bounding box is centred with longest side
1; each is sampled by area; Chamfer-L1 = (mean distance result->GT + mean distance GT->result) / 2;
F@tau = harmonic mean of precision (result points within tau of GT) and recall (GT points within tau
of the result), tau a fraction of the longest side; normal consistency = mean |n . n'| to the
nearest point, both ways. ``integrity``: watertight, manifold (manifold3d's check) and pieces.
"""

from __future__ import annotations

from dataclasses import dataclass

import manifold3d
import numpy as np
import trimesh
from scipy.spatial import cKDTree


@dataclass(frozen=True)
class QualityParams:
    samples: int = 200_000  # area-weighted points per mesh
    thresholds: tuple[float, ...] = (0.005, 0.01, 0.02)  # F-score distances, fraction of the longest side
    seed: int = 0


@dataclass(frozen=True)
class Quality:
    chamfer_l1: float
    fscore: dict[float, float]  # tau -> F
    precision: dict[float, float]
    recall: dict[float, float]
    normal_consistency: float

    def as_dict(self) -> dict:
        """JSON-friendly: F-scores keyed ``f@0.5%`` etc."""
        figures: dict = {"chamfer_l1": self.chamfer_l1, "normal_consistency": self.normal_consistency}
        for tau, value in self.fscore.items():
            figures[f"f@{tau * 100:g}%"] = value
        return figures


def normalisation(reference: trimesh.Trimesh) -> np.ndarray:
    """(4, 4) transform putting ``reference``'s bounding box at the origin with longest side 1."""
    low, high = reference.bounds
    transform = np.eye(4)
    scale = 1.0 / float(np.max(high - low))
    transform[:3, :3] *= scale
    transform[:3, 3] = -scale * (low + high) / 2.0
    return transform


def sample_surface(mesh: trimesh.Trimesh, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``points (count, 3)`` sampled uniformly by area and their face normals ``(count, 3)``."""
    points, face_index = trimesh.sample.sample_surface(mesh, count, seed=seed)
    return np.asarray(points), np.asarray(mesh.face_normals[face_index])


def compare(result: trimesh.Trimesh, ground_truth: trimesh.Trimesh, params: QualityParams) -> Quality:
    """Quality figures of ``result`` against ``ground_truth`` (both in the same frame)."""
    transform = normalisation(ground_truth)
    result_points, result_normals = sample_surface(
        result.copy().apply_transform(transform), params.samples, params.seed
    )
    truth_points, truth_normals = sample_surface(
        ground_truth.copy().apply_transform(transform), params.samples, params.seed
    )
    to_truth, nearest_truth = cKDTree(truth_points).query(result_points, workers=-1)
    to_result, nearest_result = cKDTree(result_points).query(truth_points, workers=-1)
    fscore, precision, recall = {}, {}, {}
    for tau in params.thresholds:
        precision[tau] = float(np.mean(to_truth < tau))
        recall[tau] = float(np.mean(to_result < tau))
        total = precision[tau] + recall[tau]
        fscore[tau] = 2.0 * precision[tau] * recall[tau] / total if total > 0 else 0.0
    consistency_forward = np.abs(np.sum(result_normals * truth_normals[nearest_truth], axis=1))
    consistency_backward = np.abs(np.sum(truth_normals * result_normals[nearest_result], axis=1))
    return Quality(
        chamfer_l1=float((to_truth.mean() + to_result.mean()) / 2.0),
        fscore=fscore,
        precision=precision,
        recall=recall,
        normal_consistency=float((consistency_forward.mean() + consistency_backward.mean()) / 2.0),
    )


@dataclass(frozen=True)
class Integrity:
    """Topology of a mesh: what the issue's "one clean piece" goal checks."""

    watertight: bool  # every edge is shared by exactly two faces, wound consistently
    manifold: bool  # manifold3d accepts it as a closed 2-manifold (edges and vertices)
    pieces: int  # connected components (faces sharing an edge)

    @property
    def clean(self) -> bool:
        return self.watertight and self.manifold and self.pieces == 1


def views_seeing(
    mesh: trimesh.Trimesh,
    cam_to_world: np.ndarray,
    intrinsics: np.ndarray,
    size: tuple[int, int],
    samples: int = 20_000,
    seed: int = 0,
    min_facing_cos: float = 0.05,
) -> np.ndarray:
    """(samples,) how many of the cameras see each of ``samples`` area samples of ``mesh``: in the
    frame, facing it and not hidden by the mesh itself (a ray cast from the camera first meets the
    surface there). ``cam_to_world`` (N, 4, 4) in OpenGL axes, ``intrinsics`` (3, 3), ``size`` (width,
    height). What no two cameras see, no multi-view method can place: the bench reports it beside
    the F-scores (the inside of a bore seen end-on by no camera, a deep cup's floor corner)."""
    points, face_index = trimesh.sample.sample_surface(mesh, samples, seed=seed)
    points, normals = np.asarray(points), np.asarray(mesh.face_normals[face_index])
    tolerance = 1e-4 * float(np.max(mesh.extents))
    (fx, _, cx), (_, fy, cy) = intrinsics[0], intrinsics[1]
    width, height = size
    counts = np.zeros(len(points), dtype=np.int64)
    for cam_to_world_one in cam_to_world:
        centre = cam_to_world_one[:3, 3]
        offsets = points - centre
        distance = np.linalg.norm(offsets, axis=1)
        directions = offsets / distance[:, None]
        local = offsets @ cam_to_world_one[:3, :3]  # camera axes: x right, y up, -z forward
        ahead = np.maximum(-local[:, 2], 1e-12)
        u, v = cx + fx * local[:, 0] / ahead, cy - fy * local[:, 1] / ahead
        framed = (local[:, 2] < 0) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
        candidates = np.nonzero(framed & (np.sum(-directions * normals, axis=1) > min_facing_cos))[0]
        if not len(candidates):
            continue
        hits, ray_index, _ = mesh.ray.intersects_location(
            np.repeat(centre[None], len(candidates), axis=0), directions[candidates], multiple_hits=False
        )
        first = np.full(len(candidates), np.inf)
        np.minimum.at(first, ray_index, np.linalg.norm(hits - centre, axis=1))
        counts[candidates[first >= distance[candidates] - tolerance]] += 1
    return counts


def integrity(mesh: trimesh.Trimesh) -> Integrity:
    """Watertight / manifold / pieces of ``mesh``; coincident vertices are merged first (an exported
    mesh may split vertices for its texture coordinates)."""
    merged = trimesh.Trimesh(np.asarray(mesh.vertices), np.asarray(mesh.faces), process=False)
    merged.merge_vertices(merge_tex=True, merge_norm=True)
    faces = np.asarray(merged.faces)
    adjacency = trimesh.graph.face_adjacency(faces=faces)
    pieces = int(trimesh.graph.connected_component_labels(adjacency, node_count=len(faces)).max() + 1)
    solid = manifold3d.Manifold(
        manifold3d.Mesh(
            vert_properties=np.asarray(merged.vertices, dtype=np.float32),
            tri_verts=faces.astype(np.uint32),
        )
    )
    return Integrity(
        watertight=bool(merged.is_watertight and merged.is_winding_consistent),
        manifold=solid.status() == manifold3d.Error.NoError,
        pieces=pieces if len(faces) else 0,
    )
