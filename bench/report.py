"""What every engine benchmark's report starts and ends with: when, how it was run, on which commit and
machine, the table, the goal lines; written to ``--out`` and printed."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent


def commit_label() -> str:
    """The checkout's commit (short), with "+changes" when tracked files differ from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + (" +changes" if changed else "")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    model = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu ({model}, {os.cpu_count()} cores, torch {torch.get_num_threads()} threads)"


@contextlib.contextmanager
def work_folder(kept: Path | None, prefix: str) -> Iterator[Path]:
    """The bench's job folders: ``kept`` (``--work``, created, left in place) or a temporary folder
    removed at the end."""
    if kept is not None:
        kept.mkdir(parents=True, exist_ok=True)
        yield kept
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as temporary:
        yield Path(temporary)


class RunRecord:
    """Taken when a benchmark starts (the code and the machine's load then: edits or load during the
    run do not count)."""

    def __init__(self, script: str, argv: Sequence[str] | None) -> None:
        self.command = f"python bench/{script} " + " ".join(sys.argv[1:] if argv is None else argv)
        self.commit = commit_label()
        self.load_before = " ".join(f"{value:.2f}" for value in os.getloadavg())

    def write(
        self,
        out: Path,
        title: str,
        device: torch.device,
        notes: Sequence[str],
        table: Sequence[str],
        goals: Sequence[str],
        load_note: str = "",
    ) -> str:
        """The report (title with the time, command, commit, device, load, ``notes``, the table and the
        goal lines), printed and written to ``out``; returned."""
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        text = "\n".join(
            [
                f"{title}, {stamp}",
                f"command: {self.command.strip()}",
                f"commit: {self.commit}",
                f"device: {device_name(device)}",
                f"load average before the run: {self.load_before}{load_note}",
                *notes,
                "",
                *table,
                "",
                "goals:",
                *(f"  {line}" for line in goals),
                "",
            ]
        )
        print(text)
        out.write_text(text)
        return text
