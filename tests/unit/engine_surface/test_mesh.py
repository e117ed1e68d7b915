"""The mesh stage: marching cubes orientation, cleaning, visibility, decimation and view colours."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import trimesh

from gpu_container.engine import mesh as mesh_stage
from gpu_container.engine.context import StageCancelled, StageContext
from gpu_container.engine.quality import integrity
from gpu_container.engine.render import face_normals

from .analytic_scenes import box_sdf, color_grid, render_scene, sphere_sdf


def test_surface_normals_point_outward():
    vertices, faces = mesh_stage.extract_surface(sphere_sdf(40, radius=0.5, center=(0.1, -0.2, 0.0)))

    surface = trimesh.Trimesh(vertices, faces, process=False)
    outward = vertices[faces].mean(axis=1) - np.array([0.1, -0.2, 0.0])
    assert surface.volume > 0
    assert np.all(np.sum(face_normals(vertices, faces) * outward, axis=1) > 0)


def test_surface_lands_in_box_coordinates():
    vertices, _ = mesh_stage.extract_surface(box_sdf(33, half_extent=(0.5, 0.25, 0.75)))

    np.testing.assert_allclose(vertices.min(axis=0), [-0.5, -0.25, -0.75], atol=0.02)
    np.testing.assert_allclose(vertices.max(axis=0), [0.5, 0.25, 0.75], atol=0.02)


def test_field_without_surface_is_refused():
    with pytest.raises(mesh_stage.CaptureError) as error:
        mesh_stage.extract_surface(np.ones((8, 8, 8), dtype=np.float32))
    assert error.value.code == "empty_surface"


def test_largest_component_is_kept():
    big = sphere_sdf(40, radius=0.5, center=(-0.3, 0.0, 0.0))
    small = sphere_sdf(40, radius=0.15, center=(0.7, 0.0, 0.0))
    vertices, faces = mesh_stage.extract_surface(np.minimum(big, small))

    kept_vertices, kept_faces = mesh_stage.largest_component(vertices, faces)

    assert len(kept_faces) < len(faces)
    assert kept_vertices[:, 0].max() < 0.25  # nothing of the small sphere at x = 0.7
    assert trimesh.Trimesh(kept_vertices, kept_faces).is_watertight


def test_the_mesh_is_one_watertight_manifold_piece_after_decimation(sphere_scene):
    # A field with a floater, a surface that runs off the grid's edge and voxel noise: the stage's
    # mesh is still one closed 2-manifold, with normals at least as consistent as the raw surface's.
    rng = np.random.default_rng(0)
    body = sphere_sdf(48, radius=0.6) + rng.normal(0.0, 0.01, (48, 48, 48)).astype(np.float32)
    floater = sphere_sdf(48, radius=0.12, center=(0.85, 0.85, 0.0))
    cut = np.minimum(body, floater)
    cut[:, :, :2] = -0.1  # the object reaches the grid's edge
    built, counts = mesh_stage.build_mesh(
        cut, color_grid(48), sphere_scene, replace(mesh_stage.params_for("draft"), target_faces=3_000)
    )
    topology = integrity(trimesh.Trimesh(built.vertices, built.faces, process=False))
    assert topology.clean
    assert (counts["watertight"], counts["manifold"], counts["pieces"]) == (True, True, 1)
    assert abs(counts["faces_final"] - 3_000) <= 300
    assert built.atlas is not None  # the draft is textured too


def test_decimation_hits_the_target():
    vertices, faces = mesh_stage.extract_surface(sphere_sdf(64))

    decimated_vertices, decimated_faces = mesh_stage.decimate(vertices, faces, 2_000, aggression=7.0)

    assert len(faces) > 10_000
    assert abs(len(decimated_faces) - 2_000) <= 20
    radii = np.linalg.norm(decimated_vertices, axis=1)
    np.testing.assert_allclose(radii, 0.6, atol=0.02)


def test_vertex_colors_come_from_the_view_facing_them():
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.6)
    axes = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=float)
    view_colors = np.array(
        [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255], [255, 0, 255]]
    )
    scene = render_scene(sphere, np.full((len(sphere.vertices), 3), 0.5), 3.0 * axes)
    scene.images[:] = view_colors[:, None, None, :].astype(np.uint8)  # every photo one flat colour
    params = mesh_stage.MeshParams(target_faces=10_000, texture_max_side=0, color_views=1)

    colors, seen, _ = mesh_stage.view_colors(sphere.vertices, sphere.faces, scene, params, tolerance=0.02)

    normals = sphere.vertices / np.linalg.norm(sphere.vertices, axis=1, keepdims=True)
    for axis, expected in zip(axes, view_colors, strict=True):
        facing = normals @ axis > 0.9
        assert facing.sum() > 10
        assert seen[facing].all()
        np.testing.assert_allclose(
            colors[facing], np.broadcast_to(expected / 255.0, colors[facing].shape), atol=1e-6
        )


def test_blended_colors_match_the_photographs(sphere_scene):
    cleaned, counts = mesh_stage.build_mesh(
        sphere_sdf(48),
        color_grid(48),
        sphere_scene,
        mesh_stage.MeshParams(target_faces=3_000, texture_max_side=0),
    )

    expected = np.clip(0.5 + 0.4 * cleaned.vertices, 0.0, 1.0)  # the scene's position colours
    assert counts["faces_final"] == len(cleaned.faces) <= 3_000
    assert np.abs(cleaned.colors - expected).mean() < 0.01


def write_field_and_scene(job_dir, scene, resolution=40):
    (job_dir / "work" / "reconstruct").mkdir(parents=True)
    (job_dir / "work" / "preprocess").mkdir(parents=True)
    np.savez_compressed(
        job_dir / "work" / "reconstruct" / "field.npz",
        sdf=sphere_sdf(resolution),
        color=color_grid(resolution).astype(np.float32),
        resolution=resolution,
    )
    scene.save(job_dir / "work" / "preprocess")


def test_mesh_stage_writes_a_colored_ply_and_its_figures(tmp_path, sphere_scene):
    write_field_and_scene(tmp_path, sphere_scene)
    progress = []

    figures = mesh_stage.run(
        StageContext(tmp_path, preset="draft", on_progress=lambda f, m: progress.append(f))
    )

    written = trimesh.load(tmp_path / "work" / "mesh" / "mesh.ply", process=False)
    record = json.loads((tmp_path / "work" / "mesh" / "stage.json").read_text())
    assert record == json.loads(json.dumps(figures))
    assert record["stage"] == "mesh"
    assert record["seconds"] > 0
    assert record["resolution"] == 40
    assert len(written.faces) == record["faces_final"] <= record["faces_marching_cubes"]
    assert written.visual.kind == "vertex"
    assert record["watertight"]
    assert record["manifold"]
    assert record["pieces"] == 1
    assert record["texture_side"] <= mesh_stage.params_for("draft").texture_max_side
    assert record["texels_per_box_unit"] > 0
    assert progress[-1] == 1.0
    assert progress == sorted(progress)


def test_cancelled_mesh_stage_writes_nothing(tmp_path, sphere_scene):
    write_field_and_scene(tmp_path, sphere_scene)

    with pytest.raises(StageCancelled):
        mesh_stage.run(StageContext(tmp_path, preset="draft", should_stop=lambda: True))

    assert not (tmp_path / "work" / "mesh" / "mesh.ply").exists()


def test_cancel_while_baking_the_texture_writes_nothing(tmp_path, sphere_scene):
    write_field_and_scene(tmp_path, sphere_scene)
    messages = []

    def stop_once_texturing() -> bool:
        return any(message.startswith("texture") for message in messages)

    ctx = StageContext(
        tmp_path,
        preset="standard",
        on_progress=lambda f, m: messages.append(m),
        should_stop=stop_once_texturing,
    )
    with pytest.raises(StageCancelled):
        mesh_stage.run(ctx)

    assert messages[-1].startswith("texture")
    mesh_dir = tmp_path / "work" / "mesh"
    assert not mesh_dir.exists() or not any(mesh_dir.iterdir())


def test_a_rerun_without_texture_drops_the_old_atlas(tmp_path, sphere_scene):
    textured, _ = mesh_stage.build_mesh(
        sphere_sdf(24),
        color_grid(24),
        sphere_scene,
        mesh_stage.MeshParams(target_faces=2_000, texture_max_side=256),
    )
    textured.save(tmp_path)
    assert mesh_stage.ColoredMesh.load(tmp_path).atlas is not None

    mesh_stage.ColoredMesh(textured.vertices, textured.faces, textured.colors).save(tmp_path)

    assert mesh_stage.ColoredMesh.load(tmp_path).atlas is None
    assert sorted(path.name for path in tmp_path.iterdir()) == ["mesh.ply"]


def test_smoothing_removes_roughness_without_shrinking():
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.6)
    rng = np.random.default_rng(0)
    noisy = sphere.vertices * rng.uniform(0.98, 1.02, (len(sphere.vertices), 1))
    params = mesh_stage.MeshParams(target_faces=10_000, texture_max_side=0)

    smoothed = mesh_stage.smooth(noisy, sphere.faces, params)

    radii = np.linalg.norm(smoothed, axis=1)
    assert radii.std() < 0.5 * np.linalg.norm(noisy, axis=1).std()  # seen: 0.37
    assert abs(radii.mean() - 0.6) < 0.002  # Taubin's alternating steps keep the volume
    untouched = mesh_stage.smooth(noisy, sphere.faces, replace(params, smoothing_iterations=0))
    np.testing.assert_array_equal(untouched, noisy)
