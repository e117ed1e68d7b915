"""Logger and Metrics shared by every handler (one instance each per process).

No in-code tracing: the functions run with Lambda's active tracing (``Tracing: Active``), which
records each invocation without any SDK in the bundle. powertools' Tracer would import the
X-Ray SDK (in maintenance mode since 2026-02-25, unsupported from 2027-02-25), and with it
add about half of a cold start. The template sets ``POWERTOOLS_SERVICE_NAME`` and
``POWERTOOLS_METRICS_NAMESPACE``; the defaults here keep a handler usable without them.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "reconflow")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "ReconFlow")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


def count(name: str, value: int = 1) -> None:
    """Add ``value`` to the counter metric ``name`` of this invocation."""
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
