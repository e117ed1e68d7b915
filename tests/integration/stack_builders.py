"""Local stacks the integration tests share the shape of."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from reconflow.local.executor import ExecutorSettings
from reconflow.local.stack import LocalStack, StackSettings


def no_capacity_stack(
    work_dir: Path, *, reconcile_interval_s: float, environment: dict[str, str] | None = None
) -> LocalStack:
    """A local stack whose GPU queue never starts a job (no GPU quota, no Spot capacity), with the
    tiny engine profile; enter it with ``with``."""
    settings = replace(
        StackSettings(work_dir=work_dir, engine_profile="tiny"),
        executor=ExecutorSettings(never_start_queues=("*",)),
        environment=environment or {},
        reconcile_interval_s=reconcile_interval_s,
    )
    return LocalStack(settings)
