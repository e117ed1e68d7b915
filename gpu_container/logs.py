"""Structured logs for the container: one JSON object per line on stderr (CloudWatch reads them as is).

Fields given as ``extra={"fields": {...}}`` are merged into the record, so a log line of the stage
runner carries ``job_id``, ``stage`` and the figures it reports, searchable with Logs Insights.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

SERVICE = "reconflow-gpu"
FIELDS_ATTRIBUTE = "fields"


class JsonFormatter(logging.Formatter):
    """``{"timestamp", "level", "logger", "service", "message", ...fields, "exception"?}``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "service": SERVICE,
            "message": record.getMessage(),
        }
        entry |= getattr(record, FIELDS_ATTRIBUTE, None) or {}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str = "INFO") -> None:
    """Send the root logger's records to stderr as JSON lines (idempotent)."""
    root = logging.getLogger()
    if not any(isinstance(handler.formatter, JsonFormatter) for handler in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("botocore", "boto3", "s3transfer", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def fields(**values: Any) -> dict[str, Any]:
    """``extra=`` for a log call: ``logger.info("stage done", extra=fields(job_id=..., seconds=...))``."""
    return {FIELDS_ATTRIBUTE: values}
