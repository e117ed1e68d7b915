"""Stage `export`: the final mesh in the capture's WORLD frame, a preview image and the job report.

Reads ``work/mesh/`` (box frame: ``mesh.ply`` and, with a texture preset, the atlas),
``work/preprocess/scene.npz`` and every ``work/<stage>/stage.json``; writes ``output/model.glb``,
``model.obj`` (+ ``model.mtl`` and ``model.png`` when textured), ``model.ply`` (vertex colours),
``preview.png`` and ``report.json``. The held-out figures render the textured mesh into the views
the preprocess stage kept out of every shaping stage (box, hull, fit, texture): mask IoU, and PSNR
over the union of the rendered and the captured silhouettes (both composited on black, the unlit
texture against the photograph). The report also gives the texel density (texels per world unit
of surface length), the mesh's topology and every stage's warnings.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from trimesh.exchange.obj import export_obj

from gpu_container.engine.context import STAGE_RECORD, StageContext, Stopwatch, write_stage_record
from gpu_container.engine.estimated_capture import CAMERAS_FILE
from gpu_container.engine.mesh import STAGE as MESH_STAGE
from gpu_container.engine.mesh import ColoredMesh
from gpu_container.engine.render import RayCaster, render, scene_camera, shaded_rgba
from gpu_container.engine.scene import Scene
from jobstate.stages import STAGE_NAMES

STAGE = "export"
GLB_FILE, OBJ_FILE, PLY_FILE, MTL_FILE = "model.glb", "model.obj", "model.ply", "model.mtl"
MATERIAL_NAME = "model"  # the OBJ's texture is written as <material>.png
PREVIEW_FILE = "preview.png"
REPORT_FILE = "report.json"
# Grid volumes whose resolution the report names: (stage, file, array).
GRID_FILES = (("hull", "hull.npz", "occupancy"), ("reconstruct", "field.npz", "sdf"))


@dataclass(frozen=True)
class ExportParams:
    preview_width: int  # pixels; the preview uses the first held-out camera (else view 0) at this width
    preview_ambient: float = 0.5  # share of the preview's light that does not depend on the normal
    mask_threshold: int = 128  # a captured mask pixel is object from this value up
    psnr_cap: float = 100.0  # dB reported for a pixel-perfect view (the MSE is zero)


_PRESETS = {
    "draft": ExportParams(preview_width=256),
    "standard": ExportParams(preview_width=512),
    "high": ExportParams(preview_width=1024),
}


def params_for(preset: str) -> ExportParams:
    try:
        return _PRESETS[preset]
    except KeyError:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(_PRESETS)}") from None


def psnr(rendered: np.ndarray, captured: np.ndarray, region: np.ndarray, cap: float) -> float:
    """PSNR (dB) of ``rendered`` against ``captured`` ((H, W, 3) float [0, 1]) over ``region (H, W)``."""
    if not region.any():
        return cap
    mse = float(np.mean((rendered[region] - captured[region]) ** 2))
    return cap if mse <= 10.0 ** (-cap / 10.0) else float(-10.0 * np.log10(mse))


def holdout_figures(mesh: ColoredMesh, scene: Scene, params: ExportParams) -> dict:
    """Mask IoU and PSNR of the box-frame ``mesh`` rendered into each held-out view, and their means."""
    caster = RayCaster(mesh.vertices, mesh.faces)
    colors = mesh.surface_colors()
    per_view = []
    for view in scene.holdout:
        rendered = render(caster, colors, scene_camera(scene, int(view)))
        captured_mask = scene.masks[view] >= params.mask_threshold
        union = rendered.mask | captured_mask
        intersection = rendered.mask & captured_mask
        captured = scene.images[view].astype(np.float64) / 255.0 * captured_mask[..., None]
        per_view.append(
            {
                "view": scene.names[view],
                "mask_iou": float(intersection.sum() / union.sum()) if union.any() else 1.0,
                "psnr": psnr(rendered.color, captured, union, params.psnr_cap),
            }
        )
    return {
        "views": len(per_view),
        "mask_iou": float(np.mean([v["mask_iou"] for v in per_view])) if per_view else None,
        "psnr": float(np.mean([v["psnr"] for v in per_view])) if per_view else None,
        "psnr_region": "union of rendered and captured silhouettes, on black",
        "per_view": per_view,
    }


def preview(mesh: ColoredMesh, scene: Scene, params: ExportParams) -> np.ndarray:
    """(H, W, 4) uint8 shaded, coloured render of the box-frame ``mesh`` from a capture camera."""
    view = int(scene.holdout[0]) if len(scene.holdout) else 0
    camera = scene_camera(scene, view).resized(params.preview_width)
    rendered = render(RayCaster(mesh.vertices, mesh.faces), mesh.surface_colors(), camera)
    return shaded_rgba(rendered, params.preview_ambient)


def world_bounds(mesh: ColoredMesh, box_to_world: np.ndarray) -> list[list[float]]:
    """[[min x, y, z], [max x, y, z]] of the mesh in the world frame."""
    world = mesh.vertices @ box_to_world[:3, :3].T + box_to_world[:3, 3]
    return [world.min(axis=0).tolist(), world.max(axis=0).tolist()]


def stage_records(work_dir: Path) -> dict[str, dict]:
    """Every earlier ``work/<stage>/stage.json``, in pipeline order (file times change in a copy)."""
    records = {}
    for stage in STAGE_NAMES:
        path = work_dir / stage / STAGE_RECORD
        if stage != STAGE and path.exists():
            records[stage] = json.loads(path.read_text())
    return records


def grid_sizes(work_dir: Path) -> dict[str, int]:
    sizes = {}
    for stage, name, array in GRID_FILES:
        path = work_dir / stage / name
        if path.exists():
            with np.load(path) as volume:
                sizes[stage] = int(volume["resolution"]) if "resolution" in volume else volume[array].shape[0]
    return sizes


def write_models(mesh: ColoredMesh, box_to_world: np.ndarray, output_dir: Path) -> list[str]:
    """The models in the world frame; returns the names written.

    ``model.ply`` always carries vertex colours. With a texture atlas, ``model.glb`` embeds it and
    ``model.obj`` references ``model.mtl`` and ``model.png``; without, both carry vertex colours.
    """
    for stale in (GLB_FILE, OBJ_FILE, PLY_FILE, MTL_FILE, f"{MATERIAL_NAME}.png"):  # an earlier run's
        (output_dir / stale).unlink(missing_ok=True)
    colored = mesh.to_trimesh().apply_transform(box_to_world)
    colored.export(output_dir / PLY_FILE)
    if mesh.atlas is None:
        colored.export(output_dir / GLB_FILE)
        colored.export(output_dir / OBJ_FILE)
        return [GLB_FILE, OBJ_FILE, PLY_FILE]
    textured = mesh.to_textured_trimesh().apply_transform(box_to_world)
    textured.visual.material.name = MATERIAL_NAME
    textured.export(output_dir / GLB_FILE)
    text, companions = export_obj(textured, return_texture=True, mtl_name=MTL_FILE, include_normals=True)
    (output_dir / OBJ_FILE).write_text(text)
    for name, data in companions.items():
        (output_dir / name).write_bytes(data)
    return [GLB_FILE, OBJ_FILE, *sorted(companions), PLY_FILE]


def run(ctx: StageContext) -> dict:
    clock = Stopwatch()
    params = params_for(ctx.preset)
    work_dir = ctx.job_dir / "work"
    box_mesh = ColoredMesh.load(work_dir / MESH_STAGE)
    scene = Scene.load(work_dir / "preprocess")
    output_dir = ctx.output_dir

    ctx.on_progress(0.0, "writing models")
    outputs = write_models(box_mesh, scene.box_to_world, output_dir)
    ctx.check_stop()
    ctx.on_progress(0.3, "rendering preview")
    Image.fromarray(preview(box_mesh, scene, params)).save(output_dir / PREVIEW_FILE)
    outputs.append(PREVIEW_FILE)
    cameras = work_dir / "preprocess" / CAMERAS_FILE  # the cameras used, each view's status (preprocess)
    if cameras.is_file():
        shutil.copyfile(cameras, output_dir / CAMERAS_FILE)
        outputs.append(CAMERAS_FILE)
    ctx.check_stop()
    ctx.on_progress(0.6, "scoring held-out views")
    holdout = holdout_figures(box_mesh, scene, params)

    records = stage_records(work_dir)
    seconds = {stage: record.get("seconds") for stage, record in records.items()}
    seconds[STAGE] = round(clock.seconds, 3)
    seconds["total"] = round(sum(value for value in seconds.values() if value is not None), 3)
    mesh_record = records.get(MESH_STAGE, {})
    texels_per_box_unit = mesh_record.get("texels_per_box_unit")
    report = {
        "preset": ctx.preset,
        "device": str(ctx.device),
        "seed": ctx.seed,
        "seconds": seconds,
        "grid": grid_sizes(work_dir),
        "faces": {
            **{key: value for key, value in mesh_record.items() if key.startswith("faces_")},
            "final": len(box_mesh.faces),
        },
        "vertices": len(box_mesh.vertices),
        "texture": None if box_mesh.atlas is None else list(box_mesh.atlas.image.shape[:2]),
        # texels per unit of length on the surface, in the capture's world units
        "texel_density": None
        if texels_per_box_unit is None
        else texels_per_box_unit / float(np.cbrt(np.linalg.det(scene.box_to_world[:3, :3]))),
        "topology": {key: mesh_record.get(key) for key in ("watertight", "manifold", "pieces")},
        "warnings": [warning for record in records.values() for warning in record.get("warnings", [])],
        "views": {
            "total": scene.num_views,
            "training": len(scene.training_views),
            "held_out": len(scene.holdout),
        },
        "image_size": list(scene.image_size),
        "holdout": holdout,
        "bounds_world": world_bounds(box_mesh, scene.box_to_world),
        "outputs": [*outputs, REPORT_FILE],
        "stages": records,
    }
    (output_dir / REPORT_FILE).write_text(json.dumps(report, indent=2))
    figures = {
        "stage": STAGE,
        "seconds": seconds[STAGE],
        "device": str(ctx.device),
        "mask_iou": holdout["mask_iou"],
        "psnr": holdout["psnr"],
        "outputs": report["outputs"],
        "params": asdict(params),
    }
    write_stage_record(ctx.work_dir(STAGE), figures)
    ctx.on_progress(1.0, "done")
    return figures
