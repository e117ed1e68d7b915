"""Batch "Job State Change" events for the local stack.

AWS puts one on the default event bus as a Batch job moves (RUNNABLE, STARTING, RUNNING, ...); moto
does not. The executor calls ``BatchStateEvents.runnable`` for every job it is handed, so the
template's rule and its pattern decide what reaches the cleanup function, as in AWS. The event is
put from a thread of its own: the executor is called inside moto's SubmitJob.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

LOG = logging.getLogger(__name__)
SOURCE = "aws.batch"
DETAIL_TYPE = "Batch Job State Change"
RUNNABLE = "RUNNABLE"


def state_change_entry(job: Any, status: str) -> dict[str, Any]:
    """The PutEvents entry for moto's Batch ``job`` in ``status`` (detail: the job as DescribeJobs has it)."""
    detail = {**job.describe_short(), "jobQueue": job.job_queue.arn, "status": status}
    return {
        "Source": SOURCE,
        "DetailType": DETAIL_TYPE,
        "Detail": json.dumps(detail, default=str),
        "Resources": [job.arn],
        "EventBusName": "default",
    }


@dataclass
class BatchStateEvents:
    events: Any  # an EventBridge client on the emulated AWS
    sent: list[tuple[str, str]] = field(default_factory=list)  # (Batch job name, status)

    def runnable(self, job: Any) -> None:
        """Put the job's RUNNABLE event, without waiting for it."""
        entry = state_change_entry(job, RUNNABLE)
        put = threading.Thread(target=self._put, args=(job.job_name, entry), name="batch-event", daemon=True)
        put.start()

    def _put(self, job_name: str, entry: dict[str, Any]) -> None:
        try:
            self.events.put_events(Entries=[entry])
            self.sent.append((job_name, RUNNABLE))
        except Exception as error:  # best-effort, as in AWS: the reconciler is the backstop
            LOG.warning("batch state event not put for %s: %s", job_name, error)
