"""The bucket's CORS headers on S3's answers to browser form uploads, as AWS sends them.

moto 5.2.5 adds a bucket's CORS headers to object GETs, PUTs and preflights, but not to the answer
of a POST-object form (the presigned upload), so a browser page could send the capture yet never
read S3's answer. While ``applied()`` is active, that answer carries the headers the bucket's CORS
rules give the request's ``Origin``, refusals included (S3 sends them on errors too).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from moto.s3.responses import S3Response

_patch_lock = threading.Lock()


@contextmanager
def applied() -> Iterator[None]:
    """Add CORS headers to moto's POST-object answers (in this process) while active."""
    with _patch_lock:
        original = S3Response._bucket_response_post

        def with_cors(self: S3Response, request: Any, bucket_name: str) -> Any:
            status, headers, body = original(self, request, bucket_name)
            return status, {**(headers or {}), **self._get_cors_headers_other()}, body

        S3Response._bucket_response_post = with_cors  # type: ignore[method-assign]
    try:
        yield
    finally:
        with _patch_lock:
            S3Response._bucket_response_post = original  # type: ignore[method-assign]
