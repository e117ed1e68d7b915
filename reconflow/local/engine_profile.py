"""Smaller engine sizes for the local stack's tests and benchmarks (``-m reconflow.local.engine_profile``).

The e2e tests must run whole jobs in seconds on a small shared CPU, where even the ``draft``
preset's reconstruction takes minutes. With ``RECONFLOW_LOCAL_ENGINE_PROFILE=tiny`` the local
executor starts each stage as ``python -m reconflow.local.engine_profile gpu_container <args>``: this
module wraps each stage module's ``params_for(preset)`` (the engine's contract) so that ``draft``
comes back with smaller sizes (``dataclasses.replace``), then runs ``gpu_container`` as ``__main__``.
Nothing else differs from a normal stage run; without the variable nothing here is used.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import runpy
import sys
from collections.abc import Callable
from typing import Any

PROFILE_ENV = "RECONFLOW_LOCAL_ENGINE_PROFILE"
PRESET = "draft"
# profile -> engine stage module -> fields of that stage's draft parameters to replace.
PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {
        "gpu_container.engine.preprocess": {"long_side": 64},
        "gpu_container.engine.hull": {"resolution": 40, "coarse_resolution": 16},
        "gpu_container.engine.reconstruct": {
            "resolutions": (24, 40),
            # Long enough that a cancel confirmed mid-stage (tests, bench) lands inside the loop.
            "iterations": (15, 120),
            "rays_per_batch": 512,
            "carve_max_side": 32,
            "regulariser_points": 1024,
            "eval_max_side": 48,
        },
        "gpu_container.engine.mesh": {"target_faces": 4000},
        "gpu_container.engine.export": {"preview_width": 128},
    },
}


def _shrunk(original: Callable[[str], Any], fields: dict[str, Any]) -> Callable[[str], Any]:
    def params_for(preset: str) -> Any:
        params = original(preset)
        return dataclasses.replace(params, **fields) if preset == PRESET else params

    return params_for


def apply(profile: str) -> None:
    """Make each stage module named by ``profile`` answer ``params_for("draft")`` with the smaller sizes."""
    for module_name, fields in PROFILES[profile].items():
        module = importlib.import_module(module_name)
        module.params_for = _shrunk(module.params_for, fields)


def main(argv: list[str]) -> None:
    """``engine_profile MODULE ARGS...``: apply the profile from the environment, run MODULE."""
    profile = os.environ.get(PROFILE_ENV)
    if profile:
        apply(profile)
    module, *args = argv
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
