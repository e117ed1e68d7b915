"""The texture atlas: cell layout without bleeding, and texels that show the photographs."""

from __future__ import annotations

import numpy as np
import pytest

from gpu_container.engine import mesh as mesh_stage
from gpu_container.engine import texture
from gpu_container.engine.render import texture_lookup
from gpu_container.engine.scene import Scene
from gpu_container.engine.visibility import photo_samples

from .analytic_scenes import position_colors, sphere_sdf


def params(cell: int = 8, max_side: int = 4096) -> texture.TextureParams:
    return texture.TextureParams(
        cell=cell, max_side=max_side, views_per_face=3, cos_power=4.0, min_facing_cos=0.05, mask_threshold=128
    )


@pytest.mark.parametrize("cell", [5, 8, 12])
def test_every_texel_of_a_cell_belongs_to_exactly_one_face(cell):
    template = texture.cell_template(cell)

    owners = np.concatenate(template.texels)

    assert len(owners) == cell * cell
    assert len({tuple(texel) for texel in owners}) == cell * cell


@pytest.mark.parametrize("cell", [5, 8, 12])
def test_bilinear_lookups_inside_a_face_only_touch_its_own_texels(cell):
    template = texture.cell_template(cell)
    rng = np.random.default_rng(0)
    for half in (0, 1):
        own = {tuple(texel) for texel in template.texels[half]}
        weights = rng.dirichlet(np.ones(3), size=500)
        points = weights @ template.corners[half]  # (500, 2) texel coordinates inside the triangle
        low = np.floor(points - 0.5).astype(int)
        taps = {(x + dx, y + dy) for x, y in low for dx in (0, 1) for dy in (0, 1)}
        assert taps <= own


def test_layout_shrinks_the_cells_to_fit_the_atlas():
    cell, per_row = texture.layout(100_000, params(cell=12, max_side=2048))

    assert per_row * per_row * 2 >= 100_000
    assert cell * per_row <= 2048
    assert texture.MIN_CELL <= cell < 12
    assert texture.layout(1_000, params(cell=12, max_side=2048))[0] == 12
    with pytest.raises(ValueError, match="do not fit"):
        texture.layout(1_000_000, params(cell=12, max_side=2048))


def test_baked_atlas_shows_the_photographed_colors(sphere_scene: Scene):
    vertices, faces = mesh_stage.extract_surface(sphere_sdf(40))
    fallback = np.zeros((len(vertices), 3))

    atlas = texture.bake(vertices, faces, fallback, sphere_scene, params(), tolerance=0.03)

    rng = np.random.default_rng(1)
    face = rng.integers(0, len(faces), size=2000)
    barycentric = rng.dirichlet(np.ones(3), size=2000)
    points = np.einsum("mc,mck->mk", barycentric, vertices[faces[face]])
    colors = texture_lookup(atlas.face_uv, atlas.image)(face, barycentric)
    error = np.abs(colors - position_colors(points)).max(axis=1)
    assert np.median(error) < 0.01
    assert np.quantile(error, 0.99) < 0.06
    assert atlas.image.shape[0] == atlas.image.shape[1] <= 4096


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
