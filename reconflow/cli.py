"""``reconflow``: submit captures, follow them, cancel and download, against the API or the local stack.

    reconflow submit capture.zip --preset draft --watch
    reconflow submit walkaround.mp4 --watch
    reconflow status JOB_ID | list | cancel JOB_ID [--yes] | download JOB_ID DIR
    reconflow demo              # local stack + sample capture + watch + download, no AWS account
    reconflow local-stack       # serve the local stack until Ctrl-C

The API URL comes from ``--api-url`` (before or after the command) or ``RECONFLOW_API_URL``;
the token for the deployed API from ``RECONFLOW_TOKEN`` (sent as a Bearer token).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from enum import IntEnum
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from jobstate.stages import DEFAULT_PRESET, PRESETS
from jobstate.statuses import CANCELLED, FAILED, SUCCEEDED
from reconflow.client import API_URL_ENV, TOKEN_ENV, ApiError, CaptureError, ReconFlowClient
from reconflow.watch import watch_job

console = Console()
err_console = Console(stderr=True)


class ExitCode(IntEnum):
    """What ``reconflow`` exits with (README, "The reconflow CLI")."""

    OK = 0
    # The job ended FAILED (status, submit --watch, demo), or the cancel was declined at the prompt.
    JOB_FAILED = 1
    # The API refused the request, the capture or an option is unusable, or usage is wrong (argparse).
    ERROR = 2
    # The job ended CANCELLED.
    JOB_CANCELLED = 3
    # --watch gave up waiting; the job keeps running.
    WATCH_TIMEOUT = 4
    INTERRUPTED = 130


EXIT_BY_STATUS: dict[str, ExitCode] = {FAILED: ExitCode.JOB_FAILED, CANCELLED: ExitCode.JOB_CANCELLED}
# Columns of `reconflow list`, in order; the name goes last so a long one never shifts the others.
LIST_COLUMNS = ("job_id", "status", "stage", "progress", "created_at", "name")
STATUS_STYLE = {SUCCEEDED: "green", FAILED: "red", CANCELLED: "yellow"}

ENVIRONMENT_HELP = f"""\
environment:
  {API_URL_ENV}   API base URL, the stack's ApiUrl output (or --api-url URL)
  {TOKEN_ENV}     JWT sent as "Authorization: Bearer" (deployed API only)
  RECONFLOW_LOCAL_API_PORT, RECONFLOW_LOCAL_MOTO_PORT, RECONFLOW_LOCAL_WORK_DIR,
  RECONFLOW_LOCAL_ENGINE_PROFILE=tiny   the local stack (demo, local-stack)

exit codes:
  0    done (status: the job succeeded or is still running)
  1    the job FAILED, or the cancel was declined at the prompt
  2    the API refused the request, the capture is unusable, or bad usage
  3    the job was CANCELLED
  4    --watch gave up waiting (the job keeps running)
  130  interrupted
"""


def _size(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"


def exit_code_of(job: dict[str, Any]) -> ExitCode:
    """0 for a job that succeeded or still runs, 1 FAILED, 3 CANCELLED."""
    return EXIT_BY_STATUS.get(str(job.get("status")), ExitCode.OK)


def _client(args: argparse.Namespace) -> ReconFlowClient:
    return ReconFlowClient.from_env(api_url=getattr(args, "api_url", None))


def _print_outcome(job: dict[str, Any]) -> None:
    status = job.get("status")
    if status == SUCCEEDED:
        console.print(f"[green]job {job['job_id']} SUCCEEDED[/green]")
    elif status == FAILED:
        error = job.get("error") or {}
        console.print(f"[red]job {job['job_id']} FAILED[/red]: {error.get('code')}: {error.get('message')}")
    else:
        console.print(f"job {job['job_id']} {status}: {job.get('message') or ''}")


# -- commands ---------------------------------------------------------------------------------


def cmd_submit(args: argparse.Namespace) -> int:
    capture = Path(args.capture)
    client = _client(args)
    # submit() checks the file before it creates the job: a bad file leaves no job behind.
    job_id = client.submit(capture, preset=args.preset, name=args.name)
    console.print(f"submitted job [bold]{job_id}[/bold] ({_size(capture.stat().st_size)} uploaded)")
    if not args.watch:
        return ExitCode.OK
    job = watch_job(client, job_id, console)
    _print_outcome(job)
    return exit_code_of(job)


def cmd_status(args: argparse.Namespace) -> int:
    job = _client(args).get_job(args.job_id)
    if args.json:
        console.print_json(json.dumps(job))
        return exit_code_of(job)
    table = Table(show_header=False)
    for key in ("job_id", "name", "status", "stage", "progress", "message", "preset", "created_at"):
        if job.get(key) is not None:
            table.add_row(key, str(job[key]))
    if job.get("error"):
        table.add_row("error", f"{job['error'].get('code')}: {job['error'].get('message')}")
    console.print(table)
    return exit_code_of(job)


def _list_row(job: dict[str, Any]) -> tuple[str, ...]:
    return (
        str(job.get("job_id", "")),
        str(job.get("status")),
        str(job.get("stage") or "-"),
        f"{float(job.get('progress') or 0):.1f}",
        str(job.get("created_at") or "-"),
        str(job.get("name") or ""),
    )


def print_jobs(jobs: Sequence[dict[str, Any]], out: Console) -> None:
    """Aligned columns, never cut to the terminal's width: every job id can be copied whole."""
    rows = [LIST_COLUMNS, *(_list_row(job) for job in jobs)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(LIST_COLUMNS))]
    for number, row in enumerate(rows):
        line = Text(style="bold" if number == 0 else "")
        for column, cell in enumerate(row):
            style = STATUS_STYLE.get(cell, "") if LIST_COLUMNS[column] == "status" and number else ""
            last = column == len(row) - 1
            line.append(cell if last else cell.ljust(widths[column] + 2), style=style)
        out.print(line, soft_wrap=True, highlight=False)


def cmd_list(args: argparse.Namespace) -> int:
    jobs = []
    for job in _client(args).iter_jobs():
        jobs.append(job)
        if len(jobs) >= args.limit:
            break
    print_jobs(jobs, console)
    return ExitCode.OK


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
            return ExitCode.JOB_FAILED
    answer = client.confirm_cancel(args.job_id, request["token"])
    console.print(f"job {args.job_id}: {answer.get('status')}")
    return ExitCode.OK


def cmd_download(args: argparse.Namespace) -> int:
    client = _client(args)
    files = client.download(client.get_job(args.job_id), Path(args.directory))
    for path in files:
        console.print(str(path), soft_wrap=True, highlight=False)
    return ExitCode.OK


def make_sample_capture(target: Path, extra_args: Sequence[str] = ()) -> Path:
    """Write the project's sample capture with the engine's own CLI (``python -m gpu_container sample``)."""
    subprocess.run([sys.executable, "-m", "gpu_container", "sample", str(target), *extra_args], check=True)
    return target


def cmd_demo(args: argparse.Namespace) -> int:
    from reconflow.local.stack import LocalStack, StackSettings

    out_dir = Path(args.out).resolve()
    with LocalStack(StackSettings.from_env()) as stack:
        console.print(f"local stack up: API {stack.api_url}")
        console.print(f"web console: {stack.console_url} (open it to watch the job)", soft_wrap=True)
        client = ReconFlowClient(api_url=stack.api_url)
        with tempfile.TemporaryDirectory(prefix="reconflow-demo-") as scratch:
            capture = make_sample_capture(
                Path(scratch) / "sample_capture.zip", ["--views", str(args.views), "--size", str(args.size)]
            )
            console.print(f"sample capture: {_size(capture.stat().st_size)}")
            job_id = client.submit(capture, preset=args.preset, name="demo")
        console.print(f"submitted job [bold]{job_id}[/bold] (preset {args.preset})")
        job = watch_job(client, job_id, console)
        _print_outcome(job)
        if job["status"] != SUCCEEDED:
            return exit_code_of(job)
        files = client.download(job, out_dir / job_id)
    mesh = next((path for path in files if path.suffix == ".glb"), files[0])
    console.print(f"mesh written to [bold]{mesh}[/bold]")
    console.print(f"all outputs: {', '.join(path.name for path in files)} in {mesh.parent}")
    return ExitCode.OK


def cmd_local_stack(args: argparse.Namespace) -> int:
    from reconflow import openapi
    from reconflow.local.stack import LocalStack, StackSettings

    settings = StackSettings.from_env(api_port=args.port)
    with LocalStack(settings) as stack:
        console.print(f"ReconFlow local stack: API [bold]{stack.api_url}[/bold]  (moto at {stack.moto_url})")
        console.print(f"  export RECONFLOW_API_URL={stack.api_url}")
        console.print(f"  OpenAPI document: {stack.api_url}{openapi.SERVED_PATH}", soft_wrap=True)
        console.print(f"  web console: {stack.console_url}", soft_wrap=True)
        console.print("Ctrl-C to stop")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            console.print("stopping")
    return ExitCode.OK


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's layout and shows each option's default where it has one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = action.default not in (None, False, argparse.SUPPRESS)
        if shown and action.option_strings and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


def _package_version() -> str:
    try:
        return version("reconflow")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def _api_options() -> argparse.ArgumentParser:
    """Options every API command takes, before or after the command's name."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--api-url",
        default=argparse.SUPPRESS,  # so a value given before the command is not reset after it
        metavar="URL",
        help=f"API base URL (default: ${API_URL_ENV})",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    api = _api_options()
    parser = argparse.ArgumentParser(
        prog="reconflow",
        description="ReconFlow: a capture (photos zip or video) in, textured mesh out.",
        epilog=ENVIRONMENT_HELP,
        formatter_class=HelpFormatter,
        parents=[api],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_package_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, *, uses_api: bool = True) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=ENVIRONMENT_HELP,
            formatter_class=HelpFormatter,
            parents=[api] if uses_api else [],
        )

    submit = command("submit", "create a job and upload a capture (zip or video)")
    submit.add_argument(
        "capture",
        help="the capture: a zip of photos (with or without transforms.json) or an MP4/MOV video",
    )
    submit.add_argument("--preset", choices=PRESETS, default=DEFAULT_PRESET, help="quality preset")
    submit.add_argument("--name", default=None, help="job name (default: the file name without .zip)")
    submit.add_argument("--watch", action="store_true", help="follow the job until it ends")
    submit.set_defaults(run=cmd_submit)

    status = command("status", "show one job; exits 1 if it FAILED, 3 if it was CANCELLED")
    status.add_argument("job_id")
    status.add_argument("--json", action="store_true", help="the whole job body as JSON")
    status.set_defaults(run=cmd_status)

    listing = command("list", "your jobs, newest first")
    listing.add_argument("--limit", type=int, default=50, help="show at most this many jobs")
    listing.set_defaults(run=cmd_list)

    cancel = command("cancel", "cancel a job (asks for confirmation)")
    cancel.add_argument("job_id")
    cancel.add_argument("--yes", action="store_true", help="confirm without asking")
    cancel.set_defaults(run=cmd_cancel)

    download = command("download", "download a finished job's outputs")
    download.add_argument("job_id")
    download.add_argument("directory")
    download.set_defaults(run=cmd_download)

    demo = command("demo", "run the sample capture through a local stack", uses_api=False)
    demo.add_argument("--preset", choices=PRESETS, default="draft", help="quality preset")
    demo.add_argument("--out", default="reconflow-demo", help="where the outputs go")
    demo.add_argument("--views", type=int, default=24, help="views in the sample capture")
    demo.add_argument("--size", type=int, default=128, help="pixels per side of the sample images")
    demo.set_defaults(run=cmd_demo)

    local = command("local-stack", "serve the local stack until Ctrl-C", uses_api=False)
    local.add_argument(
        "--port",
        type=int,
        default=None,
        help="API port (default: $RECONFLOW_LOCAL_API_PORT, else a free one)",
    )
    local.set_defaults(run=cmd_local_stack)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except ApiError as error:
        err_console.print(f"[red]error[/red] {error.status} {error.code}: {error.message}")
        return ExitCode.ERROR
    except CaptureError as error:
        err_console.print(f"[red]error[/red] {error.code}: {error}")
        return ExitCode.ERROR
    except TimeoutError as error:
        err_console.print(f"[red]gave up waiting[/red] {error} (the job keeps running)")
        return ExitCode.WATCH_TIMEOUT
    except (ValueError, OSError) as error:
        err_console.print(f"[red]error[/red] {error}")
        return ExitCode.ERROR
    except KeyboardInterrupt:
        err_console.print("interrupted (a submitted job keeps running: `reconflow status JOB_ID`)")
        return ExitCode.INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
