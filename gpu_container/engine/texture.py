"""A per-triangle texture atlas baked from the photographs.

Layout: faces are packed two to a square cell of ``cell`` x ``cell`` texels, cells row by row; face
``2c`` takes the top-left half of cell ``c`` and face ``2c + 1`` the bottom-right half. Each
triangle is inset so that bilinear lookups anywhere inside it only touch texels of its own face:
a ``_EDGE_MARGIN`` texel border around the cell and a ``_DIAGONAL_GAP`` between the two halves
(texels outside a triangle but in its half are filled from the nearest point of the face, a
gutter). The legs of each triangle are ``cell - 2 * _EDGE_MARGIN - _DIAGONAL_GAP`` texels long.

Colours: every face keeps its ``k`` best-facing views among those that see its centre inside the
image and silhouette, unoccluded (``visibility.sightings``); each texel's 3D point is projected
into those views and the bilinear samples are blended by the views' cos**power weights times the
silhouette coverage at the sample (no background bleeds in). Texels that no view covers are filled
from the vertex colours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gpu_container.engine.render import RayCaster, face_normals
from gpu_container.engine.scene import Scene
from gpu_container.engine.visibility import TopViews, ViewProgress, photo_samples, sightings

_EDGE_MARGIN = 1.0  # texels between a triangle's outer edges and the cell border
_DIAGONAL_GAP = 2.0  # texels between the two triangles of a cell, along the diagonal
MIN_CELL = 5  # texels: below this a triangle has no interior


@dataclass(frozen=True)
class TextureParams:
    cell: int  # texels per side of a cell (two faces)
    max_side: int  # the atlas never grows past this many texels a side (cells shrink instead)
    views_per_face: int  # best-facing views blended per face
    cos_power: float  # a view's weight is cos**power
    min_facing_cos: float
    mask_threshold: int


@dataclass(frozen=True)
class Atlas:
    face_uv: np.ndarray  # (F, 3, 2) texture coordinates of each face's corners, v = 0 at the bottom row
    image: np.ndarray  # (S, S, 3) uint8


@dataclass(frozen=True)
class CellTemplate:
    """Where the two faces of a cell sit, and which texels each one fills."""

    cell: int
    corners: np.ndarray  # (2, 3, 2) texel coordinates (x right, y down) of each half's corners
    texels: tuple[np.ndarray, np.ndarray]  # per half: (n, 2) int (col, row) offsets in the cell
    barycentric: tuple[np.ndarray, np.ndarray]  # per half: (n, 3) weights of the nearest face point


def cell_template(cell: int) -> CellTemplate:
    if cell < MIN_CELL:
        raise ValueError(f"a texture cell needs at least {MIN_CELL} texels a side, got {cell}")
    near, far = _EDGE_MARGIN, cell - _EDGE_MARGIN
    corners = np.array(
        [
            [[near, near], [far - _DIAGONAL_GAP, near], [near, far - _DIAGONAL_GAP]],
            [[far, far], [near + _DIAGONAL_GAP, far], [far, near + _DIAGONAL_GAP]],
        ]
    )
    cols, rows = np.meshgrid(np.arange(cell), np.arange(cell), indexing="xy")
    offsets = np.stack([cols.ravel(), rows.ravel()], axis=1)
    centres = offsets + 0.5
    first_half = centres.sum(axis=1) < cell
    texels, weights = [], []
    for half, members in enumerate((first_half, ~first_half)):
        texels.append(offsets[members])
        weights.append(_clamped_barycentric(centres[members], corners[half]))
    return CellTemplate(cell, corners, (texels[0], texels[1]), (weights[0], weights[1]))


def _clamped_barycentric(points: np.ndarray, triangle: np.ndarray) -> np.ndarray:
    """(n, 3) barycentric weights of 2D ``points (n, 2)``, clamped to the triangle and renormalised."""
    origin, edge_1, edge_2 = triangle[0], triangle[1] - triangle[0], triangle[2] - triangle[0]
    solved = np.linalg.solve(np.stack([edge_1, edge_2], axis=1), (points - origin).T).T  # (n, 2)
    weights = np.clip(np.column_stack([1.0 - solved.sum(axis=1), solved]), 0.0, None)
    return weights / weights.sum(axis=1, keepdims=True)


def layout(face_count: int, params: TextureParams) -> tuple[int, int]:
    """(cell, cells per row) for ``face_count`` faces: the preset's cell, smaller if the atlas overflows."""
    per_row = max(1, int(np.ceil(np.sqrt((face_count + 1) // 2))))
    cell = min(params.cell, params.max_side // per_row)
    if cell < MIN_CELL:
        raise ValueError(f"{face_count} faces do not fit a {params.max_side}² atlas")
    return cell, per_row


def bake(
    vertices: np.ndarray,
    faces: np.ndarray,
    vertex_colors: np.ndarray,
    scene: Scene,
    params: TextureParams,
    tolerance: float,
    on_view: ViewProgress | None = None,
    on_sample: ViewProgress | None = None,
) -> Atlas:
    """The atlas of ``faces`` (box frame) from the scene's training photographs.

    ``on_view`` is called before each view's visibility test, ``on_sample`` before each batch of
    texel samples (both may raise to stop).
    """
    cell, per_row = layout(len(faces), params)
    template = cell_template(cell)
    side = cell * per_row
    caster = RayCaster(vertices, faces)
    best = TopViews(len(faces), params.views_per_face)
    for sighting in sightings(
        vertices[faces].mean(axis=1),
        face_normals(vertices, faces),
        scene,
        caster,
        params.min_facing_cos,
        tolerance,
        mask_threshold=params.mask_threshold,
        point_faces=np.arange(len(faces)),
        on_view=on_view,
    ):
        best.offer(sighting.points, sighting.cos**params.cos_power, sighting.view)

    face_ids = np.arange(len(faces))
    cell_origin = np.stack([(face_ids // 2) % per_row, (face_ids // 2) // per_row], axis=1) * cell  # (F, 2)
    half = face_ids % 2
    corners_xy = cell_origin[:, None, :] + template.corners[half]  # (F, 3, 2)
    face_uv = np.stack([corners_xy[..., 0] / side, 1.0 - corners_xy[..., 1] / side], axis=-1)

    texture = np.zeros((side, side, 3))
    kept_views = best.kept_views
    for which in (0, 1):
        members = face_ids[half == which]
        texels = cell_origin[members][:, None, :] + template.texels[which][None]  # (Fh, n, 2)
        weights = template.barycentric[which]  # (n, 3)
        points = np.einsum("nc,fck->fnk", weights, vertices[faces[members]])  # (Fh, n, 3)
        color_sum = np.zeros(points.shape)
        weight_sum = np.zeros(points.shape[:2])
        for number, view in enumerate(kept_views):
            if on_sample is not None:
                on_sample(which * len(kept_views) + number, 2 * len(kept_views))
            rows, share = best.normalised_weight(int(view))
            in_half = half[rows] == which
            rows, share = rows[in_half], share[in_half]
            local = rows // 2  # index within ``members`` (faces 2c + which)
            samples, coverage = photo_samples(scene, int(view), points[local].reshape(-1, 3))
            texel_weight = share[:, None] * coverage.reshape(len(rows), -1)  # (M, n)
            color_sum[local] += texel_weight[..., None] * samples.reshape(len(rows), -1, 3)
            weight_sum[local] += texel_weight
        fallback = np.einsum("nc,fck->fnk", weights, vertex_colors[faces[members]])  # (Fh, n, 3)
        colored = weight_sum > 0
        colours = np.where(colored[..., None], color_sum / np.maximum(weight_sum, 1e-12)[..., None], fallback)
        texture[texels[..., 1], texels[..., 0]] = colours
    image = np.round(np.clip(texture, 0.0, 1.0) * 255).astype(np.uint8)
    return Atlas(face_uv=face_uv, image=image)
