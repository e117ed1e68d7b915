"""Where a posed room capture loses F@1 %: the estimated masks, or what the stages do with masks
marked as estimated.

Each object's posed room capture (the real-capture bench's rig, size and seed: 48 views of 256²,
no masks) runs three ways over the same images and cameras:

- ``estimated``: as a user's capture: the masks are found (``object_masks``);
- ``true, est. path``: the same run with the masks ``object_masks.estimate_masks`` returns replaced
  by the renderer's alpha (their background confidence recomputed from them): the hull's tolerance,
  its support zone and the confidence-weighted mask term of reconstruct, fed perfect masks;
- ``true, given``: the alpha written as the capture's mask files: the strict path of a lab capture.

Each run is scored (F@1 %, precision, recall; DESIGN.md "Quality figures") after every stage that
shapes it: the hull (marching cubes of its occupancy), the field (the SDF's zero level) and the
final mesh; the estimated masks are compared with the alpha at the scene's size (IoU, precision,
recall). ``estimated`` against ``true, est. path`` is what the masks cost; ``true, est. path``
against ``true, given`` what the estimated-mask rules cost when the masks are right.

    .venv/bin/python bench/mask_ablation.py --objects spot bowl cup pocket_block --presets draft

Prints the table and writes it to ``bench/mask_ablation.txt`` (``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

# isort: off
import gpu_container  # noqa: F401  (first: it sets OMP_WAIT_POLICY before torch loads OpenMP)

# isort: on
import numpy as np
import torch
import trimesh
from real_captures import SIZE, VIEWS, room_bench_parser  # bench/ is on sys.path when run
from reconstruction import hull_mesh, load_object
from report import RunRecord, work_folder

from gpu_container.capture import room, synthetic
from gpu_container.engine import estimated_capture, mesh, object_masks, pipeline, reconstruct
from gpu_container.engine.quality import QualityParams, compare
from gpu_container.engine.scene import Scene

DEFAULT_OUT = Path(__file__).resolve().parent / "mask_ablation.txt"
MODES = ("estimated", "true, est. path", "true, given")
SHAPING = ("hull", "field", "mesh")
TRUE_MASKS_LAYOUT = replace(synthetic.POSED_LAYOUT, masks=True, separate_masks=True)


@dataclass
class Row:
    object: str
    preset: str
    mode: str
    scores: dict[str, tuple[float, float, float]]  # shaping stage -> (F@1 %, precision, recall)
    masks: tuple[float, float, float] | None  # estimated masks against the alpha: IoU, precision, recall


def resized_alpha(alpha: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, H, W) bool: the renderer's coverage ``alpha`` (N, h, w) uint8 area-resampled to ``size``
    (H, W) as the engine resamples masks, at least half covered."""
    height, width = size
    return estimated_capture.resized(alpha, width, height) > 127


@contextlib.contextmanager
def true_masks_in_estimated_path(alpha: np.ndarray) -> Iterator[None]:
    """While open, ``object_masks.estimate_masks`` runs as usual and then returns ``alpha`` (N, h, w)
    uint8 (the capture's views, in order) as its masks, with their background confidence."""
    estimate = object_masks.estimate_masks

    def with_true_masks(images, cam_to_world, intrinsics, radial, found, params, ctx, band=(0.0, 1.0)):
        _, confidence, figures = estimate(images, cam_to_world, intrinsics, radial, found, params, ctx, band)
        truth = resized_alpha(alpha, images.shape[1:3])
        if confidence is not None:
            confidence = np.stack(
                [
                    np.round(255.0 * object_masks.background_confidence(image, view, params)).astype(np.uint8)
                    for image, view in zip(images, truth, strict=True)
                ]
            )
        return truth.astype(np.uint8) * 255, confidence, figures

    object_masks.estimate_masks = with_true_masks
    try:
        yield
    finally:
        object_masks.estimate_masks = estimate


def field_mesh(job: Path, scene: Scene) -> trimesh.Trimesh:
    """The reconstruct stage's surface alone in the world frame of ``scene`` (the job's): the SDF's
    zero level."""
    field = reconstruct.load(job)
    vertices, faces = mesh.extract_surface(np.asarray(field.sdf, dtype=np.float32))
    return trimesh.Trimesh(vertices, faces, process=False).apply_transform(scene.box_to_world)


def mask_figures(scene: Scene, alpha: np.ndarray) -> tuple[float, float, float]:
    """IoU, precision and recall of the ``scene``'s (estimated) masks against ``alpha``, all views."""
    found = np.asarray(scene.masks) > 127
    truth = resized_alpha(alpha, found.shape[1:3])
    both = float((found & truth).sum())
    return both / (found | truth).sum(), both / max(found.sum(), 1), both / max(truth.sum(), 1)


def run_mode(
    mode: str, capture: synthetic.RenderedCapture, folder: Path, name: str, preset: str, samples: int
) -> Row:
    zip_path = folder / f"{name}-{'given' if mode == 'true, given' else 'posed'}.zip"
    if not zip_path.exists():
        layout = TRUE_MASKS_LAYOUT if mode == "true, given" else synthetic.POSED_LAYOUT
        synthetic.write_zip(synthetic.capture_files(capture, layout), zip_path)
    job = folder / f"{name}-{preset}-{mode.replace(', ', '-').replace('. ', '-')}"
    pipeline.prepare_job_folder(zip_path, job)
    alpha = capture.rgba[..., 3]
    patch = true_masks_in_estimated_path(alpha) if mode == "true, est. path" else contextlib.nullcontext()
    with patch:
        pipeline.run_all(job, preset=preset, device=torch.device("cpu"), seed=0)
    truth = capture.mesh_world
    quality = QualityParams(samples=samples)
    scene = Scene.load(job / "work" / "preprocess")
    scores = {}
    for stage, surface in (
        ("hull", hull_mesh(job)),
        ("field", field_mesh(job, scene)),
        ("mesh", trimesh.load(job / "output" / "model.ply", process=False, force="mesh")),
    ):
        figures = compare(surface, truth, quality)
        scores[stage] = (figures.fscore[0.01], figures.precision[0.01], figures.recall[0.01])
    masks = mask_figures(scene, alpha) if mode == "estimated" else None
    return Row(name, preset, mode, scores, masks)


def format_table(rows: list[Row]) -> list[str]:
    header = (
        f"{'object':<14}{'preset':<9}{'masks':<17}"
        + "".join(f"{f'{stage} F/P/R':>20}" for stage in SHAPING)
        + f"{'mask IoU/P/R':>20}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        cells = "".join(f"{'{:.3f}/{:.3f}/{:.3f}'.format(*row.scores[stage]):>20}" for stage in SHAPING)
        masks = "" if row.masks is None else "{:.3f}/{:.3f}/{:.3f}".format(*row.masks)
        lines.append(f"{row.object:<14}{row.preset:<9}{row.mode:<17}{cells}{masks:>20}")
    return lines


def summary_lines(rows: list[Row]) -> list[str]:
    """Per object and preset: what the masks cost and what the estimated-mask rules cost (final mesh)."""
    final = {(row.object, row.preset, row.mode): row.scores["mesh"][0] for row in rows}
    lines = []
    for name, preset in dict.fromkeys((row.object, row.preset) for row in rows):
        estimated, path, given = (final.get((name, preset, mode)) for mode in MODES)
        if None in (estimated, path, given):
            continue
        lines.append(
            f"{name}, {preset}: F@1 % {estimated:.3f} estimated; the masks cost {path - estimated:+.3f}, "
            f"the estimated-mask rules with true masks {given - path:+.3f} (given: {given:.3f})"
        )
    return lines or ["(no object ran in all three ways)"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    objects = ["spot", "bowl", "cup", "pocket_block"]
    return room_bench_parser(__doc__.split("\n\n")[0], DEFAULT_OUT, objects, ["draft"]).parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    record = RunRecord("mask_ablation.py", argv)
    rows: list[Row] = []
    with work_folder(args.work, "mask-ablation-") as work:
        rig = room.PersonRig(views=VIEWS, width=SIZE, height=SIZE)
        for name in args.objects:
            capture = room.render_room_capture(load_object(name, args.spot), None, rig, seed=0)
            for preset in args.presets:
                for mode in MODES:
                    print(f"{name} {preset} {mode} ...", file=sys.stderr, flush=True)
                    rows.append(run_mode(mode, capture, work, name, preset, args.samples))
                    print(format_table(rows[-1:])[2], file=sys.stderr, flush=True)
    notes = [
        f"captures: {VIEWS} views of {SIZE}², the object on a table in a room (bench/real_captures.py's "
        "rig and seed), posed; masks estimated, or the renderer's alpha in the estimated path, or given",
        f"quality: {args.samples} area samples per surface, GT normalised (bbox centred, longest side 1); "
        "F/P/R = F@1 %, precision, recall of the hull (marching cubes of its occupancy), the field "
        "(the SDF's zero level) and the final mesh; mask IoU/P/R: the estimated masks against the "
        "alpha at the scene's size",
    ]
    record.write(
        args.out, "Mask ablation", torch.device("cpu"), notes, format_table(rows), summary_lines(rows)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
