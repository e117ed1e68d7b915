"""Runs Batch jobs for the local stack as local processes: the container, minus the container.

moto's no-Docker Batch backend marks a submitted job finished at once. The local stack hands each
submitted ``moto.batch.models.Job`` to ``ProcessExecutor.start`` instead, which runs the job
definition's command (``Ref::`` parameters substituted, ``python`` meaning this interpreter) with
the job definition's environment plus the overrides, ``AWS_BATCH_JOB_ID`` and the endpoint of the
emulated AWS, then marks the job SUCCEEDED or FAILED from the exit code. ``TerminateJob`` (moto sets
``job.stop``) and the attempt timeout kill the process, as Batch would stop the container.

A queue named in ``never_start_queues`` never gets an instance: its jobs stay RUNNABLE until
they are terminated (what an account without GPU quota or Spot capacity looks like).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from reconflow.local import moto_batch

LOG = logging.getLogger(__name__)
PYTHON_NAMES = frozenset({"python", "python3", "python3.11"})
# Batch's status reason for a container that exited non-zero (its output is in the log, as in
# CloudWatch, not in the reason).
CONTAINER_EXITED = "Essential container in task exited"
SIGNAL_EXIT_BASE = 128


def container_exit_code(returncode: int | None) -> int | None:
    """The exit code a container reports: a process killed by signal N exits 128 + N."""
    if returncode is None or returncode >= 0:
        return returncode
    return SIGNAL_EXIT_BASE - returncode


@dataclass(frozen=True)
class ExecutorSettings:
    # Seconds between two checks of the job's terminate flag while its process runs.
    poll_interval_s: float = 0.1
    # Seconds a terminated process gets between SIGTERM and SIGKILL.
    kill_grace_s: float = 2.0
    # Job queues (names, fnmatch patterns) that never start a job: no GPU capacity.
    never_start_queues: tuple[str, ...] = ()
    # ``python -m MODULE args`` runs as ``python -m {module_wrapper} MODULE args`` when set
    # (``reconflow.local.engine_profile``: smaller engine sizes for tests).
    module_wrapper: str | None = None


@dataclass
class JobRun:
    """What happened to one Batch job: for tests and the benchmark."""

    batch_job_id: str
    command: list[str]
    parameters: dict[str, str]
    log_path: Path
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    returncode: int | None = None
    terminated: bool = False
    pid: int | None = None  # the process (and its process group) while it runs

    def stopped_at(self) -> float | None:
        """When the stage runner logged that its work stopped (its own clock, epoch seconds), if it did."""
        for line in self.log_path.read_text(errors="replace").splitlines():
            if '"stage stopped"' in line:
                return datetime.fromisoformat(json.loads(line)["timestamp"]).timestamp()
        return None


def substitute_parameters(command: list[str], parameters: Mapping[str, str]) -> list[str]:
    """Batch's ``Ref::name`` substitution: each ``Ref::name`` in an argument becomes its value."""
    result = []
    for part in command:
        for name, value in parameters.items():
            part = part.replace(f"Ref::{name}", str(value))
        result.append(part)
    return result


def container_environment(job: Any) -> dict[str, str]:
    """Job definition environment, then the submit-time overrides, then ``AWS_BATCH_JOB_ID``."""
    definition = job.job_definition.container_properties or {}
    env = {item["name"]: str(item["value"]) for item in definition.get("environment", [])}
    env.update({item["name"]: str(item["value"]) for item in job.container_overrides.get("environment", [])})
    env["AWS_BATCH_JOB_ID"] = job.job_id
    return env


def container_command(job: Any, module_wrapper: str | None = None) -> list[str]:
    """The job's command, parameters substituted, ``python`` being this interpreter."""
    definition = job.job_definition.container_properties or {}
    command = job.container_overrides.get("command") or definition.get("command") or []
    if isinstance(command, str):
        command = [command]
    command = substitute_parameters(list(command), job.parameters or {})
    if command and command[0] in PYTHON_NAMES:
        command[0] = sys.executable  # the image's python is this interpreter's environment here
        if module_wrapper and command[1:2] == ["-m"]:
            command[2:2] = [module_wrapper]
    return command


@dataclass
class ProcessExecutor:
    """Starts one process per Batch job and reports its end to moto's job object."""

    base_environment: dict[str, str]  # endpoint, credentials, region: what the container's role gives it
    log_dir: Path
    cwd: Path | None = None
    settings: ExecutorSettings = field(default_factory=ExecutorSettings)
    runs: list[JobRun] = field(default_factory=list)
    held: list[str] = field(default_factory=list)  # Batch job ids of a queue that never starts
    # Told of every job handed over, before it starts or is held (Batch's RUNNABLE event).
    on_runnable: Callable[[Any], None] | None = None
    _processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run_of(self, job_id: str, stage: str) -> JobRun | None:
        """The run of ``stage`` for the ReconFlow job ``job_id``, if one was started."""
        wanted = {"stage": stage, "job_id": job_id}
        with self._lock:
            return next((run for run in self.runs if run.parameters == wanted), None)

    def start(self, job: Any) -> None:
        """Begin the job's attempt and run it on a thread; returns at once (SubmitJob does not wait)."""
        if self.on_runnable is not None:
            self.on_runnable(job)
        if any(fnmatch.fnmatchcase(job.job_queue.name, p) for p in self.settings.never_start_queues):
            self._hold(job)
            return
        moto_batch.start_attempt(job)
        thread = threading.Thread(target=self._run, args=(job,), name=f"batch-{job.job_id[:8]}", daemon=True)
        thread.start()

    def _hold(self, job: Any) -> None:
        """Leave the job RUNNABLE (moto advances a job's status as it is described) until terminated."""
        job._transitions = [("SUBMITTED", "PENDING"), ("PENDING", "RUNNABLE")]
        with self._lock:
            self.held.append(job.job_id)

        def wait_for_terminate() -> None:
            while not job.stop:
                time.sleep(self.settings.poll_interval_s)
            moto_batch.finish(job, success=False, reason=job.job_stopped_reason)

        threading.Thread(target=wait_for_terminate, name=f"batch-held-{job.job_id[:8]}", daemon=True).start()

    def _run(self, job: Any) -> None:
        command = container_command(job, self.settings.module_wrapper)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{job.job_name}-{job.job_id[:8]}.log"
        run = JobRun(job.job_id, command, dict(job.parameters or {}), log_path)
        with self._lock:
            self.runs.append(run)
        env = {**os.environ, **self.base_environment, **container_environment(job)}
        try:
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    command,
                    env=env,
                    cwd=self.cwd,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                run.pid = process.pid
                with self._lock:
                    self._processes[job.job_id] = process
                run.returncode, run.terminated = self._wait(job, process)
        except OSError as error:  # the command could not start: the container failed
            LOG.error("batch job %s could not start %s: %s", job.job_id, command, error)
            run.returncode = 127
        finally:
            with self._lock:
                self._processes.pop(job.job_id, None)
            run.ended_at = time.time()
        success = run.returncode == 0 and not run.terminated
        reason = None if success else (job.job_stopped_reason or CONTAINER_EXITED)
        moto_batch.finish(job, success=success, reason=reason, exit_code=container_exit_code(run.returncode))

    def _wait(self, job: Any, process: subprocess.Popen) -> tuple[int, bool]:
        """Wait for the process; kill it on TerminateJob or when the attempt's time runs out."""
        attempt_s = job._get_attempt_duration()
        deadline = time.monotonic() + attempt_s if attempt_s else None
        while True:
            try:
                return process.wait(timeout=self.settings.poll_interval_s), False
            except subprocess.TimeoutExpired:
                pass
            timed_out = deadline is not None and time.monotonic() > deadline
            if job.stop or timed_out:
                if timed_out:
                    job.job_stopped_reason = "Job attempt duration exceeded timeout"
                self._kill(process)
                return process.wait(), True

    def _kill(self, process: subprocess.Popen) -> None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=self.settings.kill_grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def running(self) -> int:
        with self._lock:
            return len(self._processes)

    def shutdown(self) -> None:
        """Kill every process still running (the stack is stopping)."""
        with self._lock:
            processes = list(self._processes.values())
        for process in processes:
            self._kill(process)
