"""Quality figures on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from gpu_container.engine.quality import QualityParams, compare, normalisation

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
