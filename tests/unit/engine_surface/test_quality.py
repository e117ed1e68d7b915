"""Quality figures on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from gpu_container.capture import objects
from gpu_container.capture.synthetic import look_at
from gpu_container.engine.quality import QualityParams, compare, normalisation, views_seeing

PARAMS = QualityParams(samples=20_000)


@pytest.fixture(scope="module")
def unit_sphere() -> trimesh.Trimesh:
    """Diameter 1, so distances are already fractions of the longest side."""
    return trimesh.creation.icosphere(subdivisions=5, radius=0.5)


def test_identical_meshes_score_perfectly(unit_sphere):
    quality = compare(unit_sphere, unit_sphere, PARAMS)

    assert quality.chamfer_l1 == 0.0
    assert quality.fscore == {0.005: 1.0, 0.01: 1.0, 0.02: 1.0}
    assert quality.normal_consistency == pytest.approx(1.0)


def test_shifted_sphere_loses_the_expected_share(unit_sphere):
    shift = 0.04  # the surfaces are |shift * cos(theta)| apart: mean shift / 2, under 2 % on half the sphere
    shifted = unit_sphere.copy().apply_translation([shift, 0.0, 0.0])

    quality = compare(shifted, unit_sphere, PARAMS)

    assert quality.chamfer_l1 == pytest.approx(shift / 2, rel=0.1)
    assert quality.fscore[0.02] == pytest.approx(0.5, abs=0.05)
    assert quality.fscore[0.01] == pytest.approx(0.25, abs=0.08)  # sampling noise pushes the small taus down
    assert quality.fscore[0.005] < quality.fscore[0.01] < quality.fscore[0.02]
    assert 0.95 < quality.normal_consistency < 1.0


def test_figures_do_not_depend_on_the_ground_truth_scale_or_place(unit_sphere):
    shifted = unit_sphere.copy().apply_translation([0.013, 0.0, 0.0])
    move = trimesh.transformations.translation_matrix([5.0, -2.0, 7.0]) @ np.diag([40.0, 40.0, 40.0, 1.0])

    near = compare(shifted, unit_sphere, PARAMS)
    far = compare(shifted.copy().apply_transform(move), unit_sphere.copy().apply_transform(move), PARAMS)

    assert far.chamfer_l1 == pytest.approx(near.chamfer_l1, rel=1e-6)
    assert far.fscore == pytest.approx(near.fscore, abs=1e-3)


def test_normalisation_centres_the_box_with_longest_side_one():
    box = trimesh.creation.box(extents=(4.0, 2.0, 1.0)).apply_translation([3.0, 1.0, -2.0])

    normalised = box.copy().apply_transform(normalisation(box))

    np.testing.assert_allclose(normalised.bounds, [[-0.5, -0.25, -0.125], [0.5, 0.25, 0.125]], atol=1e-12)


def test_figures_are_named_for_reports(unit_sphere):
    figures = compare(unit_sphere, unit_sphere, PARAMS).as_dict()

    assert set(figures) == {"chamfer_l1", "normal_consistency", "f@0.5%", "f@1%", "f@2%"}


def test_views_seeing_counts_the_cameras_that_see_each_point() -> None:
    """A cup (axis +Z, cavity open at the top) seen from a ring of cameras at half its height: no
    camera sees the cavity's floor; one camera straight above sees it, and takes nothing away."""
    cup = objects.cup()  # radius 0.6, height 1.2, base 0.15
    target = np.array([0.0, 0.0, 0.6])
    ring = [
        look_at(target + 4.0 * np.array([np.cos(a), np.sin(a), 0.0]), target, np.array([0.0, 0.0, 1.0]))
        for a in np.linspace(0.0, 2 * np.pi, 8, endpoint=False)
    ]
    above = look_at(target + np.array([0.0, 0.0, 4.0]), target, np.array([0.0, 1.0, 0.0]))
    intrinsics = np.array([[300.0, 0.0, 128.0], [0.0, 300.0, 128.0], [0.0, 0.0, 1.0]])
    points, _ = trimesh.sample.sample_surface(cup, 5000, seed=0)
    floor = (np.abs(points[:, 2] - 0.15) < 1e-6) & (np.hypot(points[:, 0], points[:, 1]) < 0.5)
    outside_wall = np.hypot(points[:, 0], points[:, 1]) > 0.59  # 96 flat sections: r dips to 0.5998

    from_ring = views_seeing(cup, np.stack(ring), intrinsics, (256, 256), samples=5000)
    from_both = views_seeing(cup, np.stack([*ring, above]), intrinsics, (256, 256), samples=5000)

    assert floor.sum() > 100
    assert outside_wall.sum() > 1000
    assert (from_ring[floor] == 0).all()
    assert (from_both[floor] == 1).all()
    # The outer wall faces half the ring: two to four of the eight cameras see each of its points.
    assert 2 <= np.median(from_ring[outside_wall]) <= 4
    assert (from_both >= from_ring).all()
