"""A job's statuses and their groups (DESIGN.md). Pure Python, so a client can read them without
the AWS SDK that ``jobs`` (the table's owner) brings in.

CREATED -> QUEUED -> RUNNING -> SUCCEEDED | FAILED; QUEUED/RUNNING -> CANCELLING -> CANCELLED.
"""

from __future__ import annotations

CREATED = "CREATED"
QUEUED = "QUEUED"
RUNNING = "RUNNING"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
CANCELLING = "CANCELLING"
CANCELLED = "CANCELLED"
STATUSES: tuple[str, ...] = (CREATED, QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLING, CANCELLED)
TERMINAL: frozenset[str] = frozenset({SUCCEEDED, FAILED, CANCELLED})
ACTIVE: tuple[str, ...] = (QUEUED, RUNNING)  # the work may run; a cancel may be requested
INITIAL_STATUSES: tuple[str, ...] = (CREATED, QUEUED)
