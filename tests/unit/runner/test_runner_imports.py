"""The container's entry point starts its stop watcher before the seconds-long engine imports."""

from __future__ import annotations

import subprocess
import sys

import torch

from gpu_container.runner import StageRunner

HEAVY_MODULES = ("torch", "trimesh", "numpy", "gpu_container.engine.pipeline")


def test_the_stage_command_loads_no_engine_module_before_the_stage_begins() -> None:
    """``python -m gpu_container <stage>`` imports cli and runner first: none of them may pull in torch
    (1-3 s to import), or a cancel confirmed during that import is seen only at begin_stage."""
    probe = (
        "import sys, gpu_container.cli, gpu_container.runner; "
        f"print(','.join(m for m in {HEAVY_MODULES!r} if m in sys.modules) or 'none')"
    )
    command = [sys.executable, "-c", probe]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "none"


def test_the_device_is_made_on_first_use_from_its_name(make_runner) -> None:
    runner = make_runner({})
    assert runner.device == torch.device("cpu")
    named = StageRunner(store=runner.store, s3=runner.s3, bucket=runner.bucket, device="cpu")
    assert named._device == "cpu"  # nothing made at construction
    assert named.device == torch.device("cpu")
    assert named.device is named.device
