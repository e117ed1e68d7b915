"""Shared fixtures of the surface/export tests."""

from __future__ import annotations

import pytest
import trimesh

from gpu_container.engine.scene import Scene

from .analytic_scenes import orbit_eyes, position_colors, render_scene


@pytest.fixture(scope="session")
def sphere_mesh() -> trimesh.Trimesh:
    return trimesh.creation.icosphere(subdivisions=4, radius=0.6)


@pytest.fixture(scope="session")
def sphere_scene(sphere_mesh) -> Scene:
    """12 views of a position-coloured sphere of radius 0.6, two of them held out."""
    return render_scene(sphere_mesh, position_colors(sphere_mesh.vertices), orbit_eyes(12), holdout=(3, 8))
