"""The stage runner: one pipeline stage of one job, between S3/DynamoDB and the engine.

``python -m gpu_container <stage> --job-id ID`` is the AWS Batch container's command. It

1. moves the job to RUNNING at this stage (``JobStore.begin_stage``; the preset comes from the job);
   a job that is no longer QUEUED/RUNNING (being cancelled, finished) -> exit 3, nothing done;
2. downloads the prefixes the stage reads (``STAGE_READS``) into a temporary job folder laid out
   like ``jobs/{id}/``;
3. runs the engine stage with ``on_progress`` = ``ThrottledProgress`` and ``should_stop`` = a
   ``StopPoller`` over ``JobStore.should_stop`` (at most one table read per ``stop_poll_interval_s``);
4. uploads what the stage wrote (``work/<stage>/``; export also ``output/``) unless a stop came,
   then reports the stage's end (export: ``JobStore.succeed`` with ``{name: key}`` of ``output/``).

Exit codes (``ExitCode``): 0 done; 1 the stage failed (``stage_failed`` recorded on the job);
2 bad capture (the ``CaptureError``'s code recorded); 3 stopped (cancelled, terminated or not
runnable): nothing more is written, the cancel's purge removes whatever a stage left in S3.

Two ways a stop ends a stage: the engine's ``should_stop`` (a graceful stop between iterations)
and a ``StopWatcher`` thread that asks every ``stop_poll_interval_s`` from the stage's first
second and, once a stop is confirmed, ends the process at once with exit code 3 (``exit_process``)
whatever the engine is doing: seconds of set-up, or a long library call that polls nothing.
"""

from __future__ import annotations

import argparse
import enum
import logging
import os
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpu_container import logs
from gpu_container.engine.context import (
    STAGE_RECORD,
    CaptureError,
    StageCancelled,
    StageContext,
    make_device,
)
from gpu_container.s3sync import (
    TransferSettings,
    TransferStoppedError,
    download_key,
    download_prefix,
    upload_folder,
)
from gpu_container.stop_poller import StopPoller, StopWatcher
from jobstate import aws, layout
from jobstate.errors import InvalidJobId, JobNotFound, StateConflict
from jobstate.ids import parse_job_id
from jobstate.jobs import Job, JobStore
from jobstate.progress import ThrottledProgress
from jobstate.settings import Settings
from jobstate.stages import STAGE_NAMES

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

StageFunction = Callable[[StageContext], dict]
STAGE_FAILED = "stage_failed"
EXPORT = "export"


class ExitCode(enum.IntEnum):
    OK = 0
    FAILED = 1
    BAD_CAPTURE = 2
    STOPPED = 3


@dataclass(frozen=True)
class Source:
    """A part of the job's prefix a stage reads: an area (``input``/``output``), a stage's
    ``work/<stage>/`` folder, or (with ``name``) one object in it."""

    area: str
    stage: str | None = None
    name: str | None = None

    def prefix(self, job_id: str) -> str:
        if self.area == layout.INPUT:
            return layout.input_prefix(job_id)
        if self.area == layout.OUTPUT:
            return layout.output_prefix(job_id)
        return layout.work_prefix(job_id, self.stage or "")

    def local_folder(self, job_dir: Path, job_id: str) -> Path:
        """The folder of the job folder that mirrors ``prefix``."""
        return job_dir / self.prefix(job_id).removeprefix(layout.job_prefix(job_id))


INPUT = Source(layout.INPUT)
OUTPUT = Source(layout.OUTPUT)


def work(stage: str) -> Source:
    return Source(layout.WORK, stage)


def stage_record(stage: str) -> Source:
    return Source(layout.WORK, stage, STAGE_RECORD)


# What each stage reads (engine-spec.md and each stage module's docstring), so a stage downloads
# that and no more: the capture zip only where it is decoded, the field only where it is meshed.
STAGE_READS: dict[str, tuple[Source, ...]] = {
    "validate": (INPUT,),
    "preprocess": (INPUT, work("validate")),
    "hull": (work("preprocess"),),
    "reconstruct": (work("preprocess"), work("hull")),
    "mesh": (work("preprocess"), work("reconstruct")),
    # export's report names every stage's seconds (stage.json) and the hull/field grid sizes.
    EXPORT: (
        stage_record("validate"),
        work("preprocess"),
        work("hull"),
        work("reconstruct"),
        work("mesh"),
    ),
}
# What each stage writes and the runner publishes.
STAGE_WRITES: dict[str, tuple[Source, ...]] = {
    **{stage: (work(stage),) for stage in STAGE_NAMES if stage != EXPORT},
    EXPORT: (work(EXPORT), OUTPUT),
}


def _float_env(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return default if raw in (None, "") else float(raw)


@dataclass(frozen=True)
class RunnerSettings:
    # should_stop(): at most one strongly consistent read of the job per this many seconds.
    stop_poll_interval_s: float = field(default_factory=lambda: _float_env("STOP_POLL_INTERVAL_S", 0.5))
    # Failed stop checks in a row before the stage gives up (a single blip keeps the last answer).
    max_stop_check_errors: int = 5
    # Share of the stage's progress band the engine's own reports cover; the rest is the upload.
    stage_work_share: float = 0.95
    # Root for the temporary job folders (TMPDIR when unset): Batch jobs may mount a larger volume.
    work_root: str | None = field(default_factory=lambda: os.environ.get("JOB_WORK_ROOT") or None)
    seed: int = field(default_factory=lambda: int(os.environ.get("RECONFLOW_SEED") or 0))
    error_message_chars: int = 1000
    transfer: TransferSettings = field(default_factory=TransferSettings)


def engine_stage(stage: str) -> StageFunction:
    """The engine's function for ``stage`` (imported on use: the engine modules pull in torch/trimesh)."""
    from gpu_container.engine.pipeline import STAGE_RUNNERS

    return STAGE_RUNNERS[stage]


class StageRunner:
    """Runs stages of jobs against the table and bucket; the clients and the engine are injectable."""

    def __init__(
        self,
        *,
        store: JobStore | None = None,
        s3: Any = None,
        bucket: str | None = None,
        device: torch.device | str | None = None,
        settings: RunnerSettings | None = None,
        core_settings: Settings | None = None,
        stage_functions: dict[str, StageFunction] | None = None,
        clock: Callable[[], float] = time.monotonic,
        exit_process: Callable[[int], None] = os._exit,
    ) -> None:
        self.core_settings = core_settings or Settings()
        self.settings = settings or RunnerSettings()
        self.store = store or JobStore(settings=self.core_settings)
        self.s3 = s3 if s3 is not None else aws.client("s3", self.core_settings)
        self.bucket = bucket or self.core_settings.bucket_name
        self._device = device
        self.stage_functions = stage_functions or {}
        self.clock = clock
        self.exit_process = exit_process
        self.terminated = False  # set by SIGTERM: stop like a cancel, write nothing more

    @property
    def device(self) -> torch.device:
        """The stage's torch device, made on first use: torch loads inside the stop watcher's watch."""
        if self._device is None or isinstance(self._device, str):
            self._device = make_device(self._device)
        return self._device

    # -- one stage -------------------------------------------------------------------------------

    def run(self, stage: str, job_id: str) -> ExitCode:
        """Run ``stage`` of ``job_id``; never raises for a failure of the stage itself."""
        if stage not in STAGE_READS:
            raise ValueError(f"unknown stage {stage!r}; one of {', '.join(STAGE_NAMES)}")
        job_id = parse_job_id(job_id)
        log = _StageLog(job_id, stage)
        try:
            job = self.store.begin_stage(job_id, stage)
        except (StateConflict, JobNotFound) as error:
            log.info("stage not started", reason=str(error))
            return ExitCode.STOPPED
        poller = StopPoller(
            lambda: self.terminated or self.store.should_stop(job_id),
            min_interval_s=self.settings.stop_poll_interval_s,
            max_consecutive_errors=self.settings.max_stop_check_errors,
            clock=self.clock,
        )
        progress = ThrottledProgress(
            self.store,
            job_id,
            stage,
            min_interval_s=self.core_settings.progress_min_interval_s,
            clock=self.clock,
        )
        log.info("stage started", preset=job.preset)
        started = time.perf_counter()

        def end_now() -> None:
            log.info(
                "stage stopped",
                reason="stop confirmed; the stop watcher ends the process",
                polls=poller.polls,
            )
            for handler in logging.getLogger().handlers:  # os._exit skips the interpreter's flushing
                handler.flush()
            self.exit_process(int(ExitCode.STOPPED))

        try:
            with StopWatcher(poller, end_now, interval_s=self.settings.stop_poll_interval_s):
                figures = self._run_in_job_folder(job, stage, poller, progress, log)
        except (StageCancelled, TransferStoppedError) as stop:
            log.info("stage stopped", reason=str(stop), polls=poller.polls)
            return ExitCode.STOPPED
        except CaptureError as error:
            return self._fail(job_id, poller, log, ExitCode.BAD_CAPTURE, error.code, error.message)
        except Exception as error:
            log.exception("stage crashed")
            message = f"{stage}: {type(error).__name__}: {error}"[: self.settings.error_message_chars]
            return self._fail(job_id, poller, log, ExitCode.FAILED, STAGE_FAILED, message)
        log.info(
            "stage done",
            seconds=round(time.perf_counter() - started, 3),
            polls=poller.polls,
            progress_writes=progress.writes,
            figures=figures,
        )
        return ExitCode.OK

    def _run_in_job_folder(
        self, job: Job, stage: str, poller: StopPoller, progress: ThrottledProgress, log: _StageLog
    ) -> dict:
        """Download, run the engine, publish unless stopped, report the end; the stage's figures."""
        job_id = job.job_id
        with self._job_folder(job_id) as job_dir:
            self._download(job, stage, job_dir, log)
            log.info("engine starting", device=str(self.device))
            context = StageContext(
                job_dir=job_dir,
                preset=job.preset,
                device=self.device,
                seed=self.settings.seed,
                on_progress=lambda fraction, message: progress(
                    min(fraction, 1.0) * self.settings.stage_work_share, message
                ),
                should_stop=poller,
            )
            figures = self._stage_function(stage)(context)
            if poller.poll_now():
                raise StageCancelled("stop requested before the results were published")
            published = self._upload(job_id, stage, job_dir, poller)
            self._finish(job_id, stage, published, progress)
        return figures

    def run_all(self, job_id: str) -> ExitCode:
        """Every stage in order, each through S3 as in Batch (for debugging); stops at the first non-zero."""
        for stage in STAGE_NAMES:
            code = self.run(stage, job_id)
            if code != ExitCode.OK:
                return code
        return ExitCode.OK

    # -- the steps ---------------------------------------------------------------------------------

    @contextmanager
    def _job_folder(self, job_id: str) -> Iterator[Path]:
        with tempfile.TemporaryDirectory(
            prefix=f"reconflow-{job_id}-", dir=self.settings.work_root
        ) as folder:
            yield Path(folder)

    def _stage_function(self, stage: str) -> StageFunction:
        return self.stage_functions.get(stage) or engine_stage(stage)

    def _download(self, job: Job, stage: str, job_dir: Path, log: _StageLog) -> None:
        """The stage's inputs; the capture as the version accepted when the job was queued."""
        started = time.perf_counter()
        files = 0
        job_id = job.job_id
        for source in STAGE_READS[stage]:
            prefix = source.prefix(job_id)
            folder = source.local_folder(job_dir, job_id)
            if source == INPUT and job.capture_version is not None and job.capture_key:
                name = job.capture_key.removeprefix(prefix)
                files += download_key(
                    self.s3,
                    self.bucket,
                    prefix + layout.check_name(name),
                    folder / name,
                    settings=self.settings.transfer,
                    version_id=job.capture_version,
                )
            elif source.name is None:
                files += len(
                    download_prefix(self.s3, self.bucket, prefix, folder, settings=self.settings.transfer)
                )
            else:
                key = prefix + layout.check_name(source.name)
                files += download_key(
                    self.s3, self.bucket, key, folder / source.name, settings=self.settings.transfer
                )
        log.info("inputs downloaded", files=files, seconds=round(time.perf_counter() - started, 3))

    def _upload(
        self, job_id: str, stage: str, job_dir: Path, poller: StopPoller
    ) -> dict[str, dict[str, str]]:
        """Publish the stage's folders; {prefix: {name: key}} of what was uploaded."""
        published: dict[str, dict[str, str]] = {}
        for source in STAGE_WRITES[stage]:
            prefix = source.prefix(job_id)
            published[prefix] = upload_folder(
                self.s3,
                self.bucket,
                source.local_folder(job_dir, job_id),
                lambda name, prefix=prefix: _checked_key(prefix, name),
                should_stop=poller,
                settings=self.settings.transfer,
                tagging=layout.area_tagging(source.area),
            )
        return published

    def _finish(
        self, job_id: str, stage: str, published: dict[str, dict[str, str]], progress: ThrottledProgress
    ) -> None:
        if stage != EXPORT:
            progress(1.0, f"{stage} done")
            return
        result = published.get(OUTPUT.prefix(job_id), {})
        try:
            self.store.succeed(job_id, result)
        except StateConflict as error:  # cancelled between the upload and now
            raise StageCancelled(str(error)) from error

    def _fail(
        self, job_id: str, poller: StopPoller, log: _StageLog, exit_code: ExitCode, code: str, message: str
    ) -> ExitCode:
        """Record the failure on the job, unless a stop came meanwhile (the cancel finishes the job)."""
        try:
            if poller.poll_now():
                log.info("stage failed after a stop; leaving the job to the cancel", code=code)
                return ExitCode.STOPPED
            self.store.fail(job_id, code, message)
        except Exception:
            log.exception("could not record the failure on the job")
        log.error("stage failed", code=code, error_message=message)
        return exit_code


def _checked_key(prefix: str, name: str) -> str:
    """``prefix + name``, checked to parse back as a key of the job's layout."""
    key = prefix + layout.check_name(name)
    layout.parse_key(key)
    return key


class _StageLog:
    """Log lines that carry the job id and the stage."""

    def __init__(self, job_id: str, stage: str) -> None:
        self._fields = {"job_id": job_id, "stage": stage}

    def info(self, message: str, **values: Any) -> None:
        logger.info(message, extra=logs.fields(**self._fields, **values))

    def error(self, message: str, **values: Any) -> None:
        logger.error(message, extra=logs.fields(**self._fields, **values))

    def exception(self, message: str, **values: Any) -> None:
        logger.exception(message, extra=logs.fields(**self._fields, **values))


# -- the command line ------------------------------------------------------------------------------


def job_id_argument(value: str) -> str:
    """argparse type: a job id exactly as the service makes them."""
    try:
        return parse_job_id(value)
    except InvalidJobId as error:
        raise argparse.ArgumentTypeError(error.message) from error


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """``<stage> --job-id ID`` for each of the six stages and ``run-all --job-id ID``.

    Each parser sets ``handler``: a callable ``(args) -> int`` whose value is the exit code.
    """
    for stage in STAGE_NAMES:
        parser = subparsers.add_parser(stage, help=f"the {stage} stage of a job on S3/DynamoDB (Batch)")
        _add_common(parser)
        parser.set_defaults(handler=lambda args, stage=stage: _command(args, stage))
    parser = subparsers.add_parser(
        "run-all",
        help="all six stages of a QUEUED job on S3/DynamoDB in one process (debugging)",
    )
    _add_common(parser)
    parser.set_defaults(handler=lambda args: _command(args, None))


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--job-id", required=True, type=job_id_argument, help="the job (a lower-case UUID4)")
    parser.add_argument(
        "--device", default=None, help="torch device (default: cuda when available, else cpu)"
    )
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))


def _command(args: argparse.Namespace, stage: str | None) -> int:
    """One stage (or all of them), with JSON logs and SIGTERM turned into a stop."""
    logs.configure(args.log_level)
    runner = StageRunner(device=args.device)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: setattr(runner, "terminated", True))
    try:
        code = runner.run(stage, args.job_id) if stage else runner.run_all(args.job_id)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return int(code)
