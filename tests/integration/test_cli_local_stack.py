"""``reconflow local-stack`` as a user runs it: it prints where the API and its document are,
serves them until Ctrl-C, then stops cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import requests

from reconflow import openapi
from reconflow.cli import ExitCode

START_WITHIN_S = 120  # deploying the template into moto takes 10-30 s on two busy cores
STOP_WITHIN_S = 60


def test_local_stack_prints_its_api_and_document_and_stops_on_ctrl_c() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "reconflow.cli", "local-stack"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # faulthandler: a stack that does not stop prints every thread's stack on SIGABRT (below)
        env={**os.environ, "COLUMNS": "200", "PYTHONFAULTHANDLER": "1"},
        # Ctrl-C as in a terminal: started from a background job (CI's runner, nohup) the test
        # process has SIGINT ignored, the child would inherit that and never see the Ctrl-C
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        printed: list[str] = []
        deadline = time.monotonic() + START_WITHIN_S
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            printed.append(line)
            if line.startswith("Ctrl-C to stop"):
                break
        text = "".join(printed)
        api_url = re.search(r"export RECONFLOW_API_URL=(\S+)", text)
        document_url = re.search(r"OpenAPI document: (\S+)", text)
        assert api_url, text
        assert document_url, text
        assert document_url.group(1) == api_url.group(1) + openapi.SERVED_PATH
        served = requests.get(document_url.group(1), timeout=10).json()
        assert served["paths"].keys() == openapi.load_document()["paths"].keys()
        listing = requests.get(api_url.group(1) + "/jobs", timeout=10).json()
        assert listing == {"jobs": [], "next_cursor": None}
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=STOP_WITHIN_S)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)
            rest, _ = process.communicate(timeout=30)
            message = f"the stack did not stop within {STOP_WITHIN_S} s; its threads:\n{rest}"
            raise AssertionError(message) from None
        assert code == ExitCode.OK
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
