"""``reconflow``: submit captures, follow them, cancel and download, against the API or the local stack.

    reconflow submit capture.zip --preset draft --watch
    reconflow status JOB_ID | list | cancel JOB_ID [--yes] | download JOB_ID DIR
    reconflow demo              # local stack + sample capture + watch + download, no AWS account
    reconflow local-stack       # serve the local stack until Ctrl-C

The API URL comes from ``--api-url`` or ``RECONFLOW_API_URL``; the token for the deployed API
from ``RECONFLOW_TOKEN`` (sent as a Bearer token).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from jobstate.stages import PRESETS
from reconflow.client import TERMINAL_STATUSES, ApiError, ReconFlowClient

STAGE_COUNT = 6
console = Console()
err_console = Console(stderr=True)


@dataclass(frozen=True)
class WatchSettings:
    # Seconds between two status polls while watching a job.
    poll_interval_s: float = 0.5
    # Give up watching after this long (the job itself keeps running).
    timeout_s: float = 3600.0


def _client(args: argparse.Namespace) -> ReconFlowClient:
    return ReconFlowClient.from_env(api_url=args.api_url)


def _stage_label(job: dict[str, Any]) -> str:
    stage = job.get("stage")
    if job.get("status") in TERMINAL_STATUSES or not stage:
        return str(job.get("status", "?"))
    return f"{stage} ({job.get('stage_index', '?')}/{STAGE_COUNT})"


def watch_job(
    client: ReconFlowClient,
    job_id: str,
    *,
    settings: WatchSettings | None = None,
    on_update: Callable[[dict[str, Any]], None] | None = None,
    show: bool = True,
) -> dict[str, Any]:
    """Poll the job until it is terminal, drawing a progress bar named after the stage; the final job."""
    settings = settings or WatchSettings()
    deadline = time.monotonic() + settings.timeout_s
    columns = (
        TextColumn("[bold]{task.description:<18}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[message]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, disable=not show, transient=False) as progress:
        task = progress.add_task("queued", total=100, message="")
        while True:
            job = client.get_job(job_id)
            if on_update:
                on_update(job)
            progress.update(
                task,
                completed=float(job.get("progress") or 0),
                description=_stage_label(job),
                message=str(job.get("message") or "")[:60],
            )
            if job.get("status") in TERMINAL_STATUSES:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.get('status')} after {settings.timeout_s:.0f} s")
            time.sleep(settings.poll_interval_s)


def _print_outcome(job: dict[str, Any]) -> None:
    status = job.get("status")
    if status == "SUCCEEDED":
        console.print(f"[green]job {job['job_id']} SUCCEEDED[/green]")
    elif status == "FAILED":
        error = job.get("error") or {}
        console.print(f"[red]job {job['job_id']} FAILED[/red]: {error.get('code')}: {error.get('message')}")
    else:
        console.print(f"job {job['job_id']} {status}: {job.get('message') or ''}")


# -- commands ---------------------------------------------------------------------------------


def cmd_submit(args: argparse.Namespace) -> int:
    client = _client(args)
    job_id = client.submit(Path(args.capture), preset=args.preset, name=args.name)
    console.print(f"submitted job [bold]{job_id}[/bold]")
    if not args.watch:
        return 0
    job = watch_job(client, job_id)
    _print_outcome(job)
    return 0 if job["status"] == "SUCCEEDED" else 1


def cmd_status(args: argparse.Namespace) -> int:
    job = _client(args).get_job(args.job_id)
    if args.json:
        console.print_json(json.dumps(job))
        return 0
    table = Table(show_header=False)
    for key in ("job_id", "name", "status", "stage", "progress", "message", "preset", "created_at"):
        if job.get(key) is not None:
            table.add_row(key, str(job[key]))
    if job.get("error"):
        table.add_row("error", f"{job['error'].get('code')}: {job['error'].get('message')}")
    console.print(table)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    client = _client(args)
    table = Table("job_id", "name", "status", "stage", "progress", "created_at")
    for count, job in enumerate(client.iter_jobs(), start=1):
        table.add_row(
            job.get("job_id", ""),
            str(job.get("name") or ""),
            str(job.get("status")),
            str(job.get("stage") or ""),
            f"{float(job.get('progress') or 0):.1f}",
            str(job.get("created_at") or ""),
        )
        if count >= args.limit:
            break
    console.print(table)
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    client = _client(args)
    request = client.request_cancel(args.job_id)
    if not args.yes:
        prompt = (
            f"Cancel job {args.job_id}? Its work stops and every file of it is deleted. "
            f"Confirm before {request.get('expires_at')} [y/N] "
        )
        if input(prompt).strip().lower() not in ("y", "yes"):
            console.print("not cancelled (the request expires by itself)")
            return 1
    answer = client.confirm_cancel(args.job_id, request["token"])
    console.print(f"job {args.job_id}: {answer.get('status')}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    client = _client(args)
    files = client.download(client.get_job(args.job_id), Path(args.directory))
    for path in files:
        console.print(str(path))
    return 0


def make_sample_capture(target: Path, extra_args: Sequence[str] = ()) -> Path:
    """Write the project's sample capture with the engine's own CLI (``python -m gpu_container sample``)."""
    subprocess.run([sys.executable, "-m", "gpu_container", "sample", str(target), *extra_args], check=True)
    return target


def cmd_demo(args: argparse.Namespace) -> int:
    from reconflow.local.stack import LocalStack, StackSettings

    out_dir = Path(args.out).resolve()
    with LocalStack(StackSettings.from_env()) as stack:
        console.print(f"local stack up: API {stack.api_url}")
        client = ReconFlowClient(api_url=stack.api_url)
        with tempfile.TemporaryDirectory(prefix="reconflow-demo-") as scratch:
            capture = make_sample_capture(
                Path(scratch) / "sample_capture.zip", ["--views", str(args.views), "--size", str(args.size)]
            )
            console.print(f"sample capture: {capture.stat().st_size / 1e6:.1f} MB")
            job_id = client.submit(capture, preset=args.preset, name="demo")
        console.print(f"submitted job [bold]{job_id}[/bold] (preset {args.preset})")
        job = watch_job(client, job_id)
        _print_outcome(job)
        if job["status"] != "SUCCEEDED":
            return 1
        files = client.download(job, out_dir / job_id)
    mesh = next((path for path in files if path.suffix == ".glb"), files[0])
    console.print(f"mesh written to [bold]{mesh}[/bold]")
    console.print(f"all outputs: {', '.join(path.name for path in files)} in {mesh.parent}")
    return 0


def cmd_local_stack(args: argparse.Namespace) -> int:
    from reconflow.local.stack import LocalStack, StackSettings

    settings = StackSettings.from_env(api_port=args.port)
    with LocalStack(settings) as stack:
        console.print(f"ReconFlow local stack: API [bold]{stack.api_url}[/bold]  (moto at {stack.moto_url})")
        console.print(f"  export RECONFLOW_API_URL={stack.api_url}")
        console.print("Ctrl-C to stop")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            console.print("stopping")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reconflow", description="ReconFlow: capture zip in, textured mesh out."
    )
    parser.add_argument("--api-url", help="API base URL (default: $RECONFLOW_API_URL)")
    commands = parser.add_subparsers(dest="command", required=True)

    submit = commands.add_parser("submit", help="create a job and upload a capture zip")
    submit.add_argument("capture", help="the capture zip (transforms.json + images)")
    submit.add_argument("--preset", choices=PRESETS, default=None)
    submit.add_argument("--name", default=None)
    submit.add_argument("--watch", action="store_true", help="follow the job until it ends")
    submit.set_defaults(run=cmd_submit)

    status = commands.add_parser("status", help="show one job")
    status.add_argument("job_id")
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=cmd_status)

    listing = commands.add_parser("list", help="your jobs, newest first")
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(run=cmd_list)

    cancel = commands.add_parser("cancel", help="cancel a job (asks for confirmation)")
    cancel.add_argument("job_id")
    cancel.add_argument("--yes", action="store_true", help="confirm without asking")
    cancel.set_defaults(run=cmd_cancel)

    download = commands.add_parser("download", help="download a finished job's outputs")
    download.add_argument("job_id")
    download.add_argument("directory")
    download.set_defaults(run=cmd_download)

    demo = commands.add_parser("demo", help="run the sample capture through the local stack")
    demo.add_argument("--preset", choices=PRESETS, default="draft")
    demo.add_argument("--out", default="reconflow-demo", help="where the outputs go")
    demo.add_argument("--views", type=int, default=24, help="views in the sample capture")
    demo.add_argument("--size", type=int, default=128, help="pixels per side of the sample images")
    demo.set_defaults(run=cmd_demo)

    local = commands.add_parser("local-stack", help="serve the local stack until Ctrl-C")
    local.add_argument("--port", type=int, default=None, help="API port (default: a free one)")
    local.set_defaults(run=cmd_local_stack)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except ApiError as error:
        err_console.print(f"[red]error[/red] {error.status} {error.code}: {error.message}")
        return 2
    except (ValueError, FileNotFoundError, TimeoutError) as error:
        err_console.print(f"[red]error[/red] {error}")
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted (a submitted job keeps running: `reconflow status JOB_ID`)")
        return 130


if __name__ == "__main__":
    sys.exit(main())
