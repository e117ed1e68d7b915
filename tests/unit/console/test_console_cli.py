"""The CLI tells where the local stack's web console is."""

from __future__ import annotations

from typing import Any

import pytest

from reconflow import cli
from reconflow.local import stack as local_stack

CONSOLE_URL = "http://127.0.0.1:5173/"


class StackStandIn:
    """What ``reconflow local-stack`` reads of a started stack."""

    api_url = "http://127.0.0.1:5000"
    moto_url = "http://127.0.0.1:5001"
    console_url = CONSOLE_URL

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    def __enter__(self) -> StackStandIn:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def test_local_stack_prints_the_console_address(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(local_stack, "LocalStack", StackStandIn)

    def interrupt(_: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.time, "sleep", interrupt)
    assert cli.main(["local-stack"]) == cli.ExitCode.OK
    assert f"web console: {CONSOLE_URL}" in capsys.readouterr().out
