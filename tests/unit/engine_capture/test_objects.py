"""The benchmark's solid (CSG) objects: closed, one piece, the features they are named for."""

from __future__ import annotations

import numpy as np
import pytest

from gpu_container.capture import objects
from gpu_container.engine.quality import integrity


@pytest.mark.parametrize("name", objects.SOLID_OBJECTS)
def test_solid_objects_are_one_closed_coloured_piece(name):
    mesh = objects.make_object(name)

    assert integrity(mesh).clean
    assert mesh.volume > 0  # outward normals
    edges = np.linalg.norm(
        mesh.vertices[mesh.edges_unique[:, 0]] - mesh.vertices[mesh.edges_unique[:, 1]], axis=1
    )
    assert (
        np.percentile(edges, 99) <= objects.SOLID_EDGE * 2
    )  # refined: vertex colours vary across flat faces
    assert len(np.unique(mesh.visual.vertex_colors[:, :3], axis=0)) > 50


def test_the_wand_is_elongated_with_its_bulk_off_centre():
    mesh = objects.make_object("wand")
    extent = mesh.extents
    assert extent.max() / extent.min() >= 4
    centre = mesh.bounds.mean(axis=0)
    assert np.linalg.norm(mesh.center_mass - centre) > 0.2 * extent.max()


def test_mechanical_parts_have_bores_through_them():
    # genus = through holes: the bracket has three bores, the plate a hole and a window.
    assert objects.make_object("bracket").euler_number == 2 - 2 * 3
    assert objects.make_object("thin_plate").euler_number == 2 - 2 * 2
    assert objects.make_object("channel_block").euler_number == 2 - 2 * 1
