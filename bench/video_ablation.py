"""Where a walk-around video loses F@1 % against a posed capture: its viewpoints, its compression,
or the cameras and frames the engine estimates.

Per object, four runs, the real-capture bench's rig, walk and seed (no masks in any of them):

- ``posed rig``: the posed room capture (two rings of photos at a person's heights, close-ups);
- ``walk, raw, true cams``: the video's own frames, the ones the engine kept from the MP4, rendered
  again without compression and given with their true cameras as a posed capture;
- ``walk, H.264, true cams``: the same frames decoded from the MP4, true cameras;
- ``video``: the MP4 itself, as a user uploads it (frames picked and cameras estimated by the engine).

``posed rig`` against ``walk, raw`` is what the walk's viewpoints cost, ``raw`` against ``H.264``
what the compression costs, ``H.264`` against ``video`` what the estimated cameras cost (the
frames are the same ones).

    .venv/bin/python bench/video_ablation.py --objects spot --presets draft

Prints the table and writes it to ``bench/video_ablation.txt`` (``--out``).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

# isort: off
import gpu_container  # noqa: F401  (first: it sets OMP_WAIT_POLICY before torch loads OpenMP)

# isort: on
import av
import numpy as np
import torch
import trimesh
from real_captures import SIZE, VIEWS, WALK, room_bench_parser, run_case, write_capture
from reconstruction import load_object
from report import RunRecord, work_folder

from gpu_container.capture import room, synthetic, video
from gpu_container.engine import pipeline
from gpu_container.engine.quality import QualityParams, compare

DEFAULT_OUT = Path(__file__).resolve().parent / "video_ablation.txt"
MODES = ("posed rig", "walk, raw, true cams", "walk, H.264, true cams", "video")


@dataclass
class Row:
    object: str
    preset: str
    mode: str
    views: int
    f1: float
    precision: float
    recall: float


def kept_frames(job: Path) -> list[int]:
    """Indices (in the walk's frame order) of the frames a finished video job used: its
    ``cameras.json`` names each by time (``...#t=<seconds>``)."""
    cameras = json.loads((job / "output" / "cameras.json").read_text())
    times = [
        float(entry["file_path"].rsplit("#t=", 1)[1])
        for entry in cameras["frames"]
        if entry["status"] != "dropped"
    ]
    return [round(time_s * WALK.fps) for time_s in times]


def decoded_frames(path: Path) -> np.ndarray:
    """(F, H, W, 3) uint8: every frame of the MP4 at ``path``, as PyAV decodes it."""
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def scored(row_of: tuple[str, str, str], job: Path, truth: trimesh.Trimesh, views: int, samples: int) -> Row:
    result = trimesh.load(job / "output" / "model.ply", process=False, force="mesh")
    figures = compare(result, truth, QualityParams(samples=samples))
    return Row(*row_of, views, figures.fscore[0.01], figures.precision[0.01], figures.recall[0.01])


def walk_rows(name: str, preset: str, frames: list[int], work: Path, spot: Path, samples: int) -> list[Row]:
    """The walk's ``frames`` as posed captures with their true cameras: rendered, and decoded from
    the H.264 MP4 the video form encodes."""
    rig = room.PersonRig(views=VIEWS, width=SIZE, height=SIZE)
    capture = video.render_walkaround(load_object(name, spot), None, rig, WALK, seed=0)
    encoded = video.encode_mp4(capture.rgba[..., :3], work / f"{name}-walk.mp4", WALK.fps)
    rows = []
    for mode, rgb in (
        ("walk, raw, true cams", capture.rgba[..., :3]),
        ("walk, H.264, true cams", decoded_frames(encoded)),
    ):
        rgba = capture.rgba.copy()
        rgba[..., :3] = rgb
        posed = replace(capture, rgba=rgba[frames], cam_to_world=capture.cam_to_world[frames])
        slug = "raw" if "raw" in mode else "h264"
        zip_path = synthetic.write_zip(
            synthetic.capture_files(posed, synthetic.POSED_LAYOUT), work / f"{name}-walk-{slug}.zip"
        )
        job = work / f"{name}-walk-{slug}-{preset}"
        pipeline.prepare_job_folder(zip_path, job)
        pipeline.run_all(job, preset=preset, device=torch.device("cpu"), seed=0)
        rows.append(scored((name, preset, mode), job, capture.mesh_world, len(frames), samples))
    return rows


def object_rows(name: str, preset: str, work: Path, spot: Path, samples: int) -> list[Row]:
    rows = []
    for form, mode in (("posed", "posed rig"), ("video", "video")):
        case = run_case(name, form, preset, write_capture(name, form, spot, work), work, samples)
        rows.append(Row(name, preset, mode, case.registered, case.f1, float("nan"), float("nan")))
    frames = kept_frames(work / f"{name}-video-{preset}")
    return [rows[0], *walk_rows(name, preset, frames, work, spot, samples), rows[1]]


def format_table(rows: list[Row]) -> list[str]:
    header = f"{'object':<14}{'preset':<9}{'capture':<24}{'views':>6}{'F@1%':>8}{'P@1%':>8}{'R@1%':>8}"
    lines = [header, "-" * len(header)]
    for row in rows:
        cells = "".join(
            f"{value:>8.3f}" if value == value else f"{'':>8}"
            for value in (row.f1, row.precision, row.recall)
        )
        lines.append(f"{row.object:<14}{row.preset:<9}{row.mode:<24}{row.views:>6}{cells}")
    return lines


def summary_lines(rows: list[Row]) -> list[str]:
    """Per object and preset: what the viewpoints, the compression and the estimation cost."""
    f1 = {(row.object, row.preset, row.mode): row.f1 for row in rows}
    lines = []
    for name, preset in dict.fromkeys((row.object, row.preset) for row in rows):
        posed, raw, h264, estimated = (f1.get((name, preset, mode)) for mode in MODES)
        if None in (posed, raw, h264, estimated):
            continue
        lines.append(
            f"{name}, {preset}: F@1 % {posed:.3f} posed rig; the walk's viewpoints cost {raw - posed:+.3f}, "
            f"H.264 {h264 - raw:+.3f}, the estimated cameras and frames {estimated - h264:+.3f} "
            f"(video: {estimated:.3f})"
        )
    return lines or ["(no object ran in all four ways)"]


def main(argv: list[str] | None = None) -> int:
    args = room_bench_parser(__doc__.split("\n\n")[0], DEFAULT_OUT, ["spot"], ["draft"]).parse_args(argv)
    record = RunRecord("video_ablation.py", argv)
    rows: list[Row] = []
    with work_folder(args.work, "video-ablation-") as work:
        for name in args.objects:
            for preset in args.presets:
                print(f"{name} {preset} ...", file=sys.stderr, flush=True)
                rows.extend(object_rows(name, preset, work, args.spot, args.samples))
                print("\n".join(format_table(rows)[2:]), file=sys.stderr, flush=True)
    notes = [
        f"captures: bench/real_captures.py's rig ({VIEWS} views of {SIZE}²), walk ({WALK.seconds:.0f} s at "
        f"{WALK.fps:.0f} fps) and seed, the object on a table in a room, no masks; the walk rows use the "
        "frames the video job kept, with their true cameras (views = frames used)",
        f"quality: {args.samples} area samples per mesh, GT normalised (bbox centred, longest side 1); "
        "the video's result mapped by the Umeyama similarity of the camera centres (P/R not split there)",
    ]
    record.write(
        args.out, "Video ablation", torch.device("cpu"), notes, format_table(rows), summary_lines(rows)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
