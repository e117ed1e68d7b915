"""Make moto 5.2.5's Step Functions ⇄ Batch integration work, and let a caller run the Batch jobs.

Two gaps in moto's ``batch:submitJob.sync`` integration are closed while ``patched()`` is active:

- parameter names: the state machine writes the Step Functions names (``JobName``, ``JobQueue``,
  ``JobDefinition``, ``Parameters``, ...); moto hands them to boto3's ``submit_job`` as they are,
  which wants ``jobName``, ``jobQueue``, ... . They are converted through Batch's own service model,
  as LocalStack does (and as AWS does behind the optimised integration);
- response names: AWS returns the Batch answers to the state machine in Step Functions casing
  (``JobId``, ``Status``, ``StatusReason``); moto returns boto3's (``jobId``, ``status``), so a
  ``ResultSelector`` on ``$.JobId`` (and moto's own sync poller) fail. They are converted back.

A third: moto's ``Job`` appends ``AWS_BATCH_JOB_ID`` to the submit-time environment overrides on
every ``describe_jobs``, so a job polled by ``.sync`` every half second grows its description
(and the task's output, which Step Functions limits to 256 KiB) without bound; the environment is
built on a copy instead. A fourth: moto's full description drops the container's ``exitCode``
(a failed task's Cause then cannot say how the container ended); it is put back.

moto's no-Docker Batch backend (``BatchSimpleBackend``) marks every submitted job finished at once.
With an ``executor``, ``submit_job`` creates and registers the ``moto.batch.models.Job`` as moto does
and hands it to ``executor(job)``, which decides the outcome: it starts the attempt
(``start_attempt``) and later calls ``finish(job, success=...)``, on any thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

import botocore.session
from botocore.model import OperationModel, ServiceModel
from moto.batch.exceptions import ClientException
from moto.batch.models import Job
from moto.batch_simple.models import BatchSimpleBackend
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_batch import (
    StateTaskServiceBatch,
)

Executor = Callable[[Job], None]
_patch_lock = threading.Lock()


@cache
def _batch_model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("batch")


def _operation(service_action_name: str) -> OperationModel:
    """``submit_job`` / ``describe_jobs`` / ``SubmitJob`` -> Batch's operation model."""
    wanted = service_action_name.replace("_", "").lower()
    for name in _batch_model().operation_names:
        if name.lower() == wanted:
            return _batch_model().operation_model(name)
    raise KeyError(f"Batch has no operation {service_action_name!r}")


def _normalise_parameters(
    self: StateTaskServiceBatch,
    parameters: dict,
    boto_service_name: str | None = None,
    service_action_name: str | None = None,
) -> None:
    action = service_action_name or self._get_boto_service_action()
    self._to_boto_request(parameters, _operation(action).input_shape)


def _normalise_response(
    self: StateTaskServiceBatch,
    response: Any,
    boto_service_name: str | None = None,
    service_action_name: str | None = None,
) -> None:
    action = service_action_name or self._get_boto_service_action()
    self._from_boto_response(response, _operation(action).output_shape)


def _container_property(job: Job, name: str, default: Any) -> Any:
    if name != "environment":
        return _ORIGINAL_CONTAINER_PROPERTY(job, name, default)
    environment = [dict(item) for item in job.container_overrides.get("environment", [])]
    overridden = {item["name"] for item in environment}
    definition = (job.job_definition.container_properties or {}).get("environment", [])
    environment += [dict(item) for item in definition if item["name"] not in overridden]
    environment.append({"name": "AWS_BATCH_JOB_ID", "value": job.job_id})
    return environment


_ORIGINAL_CONTAINER_PROPERTY = Job._get_container_property


def _container_details(job: Job) -> dict[str, Any]:
    """moto's container details, plus the ``exitCode`` Batch reports once the container stopped
    (moto's ``describe`` replaces the short description's container, exit code included, with these)."""
    details = _ORIGINAL_CONTAINER_DETAILS(job)
    if job.exit_code is not None:
        details["exitCode"] = job.exit_code
    return details


_ORIGINAL_CONTAINER_DETAILS = Job._container_details


# --- running the jobs -------------------------------------------------------------------------


def start_attempt(job: Job) -> None:
    """What Batch records when the job's container starts (what ``describe_jobs`` then shows)."""
    job.job_started_at = datetime.now()
    job.log_stream_name = job._stream_name
    job._start_attempt()


def finish(job: Job, *, success: bool, reason: str | None = None, exit_code: int | None = None) -> None:
    """End the job's attempt: SUCCEEDED or FAILED, with the container's exit code and reason."""
    if exit_code is not None:
        job.exit_code = exit_code
    if reason is not None:
        job.job_stopped_reason = reason
    job._mark_stopped(success=success)


def _submit_to(executor: Executor) -> Callable[..., tuple[str, str, str]]:
    def submit_job(
        backend: BatchSimpleBackend,
        job_name: str,
        job_def_id: str,
        job_queue: str,
        array_properties: dict[str, Any],
        depends_on: list[dict[str, str]] | None = None,
        container_overrides: dict[str, Any] | None = None,
        eks_properties_override: dict[str, Any] | None = None,
        timeout: dict[str, int] | None = None,
        parameters: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
    ) -> tuple[str, str, str]:
        if array_properties and "size" in array_properties:
            raise ClientException("the local Batch executor runs single jobs, not array jobs")
        job_def = backend.get_job_definition(job_def_id)
        if job_def is None:
            raise ClientException(f"Job definition {job_def_id} does not exist")
        queue = backend.get_job_queue(job_queue)
        if queue is None:
            raise ClientException(f"Job queue {job_queue} does not exist")
        job = Job(
            job_name,
            job_def,
            queue,
            backend,
            log_backend=backend.logs_backend,
            container_overrides=container_overrides,
            eks_properties_override=eks_properties_override,
            depends_on=depends_on,
            all_jobs=backend._jobs,
            timeout=timeout,
            array_properties=array_properties or {},
            parameters=parameters,
            tags=tags,
        )
        backend.backend._jobs[job.job_id] = job
        executor(job)
        return job_name, job.job_id, job.arn

    return submit_job


@contextmanager
def patched(executor: Executor | None = None) -> Iterator[None]:
    """While active: the integration's names are converted, and ``executor`` (if given) runs each job.

    Patches classes, so it applies to every moto backend in the process (``mock_aws`` or a
    ``ThreadedMotoServer``). Not re-entrant.
    """
    replacements: list[tuple[type, str, Any]] = [
        (StateTaskServiceBatch, "_normalise_parameters", _normalise_parameters),
        (StateTaskServiceBatch, "_normalise_response", _normalise_response),
        (Job, "_get_container_property", _container_property),
        (Job, "_container_details", _container_details),
    ]
    if executor is not None:
        replacements.append((BatchSimpleBackend, "submit_job", _submit_to(executor)))
    with _patch_lock:
        saved = [(owner, name, owner.__dict__.get(name)) for owner, name, _ in replacements]
        for owner, name, replacement in replacements:
            setattr(owner, name, replacement)
    try:
        yield
    finally:
        with _patch_lock:
            for owner, name, original in saved:
                if original is None:
                    delattr(owner, name)
                else:
                    setattr(owner, name, original)


# --- an executor for tests: decide each job's outcome from its parameters -----------------------


@dataclass(frozen=True)
class SubmittedJob:
    """One ``SubmitJob`` as the executor saw it."""

    batch_job_id: str
    job_name: str
    parameters: dict[str, str]
    succeeded: bool


@dataclass
class OutcomeExecutor:
    """Finishes each job at once with ``outcome(parameters)`` (True: SUCCEEDED) and records it.

    ``outcome`` may also return a string: the job FAILS with that status reason.
    """

    outcome: Callable[[Mapping[str, str]], bool | str] = lambda parameters: True
    exit_code_on_failure: int = 1
    submitted: list[SubmittedJob] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, job: Job) -> None:
        parameters = dict(job.parameters or {})
        decided = self.outcome(parameters)
        success = decided is True
        with self._lock:
            self.submitted.append(SubmittedJob(job.job_id, job.job_name, parameters, success))
        start_attempt(job)
        if success:
            finish(job, success=True, exit_code=0)
        else:
            reason = decided if isinstance(decided, str) else "Essential container in task exited"
            finish(job, success=False, reason=reason, exit_code=self.exit_code_on_failure)
