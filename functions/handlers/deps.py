"""The settings, the job store and the AWS clients of a Lambda process, built in one place.

Each is made the first time a function uses it and kept for the life of the process: the API
never pays for a Step Functions client, nor the upload function for an S3 one (a client costs
its service model's load; the imports are paid at module import either way). Tests replace
the whole set with ``use`` (a store with a fake clock, say) or drop it with ``reset``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import cached_property
from typing import Any

from botocore.config import Config

from jobstate import aws
from jobstate.jobs import JobStore
from jobstate.settings import Settings

# Presigned URLs and POST forms signed with SigV4 (botocore's S3 default for presigning is the
# legacy SigV2, which regions opened after 2014 refuse).
PRESIGN_CONFIG = Config(signature_version="s3v4")


class Deps:
    """What the handlers work with; ``clock`` (epoch seconds) is the one the store uses too."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        clock: Callable[[], float] = time.time,
        jobs: JobStore | None = None,
        s3: Any = None,
        sfn: Any = None,
        batch: Any = None,
    ) -> None:
        self.settings = settings or Settings()
        self.clock = clock
        for name, given in (("jobs", jobs), ("s3", s3), ("sfn", sfn), ("batch", batch)):
            if given is not None:
                self.__dict__[name] = given  # takes the place of the cached property

    @cached_property
    def jobs(self) -> JobStore:
        return JobStore(settings=self.settings, clock=self.clock)

    @cached_property
    def s3(self) -> Any:
        return aws.session().client("s3", config=aws.retry_config(self.settings).merge(PRESIGN_CONFIG))

    @cached_property
    def sfn(self) -> Any:
        return aws.client("stepfunctions", self.settings)

    @cached_property
    def batch(self) -> Any:
        return aws.client("batch", self.settings)


def build(settings: Settings | None = None, *, clock: Callable[[], float] = time.time) -> Deps:
    """Fresh dependencies from the environment (or from ``settings``)."""
    return Deps(settings, clock=clock)


_lock = threading.Lock()
_current: Deps | None = None


def current() -> Deps:
    """This process's dependencies, made on first use."""
    global _current
    with _lock:
        if _current is None:
            _current = build()
        return _current


def use(value: Deps | None) -> None:
    """Make ``value`` the process's dependencies (``None``: build afresh on next use)."""
    global _current
    with _lock:
        _current = value


def reset() -> None:
    use(None)
