"""The uploads named by an S3 "object created" notification, in any of the shapes it arrives in.

- EventBridge "Object Created" (``source`` aws.s3): one object in ``detail``.
- The classic S3 notification: ``Records[].s3`` (several objects per event).
- Either of them as the body of SQS messages (``Records[].body``), which is how the local
  stack delivers S3 notifications.
Keys arrive URL-encoded ("red flower.zip" -> "red+flower.zip") and are decoded here. Anything
else (other event names, the ``s3:TestEvent`` S3 sends when a notification is configured) is
skipped with a log line.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import S3EventBridgeNotificationEvent
from aws_lambda_powertools.utilities.data_classes.s3_event import S3EventRecord

from handlers.observability import logger

OBJECT_CREATED_DETAIL_TYPE = "Object Created"
S3_SOURCE = "aws.s3"
UNKNOWN_UPLOADER = "s3:unknown"
# SQS bodies may wrap a notification; deeper nesting than this is not a shape AWS sends.
MAX_NESTING = 2


@dataclass(frozen=True)
class Upload:
    bucket: str
    key: str  # decoded
    size: int | None
    uploader: str  # the principal that wrote the object, as S3 reports it
    version: str | None = None  # the object's S3 version id (a versioned bucket)


def _size(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _version(value: Any) -> str | None:
    """An S3 version id as notifications carry it; "null" (an unversioned write) counts as none."""
    return value if isinstance(value, str) and value and value != "null" and len(value) <= 1024 else None


def _from_eventbridge(event: Mapping[str, Any]) -> Iterator[Upload]:
    detail = S3EventBridgeNotificationEvent(dict(event)).detail
    yield Upload(
        bucket=detail.bucket.name,
        key=detail.object.key,  # the data class decodes it
        size=_size(detail.object.get("size")),
        uploader=detail.get("requester") or UNKNOWN_UPLOADER,
        version=_version(detail.object.get("version-id")),
    )


def _from_s3_record(raw: Mapping[str, Any]) -> Iterator[Upload]:
    record = S3EventRecord(dict(raw))
    if not record.event_name.startswith("ObjectCreated:"):
        logger.info("not an object-created record; skipped", extra={"event_name": record.event_name})
        return
    s3 = record.s3
    yield Upload(
        bucket=s3.bucket.name,
        key=unquote_plus(s3.get_object.key),
        size=_size(s3.get_object.get("size")),
        uploader=(record.get("userIdentity") or {}).get("principalId") or UNKNOWN_UPLOADER,
        version=_version(s3.get_object.get("versionId")),
    )


def uploads_in(event: Any, *, depth: int = 0) -> Iterator[Upload]:
    """Every created object the event names. A malformed part is logged and skipped, never raised:
    sending the same bytes again would not make it readable.
    """
    if not isinstance(event, Mapping):
        logger.warning("event is not an object; skipped")
        return
    if event.get("source") == S3_SOURCE and event.get("detail-type") == OBJECT_CREATED_DETAIL_TYPE:
        yield from _tolerant(_from_eventbridge, event)
        return
    records = event.get("Records")
    if not isinstance(records, list):
        logger.warning("not an S3 notification; skipped", extra={"event_keys": sorted(map(str, event))[:10]})
        return
    for record in records:
        if isinstance(record, Mapping) and "s3" in record:
            yield from _tolerant(_from_s3_record, record)
        elif isinstance(record, Mapping) and "body" in record and depth < MAX_NESTING:
            yield from _tolerant(lambda r: uploads_in(json.loads(r["body"]), depth=depth + 1), record)
        else:
            logger.warning("record without an S3 notification; skipped")


Parser = Callable[[Mapping[str, Any]], Iterator[Upload]]


def _tolerant(parse: Parser, part: Mapping[str, Any]) -> Iterator[Upload]:
    try:
        found = list(parse(part))
    except (KeyError, TypeError, ValueError, AttributeError):
        logger.warning("malformed notification; skipped", exc_info=True)
        return
    yield from found
