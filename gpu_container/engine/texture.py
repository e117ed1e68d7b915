"""A texture atlas of charts (xatlas) baked from the photographs, blended across seams.

Layout: ``xatlas`` cuts the mesh into charts (connected patches of faces, flattened with little
stretch) and packs them into a square atlas of at most ``max_side`` texels at ``texels_per_unit``
(the preset's density, lowered until the charts fit), ``padding`` texels apart. Seams lie only on
chart borders, so the texture can be edited and re-baked in other tools.

Colours: each texel of a face is a 3D point on the surface (its barycentric coordinates in the
face's UV triangle). The views blended at it are its face's vertices' best-facing views (those
that see the vertex inside the image and the silhouette, unoccluded: ``visibility.sightings``),
weighted by the vertices' cos**power shares interpolated barycentrically. The weights are thus a
continuous function of the surface point: the two sides of a seam, in different charts, get the
same blend, so no seam shows. Each view's sample is bilinear and weighted by the silhouette
coverage there (no background bleeds in); texels that no view covers take the vertex colours.
Last, every empty texel takes the colour of the nearest baked texel (charts are dilated into the
padding, so bilinear look-ups and mipmaps at chart borders never reach the background).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import xatlas
from scipy import ndimage

from gpu_container.engine.scene import Scene
from gpu_container.engine.visibility import TopViews, ViewProgress, photo_samples

MIN_SIDE = 64  # texels: the smallest atlas
FIT_STEP = 0.8  # density factor applied while the charts overflow ``max_side``
MAX_FIT_TRIES = 12
EDGE_EPSILON = 1e-6  # barycentric slack: texels exactly on a shared edge belong to both faces


@dataclass(frozen=True)
class TextureParams:
    max_side: int  # the atlas never grows past this many texels a side
    texels_per_unit: float  # wanted texels per box unit of surface length
    padding: int = 2  # texels between charts
    chart_iterations: int = 0  # xatlas chart-growing iterations (1: about 1.8x the time of 0, measured)


@dataclass(frozen=True)
class Atlas:
    face_uv: np.ndarray  # (F, 3, 2) texture coordinates of each face's corners, v = 0 at the bottom row
    image: np.ndarray  # (S, S, 3) uint8
    charts: int = 0  # charts in the layout
    filled_fraction: float = 0.0  # texels that lie on a face


def layout(vertices: np.ndarray, faces: np.ndarray, params: TextureParams) -> tuple[np.ndarray, int, int]:
    """``face_uv (F, 3, 2)`` in [0, 1] (v up), the atlas side and the chart count from xatlas."""
    chart_options = xatlas.ChartOptions()
    chart_options.max_iterations = params.chart_iterations
    density = params.texels_per_unit
    for _ in range(MAX_FIT_TRIES):
        atlas = xatlas.Atlas()
        atlas.add_mesh(vertices.astype(np.float32), faces.astype(np.uint32))
        pack_options = xatlas.PackOptions()
        pack_options.padding = params.padding
        pack_options.bilinear = True
        pack_options.texels_per_unit = density
        pack_options.resolution = 0  # one atlas, as large as the density needs
        atlas.generate(chart_options, pack_options)
        side = max(atlas.width, atlas.height, MIN_SIDE)
        if side <= params.max_side and atlas.atlas_count == 1:
            break
        density *= FIT_STEP * min(1.0, params.max_side / side)
        chart_options = xatlas.ChartOptions()
        chart_options.max_iterations = params.chart_iterations
    else:
        raise ValueError(f"{len(faces)} faces do not fit a {params.max_side}² atlas")
    mapping, indices, uv = atlas[0]
    if not np.array_equal(mapping[indices], faces):
        raise ValueError("xatlas reordered the faces")  # the face order carries the texture coordinates
    # xatlas' uv are in [0, 1] of (width, height), v down from the top row; the atlas is square (side).
    texel = uv * np.array([atlas.width, atlas.height])
    face_uv = np.stack([texel[..., 0] / side, 1.0 - texel[..., 1] / side], axis=-1)[indices]
    return face_uv, int(side), int(atlas.chart_count)


def rasterise(face_uv: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The texels whose centres lie on a face: ``(rows, cols)`` (T,) each, their face (T,) and
    barycentric weights (T, 3)."""
    xy = np.stack([face_uv[..., 0] * side, (1.0 - face_uv[..., 1]) * side], axis=-1)  # (F, 3, 2) texels
    low = np.floor(xy.min(axis=1) - 0.5).astype(np.int64)
    high = np.ceil(xy.max(axis=1) - 0.5).astype(np.int64)
    span = (high - low + 1).max(axis=1)
    rows, cols, owners, weights = [], [], [], []
    for size in np.unique(2 ** np.ceil(np.log2(np.maximum(span, 1))).astype(np.int64)):
        members = np.flatnonzero(2 ** np.ceil(np.log2(np.maximum(span, 1))) == size)
        for start in range(0, len(members), max(1, (1 << 22) // int(size * size))):
            batch = members[start : start + max(1, (1 << 22) // int(size * size))]
            offset = np.arange(size)
            col = low[batch, 0, None, None] + offset[None, None, :]  # (B, 1, S)
            row = low[batch, 1, None, None] + offset[None, :, None]  # (B, S, 1)
            col, row = np.broadcast_arrays(col, row)
            centre = np.stack([col + 0.5, row + 0.5], axis=-1)  # (B, S, S, 2)
            tri = xy[batch]
            origin = tri[:, None, None, 0]
            edge_1, edge_2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
            det = edge_1[:, 0] * edge_2[:, 1] - edge_1[:, 1] * edge_2[:, 0]
            safe = np.where(np.abs(det) > 1e-12, det, 1.0)[:, None, None]
            rel = centre - origin
            b1 = (rel[..., 0] * edge_2[:, None, None, 1] - rel[..., 1] * edge_2[:, None, None, 0]) / safe
            b2 = (edge_1[:, None, None, 0] * rel[..., 1] - edge_1[:, None, None, 1] * rel[..., 0]) / safe
            b0 = 1.0 - b1 - b2
            on_face = (
                (b0 >= -EDGE_EPSILON)
                & (b1 >= -EDGE_EPSILON)
                & (b2 >= -EDGE_EPSILON)
                & (np.abs(det) > 1e-12)[:, None, None]
                & (col >= 0)
                & (col < side)
                & (row >= 0)
                & (row < side)
            )
            face_index, r, c = np.nonzero(on_face)
            rows.append(row[face_index, r, c])
            cols.append(col[face_index, r, c])
            owners.append(batch[face_index])
            weights.append(np.clip(np.stack([b0, b1, b2], axis=-1)[face_index, r, c], 0.0, None))
    weights_all = np.concatenate(weights) if weights else np.zeros((0, 3))
    weights_all /= np.maximum(weights_all.sum(axis=1, keepdims=True), 1e-12)
    texels = (np.concatenate(rows), np.concatenate(cols)) if rows else (np.zeros(0, int), np.zeros(0, int))
    return np.stack(texels), np.concatenate(owners) if owners else np.zeros(0, int), weights_all


def bake(
    vertices: np.ndarray,
    faces: np.ndarray,
    vertex_colors: np.ndarray,
    best: TopViews,
    scene: Scene,
    params: TextureParams,
    on_sample: ViewProgress | None = None,
) -> Atlas:
    """The atlas of ``faces`` (box frame) from the scene's photographs.

    ``best``: each vertex's best-facing views (``TopViews`` over the vertices, from the vertex
    colours' visibility pass); ``on_sample`` is called before each view's samples (may raise to stop).
    """
    face_uv, side, charts = layout(vertices, faces, params)
    (rows, cols), face, barycentric = rasterise(face_uv, side)
    corners = faces[face]  # (T, 3) vertex ids of each texel's face
    points = np.einsum("tc,tck->tk", barycentric, vertices[corners])
    color_sum = np.zeros((len(face), 3))
    weight_sum = np.zeros(len(face))
    kept_views = best.kept_views
    share = np.zeros(len(vertices))
    for number, view in enumerate(kept_views):
        if on_sample is not None:
            on_sample(number, len(kept_views))
        share[:] = 0.0
        members, weight = best.normalised_weight(int(view))
        share[members] = weight
        texel_weight = np.einsum("tc,tc->t", barycentric, share[corners])
        chosen = np.flatnonzero(texel_weight > 0)
        if not len(chosen):
            continue
        samples, coverage = photo_samples(scene, int(view), points[chosen])
        blended = texel_weight[chosen] * coverage
        color_sum[chosen] += blended[:, None] * samples
        weight_sum[chosen] += blended
    fallback = np.einsum("tc,tck->tk", barycentric, vertex_colors[corners])
    colored = weight_sum > 0
    colours = np.where(colored[:, None], color_sum / np.maximum(weight_sum, 1e-12)[:, None], fallback)
    texture = np.zeros((side, side, 3))
    filled = np.zeros((side, side), dtype=bool)
    texture[rows, cols] = colours
    filled[rows, cols] = True
    if filled.any() and not filled.all():  # dilate the charts into the padding (and the rest)
        _, (near_rows, near_cols) = ndimage.distance_transform_edt(~filled, return_indices=True)
        texture = texture[near_rows, near_cols]
    image = np.round(np.clip(texture, 0.0, 1.0) * 255).astype(np.uint8)
    return Atlas(face_uv=face_uv, image=image, charts=charts, filled_fraction=float(filled.mean()))


def texel_density(atlas: Atlas, vertices: np.ndarray, faces: np.ndarray) -> float:
    """Texels per unit length of surface (in the units of ``vertices``): sqrt(texel area / surface area)."""
    side = atlas.image.shape[0]
    uv = atlas.face_uv * side
    first, second = uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0]
    uv_area = 0.5 * np.abs(first[:, 0] * second[:, 1] - first[:, 1] * second[:, 0]).sum()
    corners = vertices[faces]
    area = 0.5 * np.linalg.norm(
        np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1
    )
    return float(math.sqrt(uv_area / max(float(area.sum()), 1e-20)))
