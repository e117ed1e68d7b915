"""The export stage: models in the world frame, preview, and the report with held-out figures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh
from PIL import Image

from gpu_container.engine import export as export_stage
from gpu_container.engine import mesh as mesh_stage
from gpu_container.engine.context import StageContext

from .analytic_scenes import color_grid, orbit_eyes, position_colors, render_scene, sphere_sdf

RESOLUTION = 40
WORLD_CENTRE = [10.0, -4.0, 1.5]
MODELS = {  # preset -> files written besides preview.png and report.json
    "draft": ["model.glb", "model.mtl", "model.obj", "model.png", "model.ply"],  # every preset: an atlas
    "standard": ["model.glb", "model.mtl", "model.obj", "model.png", "model.ply"],
}


def similarity(scale: float, angle_degrees: float, translation) -> np.ndarray:
    transform = trimesh.transformations.rotation_matrix(np.radians(angle_degrees), [0, 0, 1])
    transform[:3, :3] *= scale
    transform[:3, 3] = translation
    return transform


def texture_image(model: trimesh.Trimesh) -> Image.Image:
    """The texture of a reloaded model (OBJ: a simple material; glTF: a PBR base colour)."""
    material = model.visual.material
    return material.image if hasattr(material, "image") else material.baseColorTexture


@pytest.fixture(scope="module", params=sorted(MODELS))
def exported_job(request, tmp_path_factory, sphere_mesh):
    """A job folder after the mesh and export stages of a preset: a sphere scene placed in a world frame."""
    preset = request.param
    job_dir = tmp_path_factory.mktemp(f"job-{preset}")
    box_to_world = similarity(2.5, 30.0, WORLD_CENTRE)
    scene = render_scene(
        sphere_mesh,
        position_colors(sphere_mesh.vertices),
        orbit_eyes(12),
        holdout=(3, 8),
        box_to_world=box_to_world,
    )
    for stage in ("reconstruct", "preprocess", "hull"):
        (job_dir / "work" / stage).mkdir(parents=True)
    scene.save(job_dir / "work" / "preprocess")
    np.savez_compressed(
        job_dir / "work" / "hull" / "hull.npz", occupancy=np.zeros((24,) * 3, np.float32), resolution=24
    )
    np.savez_compressed(
        job_dir / "work" / "reconstruct" / "field.npz",
        sdf=sphere_sdf(RESOLUTION),
        color=color_grid(RESOLUTION).astype(np.float32),
        resolution=RESOLUTION,
    )
    for stage, seconds in (("hull", 1.5), ("reconstruct", 2.5)):
        (job_dir / "work" / stage / "stage.json").write_text(json.dumps({"stage": stage, "seconds": seconds}))
    ctx = StageContext(job_dir, preset=preset)
    mesh_stage.run(ctx)
    figures = export_stage.run(ctx)
    return preset, job_dir, box_to_world, figures


def test_export_writes_every_output(exported_job):
    preset, job_dir, _, figures = exported_job

    written = sorted(path.name for path in (job_dir / "output").iterdir())

    assert written == sorted([*MODELS[preset], "preview.png", "report.json"])
    assert sorted(figures["outputs"]) == written
    assert json.loads((job_dir / "work" / "export" / "stage.json").read_text())["stage"] == "export"


@pytest.mark.parametrize("name", ["model.glb", "model.ply", "model.obj"])
def test_models_reload_in_world_coordinates(exported_job, name):
    _, job_dir, box_to_world, _ = exported_job
    box_mesh = trimesh.load(job_dir / "work" / "mesh" / "mesh.ply", process=False)

    model = trimesh.load(job_dir / "output" / name, force="mesh", process=False)

    expected = trimesh.transform_points(box_mesh.vertices, box_to_world)
    np.testing.assert_allclose(model.bounds, [expected.min(axis=0), expected.max(axis=0)], atol=1e-4)
    np.testing.assert_allclose(model.bounds.mean(axis=0), WORLD_CENTRE, atol=0.05)
    assert len(model.faces) == len(box_mesh.faces)
    assert model.area == pytest.approx(box_mesh.area * 2.5**2, rel=1e-4)
    outward = model.triangles_center - WORLD_CENTRE
    assert np.mean(np.sum(model.face_normals * outward, axis=1) > 0) > 0.99  # still wound outward
    if name == "model.glb":  # carries smooth normals, turned with the mesh
        agreement = np.sum(model.vertex_normals[model.faces] * model.face_normals[:, None, :], axis=2)
        assert np.mean(agreement > 0.5) > 0.99


def test_models_keep_their_colors(exported_job):
    _, job_dir, _, _ = exported_job
    box_mesh = trimesh.load(job_dir / "work" / "mesh" / "mesh.ply", process=False)

    for name in ("model.glb", "model.obj"):  # every preset is textured
        model = trimesh.load(job_dir / "output" / name, force="mesh", process=False)
        assert model.visual.kind == "texture"
        assert texture_image(model).size[0] > 0
        assert model.visual.uv.shape == (len(model.vertices), 2)
        assert len(model.vertices) < 1.3 * len(box_mesh.vertices)  # split only along the charts' seams
    ply = trimesh.load(job_dir / "output" / "model.ply", process=False)
    np.testing.assert_array_equal(ply.visual.vertex_colors, box_mesh.visual.vertex_colors)


def test_textured_model_shows_the_photographed_colors(exported_job):
    _, job_dir, box_to_world, _ = exported_job
    model = trimesh.load(job_dir / "output" / "model.glb", force="mesh", process=False)
    texture = np.asarray(texture_image(model).convert("RGB"), dtype=np.float64) / 255.0
    height, width = texture.shape[:2]

    centres_uv = model.visual.uv[model.faces].mean(axis=1)  # (F, 2), inside each face's triangle
    columns = np.clip((centres_uv[:, 0] * width).astype(int), 0, width - 1)
    rows = np.clip(((1.0 - centres_uv[:, 1]) * height).astype(int), 0, height - 1)
    box_centres = trimesh.transform_points(model.triangles_center, np.linalg.inv(box_to_world))

    error = np.abs(texture[rows, columns] - position_colors(box_centres))
    assert np.median(error) < 0.02


def test_preview_shows_the_object(exported_job):
    preset, job_dir, _, _ = exported_job

    preview = np.asarray(Image.open(job_dir / "output" / "preview.png"))

    width = export_stage.params_for(preset).preview_width
    assert preview.shape == (width, width, 4)
    covered = preview[..., 3] == 255
    assert 0.1 < covered.mean() < 0.6
    assert preview[covered][:, :3].std(axis=0).min() > 5  # coloured and shaded, not flat


def test_report_holds_timings_grids_and_held_out_figures(exported_job):
    preset, job_dir, _, _ = exported_job

    report = json.loads((job_dir / "output" / "report.json").read_text())

    assert report["preset"] == preset
    assert report["device"] == "cpu"
    assert list(report["seconds"])[:2] == ["hull", "reconstruct"]
    assert report["seconds"]["mesh"] > 0
    assert report["seconds"]["export"] > 0
    assert report["seconds"]["total"] == pytest.approx(
        sum(v for k, v in report["seconds"].items() if k != "total"), abs=0.01
    )
    assert report["grid"] == {"hull": 24, "reconstruct": RESOLUTION}
    assert report["faces"]["final"] <= report["faces"]["faces_marching_cubes"]
    assert report["views"] == {"total": 12, "training": 10, "held_out": 2}
    side = report["texture"][0]
    assert report["texture"] == [side, side]
    assert side <= mesh_stage.params_for(preset).texture_max_side
    world_scale = 2.5  # the fixture's box_to_world
    assert report["texel_density"] == pytest.approx(
        report["stages"]["mesh"]["texels_per_box_unit"] / world_scale
    )
    assert report["topology"] == {"watertight": True, "manifold": True, "pieces": 1}
    assert report["warnings"] == []
    holdout = report["holdout"]
    assert holdout["views"] == 2
    assert [v["view"] for v in holdout["per_view"]] == ["view_003.png", "view_008.png"]
    assert holdout["mask_iou"] > 0.95
    assert holdout["psnr"] > 25.0
    assert sorted(report["outputs"]) == sorted([*MODELS[preset], "preview.png", "report.json"])


def test_psnr_of_a_known_error():
    rendered = np.full((4, 4, 3), 0.5)
    captured = np.full((4, 4, 3), 0.6)
    region = np.ones((4, 4), dtype=bool)

    assert export_stage.psnr(rendered, captured, region, cap=100.0) == pytest.approx(20.0)
    assert export_stage.psnr(captured, captured, region, cap=100.0) == 100.0
