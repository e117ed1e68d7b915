"""``python -m gpu_container``: one argparse dispatcher for the local commands and the stage runner.

Each group of commands registers its sub-parsers through a function ``(subparsers) -> None`` and
sets ``handler``, a callable ``(args) -> int`` exit code, on each parser (``COMMAND_GROUPS``).
The engine's stage modules (trimesh, embree, scikit-image) are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from gpu_container import runner
from gpu_container.engine.context import PRESETS
from jobstate.stages import stage_named

EXIT_OK = 0
EXIT_USAGE = 1  # the capture path is missing or lies in the job folder
EXIT_BAD_CAPTURE = 2  # as the stage runner: the capture was refused (the error code is printed)
EXIT_STOPPED = 3
EXIT_INTERRUPTED = 130

SAMPLE_FORMS = ("lab", "posed", "photos", "video")  # gpu_container.capture.forms.FORMS (imported lazily)
SAMPLE_OBJECT = "bowl"
SAMPLE_OBJECTS = ("bowl", "cup", "pocket_block", "sphere", "spot")
DEFAULT_SPOT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "spot"


def add_local_commands(subparsers: argparse._SubParsersAction) -> None:
    """``local CAPTURE --out DIR`` and ``sample OUT.zip``: no AWS needed."""
    local = subparsers.add_parser(
        "local",
        help="run all six stages on a capture (.zip or folder) into a local job folder, with a progress bar",
    )
    local.add_argument(
        "capture",
        type=Path,
        help="the capture: a .zip, a folder of photos or with transforms.json, or an .mp4/.mov video",
    )
    local.add_argument(
        "--out",
        type=Path,
        required=True,
        help="job folder: input/, work/<stage>/ and output/ are (re)created in it",
    )
    local.add_argument("--preset", choices=PRESETS, default="standard")
    local.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    local.add_argument("--seed", type=int, default=0)
    local.set_defaults(handler=run_local)

    sample = subparsers.add_parser(
        "sample",
        help="write a synthetic capture: the sample lab capture (a textured bowl), or a real-looking "
        "posed capture, photo set or walk-around video of an object on a table in a room",
    )
    sample.add_argument("output", type=Path, help="where to write the capture (.zip; .mp4 for --form video)")
    sample.add_argument(
        "--form",
        choices=SAMPLE_FORMS,
        default="lab",
        help="lab: poses and masks; posed: poses, no masks; photos: JPEGs only; video: an MP4 walk-around "
        "(room forms write <stem>.truth.json and <stem>.truth.ply beside the capture)",
    )
    sample.add_argument("--object", default=SAMPLE_OBJECT, choices=SAMPLE_OBJECTS, help="what is captured")
    sample.add_argument(
        "--spot-dir", type=Path, default=DEFAULT_SPOT_DIR, help="folder holding Spot's mesh and texture"
    )
    sample.add_argument("--object-size", type=float, default=0.25, help="room forms: longest side, metres")
    sample.add_argument(
        "--offset",
        type=float,
        nargs=2,
        default=(0.0, 0.0),
        metavar=("X", "Y"),
        help="from the table's centre, m",
    )
    sample.add_argument("--yaw", type=float, default=0.0, help="the object's turn on the table, degrees")
    sample.add_argument("--views", type=int, default=48, help="photos or views (not video)")
    sample.add_argument("--size", type=int, default=256, help="image width and height in pixels")
    sample.add_argument("--seconds", type=float, default=12.0, help="video length")
    sample.add_argument("--fps", type=float, default=15.0, help="video frame rate")
    sample.add_argument(
        "--empty-table",
        action="store_true",
        help="room forms: the same room and cameras, no object on the table",
    )
    sample.add_argument("--seed", type=int, default=0)
    sample.set_defaults(handler=write_sample)


COMMAND_GROUPS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    add_local_commands,
    runner.add_subcommands,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gpu_container", description="ReconFlow's reconstruction engine and stage runner."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_commands in COMMAND_GROUPS:
        add_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


# --- handlers ------------------------------------------------------------------------------------


def run_local(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console

    from gpu_container.engine import pipeline
    from gpu_container.engine.context import CaptureError, StageCancelled, default_device

    console = Console(stderr=True, soft_wrap=True)  # long paths stay on one line
    device = torch.device(args.device) if args.device else default_device()
    job_dir = args.out.resolve()
    try:
        pipeline.prepare_job_folder(args.capture, job_dir)
    except (FileNotFoundError, ValueError) as error:
        console.print(f"[red]error[/red]: {error}")
        return EXIT_USAGE
    try:
        with StageProgressBar(console) as progress:
            report = pipeline.run_all(job_dir, args.preset, device, args.seed, on_progress=progress.update)
    except CaptureError as error:
        console.print(f"[red]capture refused[/red] ({error.code}): {error.message}")
        return EXIT_BAD_CAPTURE
    except StageCancelled:
        console.print("[yellow]stopped[/yellow]")
        return EXIT_STOPPED
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]")
        return EXIT_INTERRUPTED
    print_summary(Console(soft_wrap=True), job_dir, report)
    return EXIT_OK


class StageProgressBar:
    """A rich progress bar over the whole job, naming the running stage and its latest message.

    The bar follows the service's job progress (``jobstate.stages``: each stage its band of 0-100).
    """

    def __init__(self, console) -> None:
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("[bold cyan]{task.fields[stage]:<11}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[message]}"),
            console=console,
        )
        self._task = self._progress.add_task("job", total=100.0, stage="", message="")

    def __enter__(self) -> StageProgressBar:
        self._progress.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._progress.stop()

    def update(self, stage: str, fraction: float, message: str) -> None:
        self._progress.update(
            self._task, completed=stage_named(stage).job_progress(fraction), stage=stage, message=message
        )


def print_summary(console, job_dir: Path, report: dict) -> None:
    """Seconds per stage, the held-out figures and where the outputs are."""
    from rich.table import Table

    table = Table(title=f"{report['preset']} on {report['device']}", show_header=True)
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    for stage, seconds in report["seconds"].items():
        table.add_row(stage, "-" if seconds is None else f"{seconds:.1f}")
    console.print(table)
    holdout = report["holdout"]
    if holdout["views"]:
        console.print(
            f"held-out views: {holdout['views']}, "
            f"mask IoU {holdout['mask_iou']:.3f}, PSNR {holdout['psnr']:.1f} dB"
        )
    console.print(
        f"{report['faces']['final']} faces; outputs in {job_dir / 'output'}: {', '.join(report['outputs'])}"
    )


def write_sample(args: argparse.Namespace) -> int:
    from gpu_container.capture import forms, objects, room, synthetic

    if args.form == "lab" and args.empty_table:
        print("a lab capture is the object alone: --empty-table needs a room form", file=sys.stderr)
        return EXIT_USAGE
    if args.form == "lab" and args.object == SAMPLE_OBJECT:  # the project's sample, as it always was
        capture = synthetic.write_sample_capture(
            args.output, views=args.views, size=args.size, seed=args.seed
        )
    else:
        mesh = objects.load_spot(args.spot_dir) if args.object == "spot" else objects.make_object(args.object)
        capture = forms.write_form(
            args.form,
            mesh,
            args.output,
            placement=room.Placement(size=args.object_size, offset=tuple(args.offset), yaw_deg=args.yaw),
            rig=room.PersonRig(views=args.views, width=args.size, height=args.size),
            seed=args.seed,
            walk=room.WalkSettings(seconds=args.seconds, fps=args.fps),
            with_object=not args.empty_table,
        )
    height, width = capture.size
    kind = "frames" if args.form == "video" else "views"
    print(f"wrote {args.output} ({args.form}): {capture.num_views} {kind} of {width}x{height}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
