"""Job status events on EventBridge: ``ReconFlow Job Status Change`` (DESIGN.md, "Events").

``JobStore`` calls ``StatusEvents.publish`` after every status change it wrote and every stage
start, so users and other systems can react (the template's optional SNS topic gets the terminal
ones). A publish is retried with backoff and jitter (botocore's standard mode,
``EVENT_PUBLISH_ATTEMPTS`` attempts) and never fails the change it reports: the change is in the
table already, and the reconciler and the API read the table, not the events.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from jobstate import aws
from jobstate.settings import Settings

if TYPE_CHECKING:
    from jobstate.jobs import Job

logger = logging.getLogger(__name__)
DETAIL_TYPE = "ReconFlow Job Status Change"


def status_detail(job: Job) -> dict[str, Any]:
    """What an event says about a job: id, owner, status, stage, progress, message, error."""
    return {
        "job_id": job.job_id,
        "owner": job.owner,
        "status": job.status,
        "stage": job.stage,
        "stage_index": job.stage_index,
        "progress": job.progress,
        "message": job.message,
        "error": job.error,
        "updated_at": job.updated_at,
    }


class StatusEvents:
    """Publishes job status events; the EventBridge client is made on the first publish."""

    def __init__(self, settings: Settings | None = None, *, client: Any = None) -> None:
        self.settings = settings or Settings()
        self._client = client
        self.published = 0
        self.failed = 0

    @property
    def client(self) -> Any:
        if self._client is None:
            attempts = replace(self.settings, aws_max_attempts=self.settings.event_publish_attempts)
            self._client = aws.client("events", attempts)
        return self._client

    def publish(self, job: Job) -> bool:
        """Put one event for ``job`` as it is now; False (logged) when EventBridge did not take it."""
        entry = {
            "Source": self.settings.event_source,
            "DetailType": DETAIL_TYPE,
            "Detail": json.dumps(status_detail(job), default=str),
            "Resources": [],
            "EventBusName": self.settings.event_bus_name,
        }
        try:
            answer = self.client.put_events(Entries=[entry])
            if answer.get("FailedEntryCount"):
                failed = answer.get("Entries", [{}])[0]
                raise RuntimeError(f"{failed.get('ErrorCode')}: {failed.get('ErrorMessage')}")
        except Exception as error:  # the status change stands; only its announcement is lost
            self.failed += 1
            logger.warning(
                "job status event not published",
                extra={"job_id": job.job_id, "status": job.status, "error": str(error)},
            )
            return False
        self.published += 1
        return True
