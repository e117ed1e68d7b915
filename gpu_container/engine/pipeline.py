"""All six stages in order over one local job folder (no AWS): the engine behind the `local` command.

A job folder mirrors the job's S3 prefix (engine-spec.md): ``input/<name>.zip``, ``work/<stage>/``,
``output/``. ``prepare_job_folder`` lays one out from a capture zip or folder; ``run_all`` runs the
stages and returns the export's report.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch

from gpu_container.engine import export, hull, mesh, preprocess, reconstruct, validate
from gpu_container.engine.context import StageContext, StopCheck, default_device

STAGE_RUNNERS: dict[str, Callable[[StageContext], dict]] = {
    "validate": validate.run,
    "preprocess": preprocess.run,
    "hull": hull.run,
    "reconstruct": reconstruct.run,
    "mesh": mesh.run,
    "export": export.run,
}
JOB_FOLDERS = ("input", "work", "output")

PipelineProgress = Callable[[str, float, str], None]  # (stage, fraction of that stage, message)


def prepare_job_folder(capture: Path, job_dir: Path) -> Path:
    """Lay out ``job_dir`` for a run of ``capture`` (a .zip, or a folder that is zipped as it is).

    Any ``input/``, ``work/`` and ``output/`` left in ``job_dir`` by an earlier run are removed;
    nothing else in ``job_dir`` is touched. Returns the zip's path under ``input/``.
    """
    capture = Path(capture)
    if not capture.exists():
        raise FileNotFoundError(f"capture not found: {capture}")
    for name in JOB_FOLDERS:
        if capture.resolve().is_relative_to((job_dir / name).resolve()):
            raise ValueError(
                f"the capture {capture} lies in {job_dir / name}, which a run clears: move it out"
            )
    for name in JOB_FOLDERS:
        shutil.rmtree(job_dir / name, ignore_errors=True)
    input_dir = job_dir / "input"
    input_dir.mkdir(parents=True)
    if capture.is_dir():
        target = input_dir / f"{capture.name}.zip"
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(capture.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(capture).as_posix())
        return target
    target = input_dir / capture.name
    shutil.copyfile(capture, target)
    return target


def run_all(
    job_dir: Path,
    preset: str = "standard",
    device: torch.device | None = None,
    seed: int = 0,
    on_progress: PipelineProgress = lambda stage, fraction, message: None,
    should_stop: StopCheck = lambda: False,
) -> dict:
    """Run every stage of ``STAGE_RUNNERS`` on ``job_dir`` in order; returns ``output/report.json``.

    A ``CaptureError`` or ``StageCancelled`` from a stage propagates; later stages do not run.
    """
    device = device or default_device()
    for stage, runner in STAGE_RUNNERS.items():
        ctx = StageContext(
            job_dir=job_dir,
            preset=preset,
            device=device,
            seed=seed,
            on_progress=lambda fraction, message, stage=stage: on_progress(stage, fraction, message),
            should_stop=should_stop,
        )
        on_progress(stage, 0.0, "starting")
        runner(ctx)
        on_progress(stage, 1.0, "done")
    return json.loads((job_dir / "output" / export.REPORT_FILE).read_text())
