"""The local stack's view of the job status events (``ReconFlow Job Status Change``).

The job-state core publishes one event per status change and stage start on the default bus
(``jobstate.events``). On AWS the template's optional SNS topic subscribes to the terminal ones;
here a rule on moto's bus with the same source and detail type feeds a local queue, and a thread
keeps every event in ``events`` and appends it as one JSON line to ``{work_dir}/job-events.log``.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobstate.events import DETAIL_TYPE
from reconflow.local.notifications import ensure_queue

LOG = logging.getLogger(__name__)
RULE_NAME = "reconflow-local-job-status"


@dataclass
class JobEventLog:
    events_client: Any
    sqs: Any
    source: str
    log_path: Path
    # Long-poll wait per ReceiveMessage call (seconds): bounds delivery latency and stop time.
    wait_time_s: int = 1
    events: list[dict[str, Any]] = field(default_factory=list)  # the ``detail`` of each event
    _queue_url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._queue_url, queue_arn = ensure_queue(self.sqs, "job-status-events")
        pattern = {"source": [self.source], "detail-type": [DETAIL_TYPE]}
        self.events_client.put_rule(Name=RULE_NAME, EventPattern=json.dumps(pattern), State="ENABLED")
        self.events_client.put_targets(Rule=RULE_NAME, Targets=[{"Id": "local-job-events", "Arn": queue_arn}])
        self._thread = threading.Thread(target=self._poll, name="job-status-events", daemon=True)
        self._thread.start()

    def for_job(self, job_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [event for event in self.events if event.get("job_id") == job_id]

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                answer = self.sqs.receive_message(
                    QueueUrl=self._queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=self.wait_time_s
                )
            except Exception as error:  # the server is going away; stop quietly when asked to
                if not self._stop.is_set():
                    LOG.warning("polling the job status events failed: %s", error)
                    self._stop.wait(self.wait_time_s)
                continue
            for message in answer.get("Messages", []):
                detail = json.loads(message["Body"]).get("detail", {})
                with self._lock:
                    self.events.append(detail)
                    with self.log_path.open("a", encoding="utf-8") as log:
                        log.write(json.dumps(detail) + "\n")
                LOG.info(
                    "job %s %s %s", detail.get("job_id"), detail.get("status"), detail.get("stage") or ""
                )
                self.sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"])

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.wait_time_s + 5)
