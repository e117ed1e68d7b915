"""The one place boto3 clients are built: one session, one retry config, cached per process.

botocore's ``standard`` retry mode retries throttling and transient errors with exponential
backoff and full jitter. boto3 reads ``AWS_ENDPOINT_URL`` (and ``AWS_ENDPOINT_URL_<SERVICE>``)
itself, which is how the emulated AWS on loopback is reached; nothing here knows about it.
Lambda code calls these at module level, so the clients are made once per cold start.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Literal

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config

from jobstate.settings import Settings

_lock = threading.Lock()
# Service models read from disk, kept across sessions: reset_clients() makes a new session (fresh
# credentials and endpoint) without reading the JSON models again.
_loader = botocore.loaders.create_loader(os.environ.get("AWS_DATA_PATH"))
_session: boto3.session.Session | None = None
# Clients and resources by (kind, service, attempts); kind is "client" or "resource".
_made: dict[tuple[str, str, int], Any] = {}


def retry_config(settings: Settings | None = None) -> Config:
    """The botocore config every client of the service uses."""
    settings = settings or Settings()
    # total_max_attempts counts the first call too (botocore's ``max_attempts`` would add one).
    return Config(retries={"mode": "standard", "total_max_attempts": settings.aws_max_attempts})


def session() -> boto3.session.Session:
    """The process's boto3 session (one loader, so service models are read once)."""
    global _session
    with _lock:
        if _session is None:
            core = botocore.session.get_session()
            core.register_component("data_loader", _loader)
            _session = boto3.session.Session(botocore_session=core)
            # boto3 appends its data folder to the loader's search paths on every new session.
            _loader.search_paths[:] = list(dict.fromkeys(_loader.search_paths))
        return _session


def _cached(kind: Literal["client", "resource"], service: str, settings: Settings | None) -> Any:
    """``session().client`` or ``session().resource`` for ``service``, made once per process."""
    settings = settings or Settings()
    key = (kind, service, settings.aws_max_attempts)
    found = _made.get(key)
    if found is None:
        made = getattr(session(), kind)(service, config=retry_config(settings))
        with _lock:
            found = _made.setdefault(key, made)
    return found


def client(service: str, settings: Settings | None = None) -> Any:
    """A low-level client for ``service``, made once per process (clients are thread-safe)."""
    return _cached("client", service, settings)


def resource(service: str, settings: Settings | None = None) -> Any:
    """A boto3 resource for ``service``, made once per process (resources are not thread-safe)."""
    return _cached("resource", service, settings)


def reset_clients() -> None:
    """Forget the session and every cached client (tests switch credentials and mocks)."""
    global _session
    with _lock:
        _session = None
        _made.clear()
