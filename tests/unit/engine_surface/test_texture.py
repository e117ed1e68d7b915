"""The texture atlas: xatlas charts, texels found on their faces, colours that show the photographs."""

from __future__ import annotations

import numpy as np
import pytest

from gpu_container.engine import mesh as mesh_stage
from gpu_container.engine import texture
from gpu_container.engine.render import texture_lookup
from gpu_container.engine.scene import Scene
from gpu_container.engine.visibility import photo_samples

from .analytic_scenes import position_colors, sphere_sdf


def params(max_side: int = 1024, texels_per_unit: float = 200.0) -> texture.TextureParams:
    return texture.TextureParams(max_side=max_side, texels_per_unit=texels_per_unit)


def _sphere_surface() -> tuple[np.ndarray, np.ndarray]:
    return mesh_stage.extract_surface(sphere_sdf(40))


def test_the_atlas_has_charts_not_a_cell_per_face():
    vertices, faces = _sphere_surface()

    face_uv, _, charts = texture.layout(vertices, faces, params())

    assert face_uv.shape == (len(faces), 3, 2)
    assert 1 <= charts <= len(faces) / 50  # whole patches share a chart
    assert face_uv.min() >= 0.0
    assert face_uv.max() <= 1.0
    # Most edges are not seams: the faces on both sides of an edge give its ends the same coordinates.
    corners = np.column_stack([faces.reshape(-1), face_uv.reshape(-1, 2)])
    split = len(np.unique(corners, axis=0)) / len(vertices)
    assert split < 1.2


def test_charts_shrink_to_fit_the_largest_atlas():
    vertices, faces = _sphere_surface()

    _, side, _ = texture.layout(vertices, faces, params(max_side=128, texels_per_unit=2000.0))

    assert side <= 128


def test_every_texel_on_a_face_is_found_once_with_its_barycentric_weights():
    face_uv = np.array([[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]])
    (rows, cols), face, weights = texture.rasterise(face_uv, 8)  # two halves of an 8 x 8 square

    assert len(rows) >= 64  # every texel centre (texels on the diagonal may belong to both)
    assert len({(r, c) for r, c in zip(rows, cols, strict=True)}) == 64
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    uv = np.einsum("tc,tck->tk", weights, face_uv[face])
    np.testing.assert_allclose(uv[:, 0] * 8, cols + 0.5, atol=1e-9)
    np.testing.assert_allclose((1.0 - uv[:, 1]) * 8, rows + 0.5, atol=1e-9)


def test_baked_atlas_shows_the_photographed_colors_without_seams(sphere_scene: Scene):
    vertices, faces = _sphere_surface()
    fallback = np.zeros((len(vertices), 3))
    tolerance = 0.03
    _, _, best = mesh_stage.view_colors(
        vertices, faces, sphere_scene, mesh_stage.params_for("standard"), tolerance
    )

    atlas = texture.bake(vertices, faces, fallback, best, sphere_scene, params())

    rng = np.random.default_rng(1)
    face = rng.integers(0, len(faces), size=4000)
    barycentric = rng.dirichlet(np.ones(3), size=4000)
    points = np.einsum("mc,mck->mk", barycentric, vertices[faces[face]])
    lookup = texture_lookup(atlas.face_uv, atlas.image)
    error = np.abs(lookup(face, barycentric) - position_colors(points)).max(axis=1)
    assert np.median(error) < 0.015
    assert np.quantile(error, 0.99) < 0.06
    # Both sides of every seam show the same colour: the corners a vertex has in different charts.
    corner_colors = lookup(np.repeat(np.arange(len(faces)), 3), np.tile(np.eye(3), (len(faces), 1)))
    per_vertex = np.zeros((len(vertices), 3))
    np.maximum.at(per_vertex, faces.reshape(-1), corner_colors)
    spread = np.abs(corner_colors - per_vertex[faces.reshape(-1)]).max(axis=1)
    assert np.quantile(spread, 0.99) < 0.05
    assert atlas.image.shape[0] == atlas.image.shape[1] <= 1024
    assert 0.3 < atlas.filled_fraction < 1.0
    density = texture.texel_density(atlas, vertices, faces)
    assert 0.5 * 200.0 < density <= 200.0 * 1.01  # the asked-for density, or less to fit


def test_photo_samples_ignore_the_background_next_to_a_silhouette(sphere_scene: Scene):
    scene = Scene(**{**sphere_scene.__dict__})
    scene.images = np.zeros_like(sphere_scene.images)
    scene.masks = np.zeros_like(sphere_scene.masks)
    scene.images[0, :, :24] = [200, 100, 50]  # object on the left half, black background on the right
    scene.masks[0, :, :24] = 255
    camera_to_box = scene.cam_to_box[0]
    # a point that projects exactly onto the boundary between columns 23 and 24, row 10
    focal, centre = scene.intrinsics[0, 0, 0], scene.intrinsics[0, 0, 2]
    x_c, y_c = (24.0 - centre) / focal, -(10.5 - centre) / focal
    point = camera_to_box[:3, :3] @ np.array([x_c, y_c, -1.0]) * 2.0 + camera_to_box[:3, 3]

    colors, coverage = photo_samples(scene, 0, point[None])

    np.testing.assert_allclose(colors[0], np.array([200, 100, 50]) / 255.0, atol=1e-6)
    assert coverage[0] == pytest.approx(0.5)
