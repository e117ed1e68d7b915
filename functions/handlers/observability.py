"""Logger, Tracer and Metrics shared by every handler (one instance each per process).

The template sets ``POWERTOOLS_SERVICE_NAME`` and ``POWERTOOLS_METRICS_NAMESPACE``; the defaults
here only keep a handler usable when it runs without them (a test, a script).
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "reconflow")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "ReconFlow")

logger = Logger(service=SERVICE)
# Only botocore is patched (the AWS calls are what a trace should show); patch_all would import
# the patchers of a dozen libraries these functions never use.
tracer = Tracer(service=SERVICE, patch_modules=("botocore",))
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


def count(name: str, value: int = 1) -> None:
    """Add ``value`` to the counter metric ``name`` of this invocation."""
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
