"""The ``reconflow`` commands: options anywhere, the capture checked first, exit codes, help, list."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import JOB_ID, job
from rich.console import Console

from reconflow import cli
from reconflow.cli import ExitCode, main
from reconflow.client import ApiError

URL = "http://api.example.test"
CREATED = {"job_id": JOB_ID, "status": "CREATED", "upload": {"url": "u", "fields": {}}}


@pytest.mark.parametrize(
    "argv",
    [
        ["--api-url", URL, "status", JOB_ID],
        ["status", JOB_ID, "--api-url", URL],
        ["status", "--api-url", URL, JOB_ID],
    ],
)
def test_api_url_is_accepted_before_or_after_the_command(scripted: dict[str, Any], argv: list[str]) -> None:
    scripted["answers"][f"GET /jobs/{JOB_ID}"] = [job("RUNNING", "hull", 3, 30.0)]
    assert main(argv) == ExitCode.OK
    assert scripted["api_url"] == URL


def test_submit_takes_the_api_url_after_the_capture(scripted: dict[str, Any], capture: Path) -> None:
    scripted["answers"]["POST /jobs"] = [CREATED]
    assert main(["submit", str(capture), "--api-url", URL]) == ExitCode.OK
    assert scripted["api_url"] == URL
    assert scripted["api"].uploads == [capture]
    assert scripted["api"].calls[0][2] == {"preset": "standard", "name": "scan", "capture": "zip"}


@pytest.mark.parametrize(("brand", "capture_format"), [(b"isom", "mp4"), (b"qt  ", "mov")])
def test_submit_asks_for_a_video_upload_for_a_video(
    scripted: dict[str, Any], tmp_path: Path, brand: bytes, capture_format: str
) -> None:
    video = _write(tmp_path / "walkaround.bin", b"\x00\x00\x00\x18ftyp" + brand + bytes(64))
    scripted["answers"]["POST /jobs"] = [CREATED]

    assert main(["submit", str(video), "--api-url", URL]) == ExitCode.OK
    assert scripted["api"].calls[0][2]["capture"] == capture_format
    assert scripted["api"].uploads == [video]


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda tmp: tmp / "missing.zip", "capture_not_found"),
        (lambda tmp: tmp, "capture_not_a_file"),
        (lambda tmp: _write(tmp / "empty.zip", b""), "capture_empty"),
        (lambda tmp: _write(tmp / "text.zip", b"not a zip at all"), "capture_format_unknown"),
    ],
)
def test_a_bad_capture_is_refused_before_any_job_is_created(
    scripted: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture, make: Any, code: str
) -> None:
    scripted["answers"]["POST /jobs"] = [CREATED]
    assert main(["submit", str(make(tmp_path)), "--api-url", URL]) == ExitCode.ERROR
    assert scripted["api"].calls == []
    assert code in capsys.readouterr().err


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("SUCCEEDED", ExitCode.OK),
        ("RUNNING", ExitCode.OK),
        ("FAILED", ExitCode.JOB_FAILED),
        ("CANCELLED", ExitCode.JOB_CANCELLED),
    ],
)
@pytest.mark.parametrize("as_json", [False, True])
def test_status_exit_code_follows_the_jobs_outcome(
    scripted: dict[str, Any], status: str, expected: ExitCode, as_json: bool
) -> None:
    scripted["answers"][f"GET /jobs/{JOB_ID}"] = [job(status)]
    argv = ["status", JOB_ID, "--api-url", URL, *(["--json"] if as_json else [])]
    assert main(argv) == expected


def test_exit_codes_are_distinct_and_documented_in_the_help() -> None:
    assert len({int(code) for code in ExitCode}) == len(ExitCode)
    documented = {int(number) for number in re.findall(r"^  (\d+) ", cli.ENVIRONMENT_HELP, re.MULTILINE)}
    assert documented == {int(code) for code in ExitCode}


def test_an_api_refusal_exits_2_with_its_code(
    scripted: dict[str, Any], capsys: pytest.CaptureFixture
) -> None:
    scripted["answers"][f"GET /jobs/{JOB_ID}"] = [ApiError(404, "job_not_found", "no such job")]
    assert main(["status", JOB_ID, "--api-url", URL]) == ExitCode.ERROR
    assert "job_not_found" in capsys.readouterr().err


def test_submit_watch_exits_with_the_jobs_outcome(scripted: dict[str, Any], capture: Path) -> None:
    scripted["answers"]["POST /jobs"] = [CREATED]
    scripted["answers"][f"GET /jobs/{JOB_ID}"] = [job("QUEUED"), job("CANCELLED")]
    assert main(["submit", str(capture), "--watch", "--api-url", URL]) == ExitCode.JOB_CANCELLED


@pytest.mark.parametrize("width", [40, 80, 200])
def test_list_shows_every_job_id_whole_at_any_width(
    scripted: dict[str, Any], monkeypatch: pytest.MonkeyPatch, width: int
) -> None:
    ids = [str(uuid.uuid4()) for _ in range(3)]
    page = {"jobs": [job("SUCCEEDED", job_id=i, name="a rather long job name " * 3) for i in ids]}
    scripted["answers"]["GET /jobs"] = [{**page, "next_cursor": None}]
    out = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=out, width=width, force_terminal=True))
    assert main(["list", "--api-url", URL]) == ExitCode.OK
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())
    lines = text.splitlines()
    assert len(lines) == 1 + len(ids)
    for job_id, line in zip(ids, lines[1:], strict=True):
        assert line.split()[0] == job_id


def test_list_stops_at_the_limit(scripted: dict[str, Any], capsys: pytest.CaptureFixture) -> None:
    jobs = [job("SUCCEEDED", job_id=str(uuid.uuid4())) for _ in range(5)]
    scripted["answers"]["GET /jobs"] = [{"jobs": jobs, "next_cursor": None}]
    assert main(["list", "--limit", "2", "--api-url", URL]) == ExitCode.OK
    assert len(capsys.readouterr().out.splitlines()) == 1 + 2


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"reconflow {version('reconflow')}"


def test_help_shows_defaults_and_the_environment(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["submit", "--help"])
    text = capsys.readouterr().out
    assert "(default: standard)" in text
    assert "RECONFLOW_API_URL" in text
    assert "RECONFLOW_TOKEN" in text
    assert "exit codes" in text
    assert "(default: None)" not in text


def test_demo_help_shows_its_defaults(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = capsys.readouterr().out
    assert "(default: draft)" in text
    assert "(default: 24)" in text
    assert "RECONFLOW_LOCAL_ENGINE_PROFILE" in text


def test_the_cli_starts_without_the_aws_sdk() -> None:
    """Every command pays the CLI's import time: boto3 alone costs a third of a second here."""
    probe = "import sys, reconflow.cli; print(sorted({'boto3', 'botocore'} & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
