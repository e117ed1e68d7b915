"""Fixtures of the CLI tests: the scripted API in place of the real client, and a small capture."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import ScriptedApi

from reconflow import cli
from reconflow.client import ReconFlowClient


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """``scripted["answers"]`` feeds the API; ``scripted["api"]`` is the client the CLI made, with
    the URL it was given in ``scripted["api_url"]``."""
    state: dict[str, Any] = {"answers": {}}

    def from_env(cls: type, api_url: str | None = None, token: str | None = None) -> ScriptedApi:
        state["api_url"] = api_url
        state["api"] = ScriptedApi(state["answers"], api_url=api_url or "http://api.invalid")
        return state["api"]

    monkeypatch.setattr(ReconFlowClient, "from_env", classmethod(from_env))
    monkeypatch.setattr(cli.time, "sleep", lambda seconds: None)
    return state


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    target = tmp_path / "scan.zip"
    with zipfile.ZipFile(target, "w") as archive:
        archive.writestr("transforms.json", "{}")
    return target
