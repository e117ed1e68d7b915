"""The jobs table: every read and every conditional write of a job and its cancel flags.

Items (DESIGN.md, "DynamoDB: one table"): ``pk`` = job id and ``sk`` one of ``job``,
``cancel#request``, ``cancel#confirm``. Every status change is a conditional write on the
current status, so two writers never undo each other; ``progress`` only grows while the job
runs. Callers never build a ConditionExpression: they call a method named for what they mean.

The store uses the low-level DynamoDB client (not the boto3 resource): it is what the Lambda
handlers create anyway, and it keeps a cold start to one service model.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from jobstate import aws
from jobstate.errors import CancelConflict, InvalidRequest, JobNotFound, StateConflict
from jobstate.events import StatusEvents
from jobstate.ids import new_job_id, parse_job_id
from jobstate.settings import Settings
from jobstate.stages import DEFAULT_PRESET, PRESETS, stage_named
from jobstate.statuses import (  # also importable from here, as before
    ACTIVE,
    CANCELLED,
    CANCELLING,
    CREATED,
    FAILED,
    INITIAL_STATUSES,
    QUEUED,
    RUNNING,
    STATUSES,
    SUCCEEDED,
    TERMINAL,
)

JOB_SK = "job"
CANCEL_REQUEST_SK = "cancel#request"
CANCEL_CONFIRM_SK = "cancel#confirm"
OWNER_INDEX = "by-owner"
STATUS_INDEX = "by-status"


MAX_NAME_LENGTH = 200
MAX_OWNER_LENGTH = 256
MAX_TOKEN_LENGTH = 128
MAX_MESSAGE_LENGTH = 1000
MAX_ERROR_CODE_LENGTH = 100
TOKEN_BYTES = 24  # secrets.token_urlsafe(24): 32 characters, 192 random bits
SECONDS_PER_DAY = 86_400
# begin_stage: bounded retries when a concurrent progress write changes the condition's inputs.
BEGIN_STAGE_ATTEMPTS = 3

_CONDITION_FAILED = "ConditionalCheckFailedException"
_TRANSACTION_CANCELLED = "TransactionCanceledException"
_CURSOR_KEYS = frozenset({"pk", "sk", "owner", "created_at"})


def iso_utc(epoch_s: float) -> str:
    """``2026-11-29T19:20:33.123Z`` for an epoch time in seconds."""
    return datetime.fromtimestamp(epoch_s, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _progress_number(progress: float) -> Decimal:
    """A 0-100 figure with one decimal, as DynamoDB stores it."""
    value = round(float(progress), 1)
    if not 0.0 <= value <= 100.0:
        raise InvalidRequest("progress must be between 0 and 100")
    return Decimal(str(value))


def _preset(value: object) -> str:
    if value not in PRESETS:
        raise InvalidRequest(f"preset must be one of {', '.join(PRESETS)}")
    return str(value)


def _text(value: object, what: str, max_length: int, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not allow_empty) or len(value) > max_length:
        raise InvalidRequest(f"{what} must be a string of at most {max_length} characters")
    return value


# --- DynamoDB attribute values <-> Python ------------------------------------------------------

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _to_attr(value: Any) -> dict[str, Any]:
    return _serializer.serialize(value)


def _from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """A table item as Python values (numbers come back as Decimal)."""
    return {name: _deserializer.deserialize(attr) for name, attr in item.items()}


def _values(**values: Any) -> dict[str, Any]:
    return {f":{name}": _to_attr(value) for name, value in values.items()}


def _item(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _to_attr(value) for name, value in values.items()}


def _key(job_id: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": job_id}, "sk": {"S": sk}}


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


# --- what callers get back ------------------------------------------------------------------


# Job item fields no caller sees: who owns it, its execution, and the capture object it accepted.
INTERNAL_JOB_FIELDS = ("owner", "execution_arn", "capture_key", "capture_version")


@dataclass(frozen=True)
class Job:
    """A job item as callers see it (a docstring also spares dataclass an inspect.signature)."""

    job_id: str
    owner: str
    status: str
    stage: str | None = None
    stage_index: int | None = None
    progress: float = 0.0
    message: str = ""
    preset: str = DEFAULT_PRESET
    name: str | None = None
    created_at: str = ""
    updated_at: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    execution_arn: str | None = None
    result: dict[str, str] | None = None
    error: dict[str, str] | None = None
    # A cancelled job: what the purge deleted (objects, versions, delete_markers, ...).
    purged: dict[str, int] | None = field(default=None)
    # The capture accepted when the job was queued: its key and S3 version (the stages read that
    # version, so a later overwrite of input/ changes nothing).
    capture_key: str | None = None
    capture_version: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> Job:
        """A job from a deserialised table item (unknown attributes are ignored)."""
        progress = item.get("progress", 0)
        return cls(
            job_id=item["pk"],
            owner=item["owner"],
            status=item["status"],
            stage=item.get("stage"),
            stage_index=int(item["stage_index"]) if item.get("stage_index") is not None else None,
            progress=float(progress),
            message=item.get("message", ""),
            preset=item.get("preset", DEFAULT_PRESET),
            name=item.get("name"),
            created_at=item.get("created_at", ""),
            updated_at=item.get("updated_at", ""),
            started_at=item.get("started_at"),
            finished_at=item.get("finished_at"),
            execution_arn=item.get("execution_arn"),
            result=item.get("result"),
            error=item.get("error"),
            purged={k: int(v) for k, v in item["purged"].items()} if item.get("purged") else None,
            capture_key=item.get("capture_key"),
            capture_version=item.get("capture_version"),
        )

    def to_public(self) -> dict[str, Any]:
        """The JSON-ready view a caller may see: no owner, execution ARN or table keys."""
        public = asdict(self)
        for internal in INTERNAL_JOB_FIELDS:
            public.pop(internal)
        return public


@dataclass(frozen=True)
class CancelRequest:
    """A pending cancel: the token a confirm must bring, and when it stops counting."""

    token: str
    expires_at: int  # epoch seconds
    requested_by: str = ""
    requested_at: str = ""


# --- the store ------------------------------------------------------------------------------


class JobStore:
    """The jobs table. ``clock`` returns epoch seconds; tests pass a fake one to expire flags.

    Every status change it writes (and every stage start) is announced through ``events``
    (``ReconFlow Job Status Change`` on EventBridge), after the write and without failing it.
    """

    def __init__(
        self,
        table_name: str | None = None,
        *,
        dynamodb: Any = None,
        clock: Callable[[], float] = time.time,
        settings: Settings | None = None,
        events: StatusEvents | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.table_name = table_name or self.settings.table_name
        self._db = dynamodb if dynamodb is not None else aws.client("dynamodb", self.settings)
        self._clock = clock
        self.events = events if events is not None else StatusEvents(self.settings)

    # -- reading --------------------------------------------------------------------------------

    def get(self, job_id: str, *, consistent: bool = False) -> Job:
        """The job; JobNotFound when there is none."""
        item = self._get_item(parse_job_id(job_id), JOB_SK, consistent=consistent)
        if item is None:
            raise JobNotFound("no such job")
        return Job.from_item(item)

    def get_owned(self, job_id: str, owner: str, *, consistent: bool = True) -> Job:
        """The job if ``owner`` made it; JobNotFound otherwise (never says which)."""
        job = self.get(job_id, consistent=consistent)
        if not hmac.compare_digest(job.owner.encode(), str(owner).encode()):
            raise JobNotFound("no such job")
        return job

    def list_for_owner(
        self, owner: str, *, limit: int, cursor: str | None = None
    ) -> tuple[list[Job], str | None]:
        """One page of ``owner``'s jobs, newest first, and the cursor of the next page (or None)."""
        owner = _text(owner, "owner", MAX_OWNER_LENGTH)
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not 1 <= limit <= self.settings.list_page_size_max
        ):
            raise InvalidRequest(f"limit must be between 1 and {self.settings.list_page_size_max}")
        query: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": OWNER_INDEX,
            "KeyConditionExpression": "#owner = :owner",
            "ExpressionAttributeNames": {"#owner": "owner"},
            "ExpressionAttributeValues": _values(owner=owner),
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if cursor is not None:
            query["ExclusiveStartKey"] = _item(_decode_cursor(cursor, owner))
        page = self._db.query(**query)
        jobs = [Job.from_item(_from_item(item)) for item in page.get("Items", [])]
        last = page.get("LastEvaluatedKey")
        return jobs, _encode_cursor(_from_item(last)) if last else None

    def list_by_status(self, status: str, *, updated_before: float | None = None) -> Iterator[Job]:
        """Every job in ``status`` (oldest update first), optionally last updated before an epoch time."""
        if status not in STATUSES:
            raise InvalidRequest(f"unknown status {status!r}")
        condition = "#status = :status"
        values = {"status": status}
        if updated_before is not None:
            condition += " AND updated_at < :before"
            values["before"] = iso_utc(updated_before)
        paginator = self._db.get_paginator("query")
        for page in paginator.paginate(
            TableName=self.table_name,
            IndexName=STATUS_INDEX,
            KeyConditionExpression=condition,
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=_values(**values),
        ):
            for item in page.get("Items", []):
                yield Job.from_item(_from_item(item))

    def pending_cancel(self, job_id: str) -> CancelRequest | None:
        """The unexpired cancel request of the job, if any (an expired one counts as absent)."""
        item = self._get_item(parse_job_id(job_id), CANCEL_REQUEST_SK, consistent=True)
        if item is None or not self._unexpired(item):
            return None
        return CancelRequest(
            token=item["token"],
            expires_at=int(item["expires_at"]),
            requested_by=item.get("requested_by", ""),
            requested_at=item.get("requested_at", ""),
        )

    def should_stop(self, job_id: str) -> bool:
        """For the running container: stop unless QUEUED/RUNNING with no unexpired confirmed cancel.

        One strongly consistent Query of the job's partition (the job item and its flags).
        """
        page = self._db.query(
            TableName=self.table_name,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues=_values(pk=parse_job_id(job_id)),
            ProjectionExpression="sk, #status, expires_at",
            ExpressionAttributeNames={"#status": "status"},
            ConsistentRead=True,
        )
        items = {entry["sk"]: entry for entry in map(_from_item, page.get("Items", []))}
        job = items.get(JOB_SK)
        if job is None or job.get("status") not in ACTIVE:
            return True
        confirm = items.get(CANCEL_CONFIRM_SK)
        return confirm is not None and self._unexpired(confirm)

    # -- creating and moving along --------------------------------------------------------------

    def create(
        self,
        owner: str,
        preset: str = DEFAULT_PRESET,
        name: str | None = None,
        *,
        job_id: str | None = None,
        status: str = CREATED,
    ) -> Job:
        """A new job item; StateConflict when one with that id exists already."""
        if status not in INITIAL_STATUSES:
            raise InvalidRequest(f"a job starts as one of {INITIAL_STATUSES}")
        job_id = parse_job_id(job_id) if job_id is not None else new_job_id()
        now = iso_utc(self._clock())
        job = Job(
            job_id=job_id,
            owner=_text(owner, "owner", MAX_OWNER_LENGTH),
            status=status,
            preset=_preset(preset),
            name=None if name is None else _text(name, "name", MAX_NAME_LENGTH, allow_empty=True),
            created_at=now,
            updated_at=now,
        )
        item = {"pk": job_id, "sk": JOB_SK, "owner": job.owner, "status": status, "progress": Decimal(0)}
        item |= {"preset": job.preset, "created_at": now, "updated_at": now, "message": ""}
        if name is not None:
            item["name"] = name
        try:
            self._db.put_item(
                TableName=self.table_name,
                Item=_item(item),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as error:
            if _error_code(error) == _CONDITION_FAILED:
                raise StateConflict("a job with this id exists already") from error
            raise
        return job

    def mark_queued(
        self, job_id: str, *, capture_key: str | None = None, capture_version: str | None = None
    ) -> bool:
        """CREATED -> QUEUED (the capture arrived); False when the job was not CREATED.

        ``capture_key``/``capture_version`` record the object accepted (the stages read that version).
        """
        capture = {"capture_key": capture_key} if capture_key else {}
        if capture_key and capture_version:
            capture["capture_version"] = capture_version
        return self._transition(job_id, (CREATED,), QUEUED, message="queued", extra=capture) is not None

    def set_capture(self, job_id: str, capture_key: str, capture_version: str | None) -> None:
        """Record the accepted capture of a QUEUED job that has none yet (made QUEUED by an upload)."""
        values = {"key": capture_key}
        update = "SET capture_key = :key"
        if capture_version:
            update += ", capture_version = :version"
            values["version"] = capture_version
        self._update(
            job_id,
            update,
            "#status = :queued AND attribute_not_exists(capture_key)",
            _values(queued=QUEUED, **values),
            attribute_names={"#status": "status"},
        )

    def set_execution(self, job_id: str, execution_arn: str) -> None:
        """Record the Step Functions execution running the job."""
        self._update(
            job_id,
            "SET execution_arn = :arn, updated_at = :now",
            "attribute_exists(pk)",
            _values(arn=_text(execution_arn, "execution_arn", 2048), now=self._now()),
            missing=JobNotFound("no such job"),
        )

    def begin_stage(self, job_id: str, stage_name: str) -> Job:
        """QUEUED/RUNNING -> RUNNING at the start of a stage; StateConflict once the job is no longer so.

        Progress moves to the stage's start figure but never down (a stage rerun after a later
        progress write keeps the higher figure); ``started_at`` is set once.
        """
        try:
            stage = stage_named(stage_name)
        except KeyError as error:
            raise InvalidRequest(f"unknown stage {stage_name!r}") from error
        start = _progress_number(stage.progress_start)
        active = "#status IN (:queued, :running)"
        common = "SET #status = :running, stage = :stage, stage_index = :index, message = :message, "
        common += "updated_at = :now, started_at = if_not_exists(started_at, :now)"
        for _ in range(BEGIN_STAGE_ATTEMPTS):
            values = _values(
                queued=QUEUED,
                running=RUNNING,
                stage=stage.name,
                index=stage.index,
                message=f"{stage.name} started",
                now=self._now(),
                start=start,
            )
            # Either raise progress to the stage start, or leave a higher figure as it is.
            for update, condition in (
                (common + ", progress = :start", f"{active} AND progress <= :start"),
                (common, f"{active} AND progress > :start"),
            ):
                job = self._update(job_id, update, condition, values, attribute_names={"#status": "status"})
                if job is not None:
                    self.events.publish(job)
                    return job
            current = self.get(job_id, consistent=True)
            if current.status not in ACTIVE:
                raise StateConflict(f"job is {current.status}, not QUEUED or RUNNING")
        raise StateConflict("job changed while its stage began; try again")

    def note(self, job_id: str, message: str, *, before_stage: str | None = None) -> bool:
        """Set the message of a QUEUED/RUNNING job (no status or progress change); False otherwise.

        With ``before_stage``, only while the job has not begun that stage yet: a note about the wait
        for a stage (delivered late, say) never overwrites what the running stage reports.
        """
        values = _values(
            queued=QUEUED, running=RUNNING, message=str(message)[:MAX_MESSAGE_LENGTH], now=self._now()
        )
        condition = "#status IN (:queued, :running)"
        if before_stage is not None:
            try:
                values |= _values(index=stage_named(before_stage).index)
            except KeyError as error:
                raise InvalidRequest(f"unknown stage {before_stage!r}") from error
            condition += " AND (attribute_not_exists(stage_index) OR stage_index < :index)"
        job = self._update(
            job_id,
            "SET message = :message, updated_at = :now",
            condition,
            values,
            attribute_names={"#status": "status"},
        )
        return job is not None

    def report_progress(self, job_id: str, progress: float, message: str) -> bool:
        """Write progress while RUNNING and not below the stored figure; False when refused."""
        values = _values(
            running=RUNNING,
            progress=_progress_number(progress),
            message=str(message)[:MAX_MESSAGE_LENGTH],  # a long message is cut, never refused
            now=self._now(),
        )
        job = self._update(
            job_id,
            "SET progress = :progress, message = :message, updated_at = :now",
            "#status = :running AND progress <= :progress",
            values,
            attribute_names={"#status": "status"},
        )
        return job is not None

    # -- the two-step cancel --------------------------------------------------------------------

    def request_cancel(self, job_id: str, owner: str) -> CancelRequest:
        """A pending cancel with a fresh token (a repeat replaces it); the job must be QUEUED/RUNNING."""
        job_id = parse_job_id(job_id)
        now = self._clock()
        request = CancelRequest(
            token=secrets.token_urlsafe(TOKEN_BYTES),
            expires_at=int(now) + self.settings.cancel_confirm_window_s,
            requested_by=_text(owner, "owner", MAX_OWNER_LENGTH),
            requested_at=iso_utc(now),
        )
        flag = {"pk": job_id, "sk": CANCEL_REQUEST_SK} | asdict(request)
        try:
            self._db.transact_write_items(
                TransactItems=[
                    {
                        "ConditionCheck": {
                            "TableName": self.table_name,
                            "Key": _key(job_id, JOB_SK),
                            "ConditionExpression": "#owner = :owner AND #status IN (:queued, :running)",
                            "ExpressionAttributeNames": {"#owner": "owner", "#status": "status"},
                            "ExpressionAttributeValues": _values(owner=owner, queued=QUEUED, running=RUNNING),
                        }
                    },
                    {
                        "Put": {
                            "TableName": self.table_name,
                            "Item": _item(flag),
                        }
                    },
                ]
            )
        except ClientError as error:
            if _error_code(error) != _TRANSACTION_CANCELLED:
                raise
            job = self.get_owned(job_id, owner)  # JobNotFound for a missing job or another owner
            if job.status in ACTIVE:  # a concurrent write to the job (TransactionConflict)
                raise StateConflict("the job changed while the cancel was requested; try again") from error
            raise StateConflict(f"a {job.status} job cannot be cancelled") from error
        return request

    def confirm_cancel(self, job_id: str, owner: str, token: str) -> Job:
        """In one transaction: the request's token matches and is unexpired, ``cancel#confirm`` is
        written and the job goes CANCELLING. Confirming again with the same token is harmless.
        """
        job_id = parse_job_id(job_id)
        token = _text(token, "token", MAX_TOKEN_LENGTH)
        now = self._clock()
        confirm = {
            "pk": job_id,
            "sk": CANCEL_CONFIRM_SK,
            "confirmed_by": owner,
            "confirmed_at": iso_utc(now),
            "expires_at": int(now) + self.settings.cancel_flag_ttl_s,
        }
        try:
            self._db.transact_write_items(
                TransactItems=[
                    {
                        "ConditionCheck": {
                            "TableName": self.table_name,
                            "Key": _key(job_id, CANCEL_REQUEST_SK),
                            "ConditionExpression": (
                                "#token = :token AND expires_at > :now AND requested_by = :owner"
                            ),
                            "ExpressionAttributeNames": {"#token": "token"},
                            "ExpressionAttributeValues": _values(token=token, now=int(now), owner=owner),
                        }
                    },
                    {
                        "Put": {
                            "TableName": self.table_name,
                            "Item": _item(confirm),
                        }
                    },
                    {
                        "Update": {
                            "TableName": self.table_name,
                            "Key": _key(job_id, JOB_SK),
                            "UpdateExpression": "SET #status = :cancelling, message = :message, "
                            "updated_at = :at, cancel_token = :token",
                            "ConditionExpression": "#owner = :owner AND #status IN (:queued, :running)",
                            "ExpressionAttributeNames": {"#status": "status", "#owner": "owner"},
                            "ExpressionAttributeValues": _values(
                                cancelling=CANCELLING,
                                message="cancelling",
                                at=iso_utc(now),
                                token=token,
                                owner=owner,
                                queued=QUEUED,
                                running=RUNNING,
                            ),
                        }
                    },
                ]
            )
        except ClientError as error:
            if _error_code(error) != _TRANSACTION_CANCELLED:
                raise
            return self._explain_refused_confirm(job_id, owner, token, error)
        job = self.get(job_id, consistent=True)
        self.events.publish(job)
        return job

    def _explain_refused_confirm(self, job_id: str, owner: str, token: str, error: ClientError) -> Job:
        item = self._get_item(job_id, JOB_SK, consistent=True)
        if item is None or not hmac.compare_digest(str(item.get("owner", "")).encode(), owner.encode()):
            raise JobNotFound("no such job") from error
        job = Job.from_item(item)
        if job.status in (CANCELLING, CANCELLED):
            confirmed_token = str(item.get("cancel_token", ""))
            if confirmed_token and hmac.compare_digest(confirmed_token.encode(), token.encode()):
                return job  # the same confirm again: harmless
            raise CancelConflict("the job is being cancelled with another token") from error
        if job.status not in ACTIVE:
            raise StateConflict(f"a {job.status} job cannot be cancelled") from error
        raise CancelConflict("no pending cancel request with this token, or it has expired") from error

    def clear_cancel(self, job_id: str) -> None:
        """Remove both cancel flags (a terminal job has no use for them)."""
        job_id = parse_job_id(job_id)
        self._db.transact_write_items(
            TransactItems=[
                {"Delete": {"TableName": self.table_name, "Key": _key(job_id, sk)}}
                for sk in (CANCEL_REQUEST_SK, CANCEL_CONFIRM_SK)
            ]
        )

    # -- the end of a job -----------------------------------------------------------------------

    def succeed(self, job_id: str, result: Mapping[str, str]) -> Job:
        """RUNNING -> SUCCEEDED with the output keys; StateConflict otherwise (e.g. being cancelled)."""
        if not isinstance(result, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in result.items()
        ):
            raise InvalidRequest("result must map names to output keys")
        job = self._finish(
            job_id,
            (RUNNING,),
            SUCCEEDED,
            message="done",
            extra={"progress": Decimal(100), "result": dict(result)},
        )
        if job is None:
            raise StateConflict(f"a {self.get(job_id, consistent=True).status} job cannot succeed")
        return job

    def fail(
        self,
        job_id: str,
        code: str,
        message: str,
        *,
        from_states: tuple[str, ...] = (CREATED, QUEUED, RUNNING),
    ) -> Job | None:
        """CREATED/QUEUED/RUNNING (or only ``from_states``) -> FAILED with the error; None when
        the job is in none of them (finished already, say).

        A CANCELLING job is left alone (None): the cancel finishes it, purging its prefix first.
        """
        if not set(from_states) <= {CREATED, QUEUED, RUNNING}:
            raise InvalidRequest("a job fails from CREATED, QUEUED or RUNNING only")
        error = {
            "code": _text(code, "error code", MAX_ERROR_CODE_LENGTH),
            "message": str(message)[:MAX_MESSAGE_LENGTH],
        }
        job = self._finish(job_id, from_states, FAILED, message="failed", extra={"error": error})
        if job is None:
            self.get(job_id, consistent=True)  # JobNotFound rather than None for a missing job
        return job

    def mark_cancelled(self, job_id: str, purged: Any) -> Job:
        """CANCELLING/QUEUED/RUNNING -> CANCELLED, recording what the purge deleted.

        Marking a CANCELLED job again returns it unchanged; a SUCCEEDED or FAILED job -> StateConflict.
        """
        counts = {name: int(value) for name, value in _counts(purged).items()}
        job = self._finish(
            job_id,
            (CANCELLING, QUEUED, RUNNING),
            CANCELLED,
            message=_cancelled_message(counts),
            extra={"purged": counts},
        )
        if job is not None:
            return job
        current = self.get(job_id, consistent=True)
        if current.status == CANCELLED:
            self.clear_cancel(job_id)
            return current
        raise StateConflict(f"a {current.status} job cannot be cancelled")

    # -- internals ------------------------------------------------------------------------------

    def _now(self) -> str:
        return iso_utc(self._clock())

    def _unexpired(self, flag: Mapping[str, Any]) -> bool:
        expires_at = flag.get("expires_at")
        return expires_at is not None and float(expires_at) > self._clock()

    def _get_item(self, job_id: str, sk: str, *, consistent: bool) -> dict[str, Any] | None:
        found = self._db.get_item(TableName=self.table_name, Key=_key(job_id, sk), ConsistentRead=consistent)
        item = found.get("Item")
        return _from_item(item) if item else None

    def _update(
        self,
        job_id: str,
        update: str,
        condition: str,
        values: dict[str, Any],
        *,
        attribute_names: dict[str, str] | None = None,
        missing: Exception | None = None,
    ) -> Job | None:
        """One conditional UpdateItem of the job item; the new job, or None when the condition failed."""
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": _key(parse_job_id(job_id), JOB_SK),
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeValues": values,
            "ReturnValues": "ALL_NEW",
        }
        if attribute_names:
            request["ExpressionAttributeNames"] = attribute_names
        try:
            answer = self._db.update_item(**request)
        except ClientError as error:
            if _error_code(error) != _CONDITION_FAILED:
                raise
            if missing is not None:
                raise missing from error
            return None
        return Job.from_item(_from_item(answer["Attributes"]))

    def _transition(
        self,
        job_id: str,
        from_states: Iterable[str],
        to_status: str,
        *,
        message: str,
        extra: Mapping[str, Any] | None = None,
    ) -> Job | None:
        """Move the job from one of ``from_states`` to ``to_status``; None when it is in none of them."""
        from_states = tuple(from_states)
        extra = extra or {}
        placeholders = {f"from{i}": state for i, state in enumerate(from_states)}
        assignments = ["#status = :to", "message = :message", "updated_at = :now"]
        assignments += [f"#{name} = :{name}" for name in extra]
        values = _values(to=to_status, message=message, now=self._now(), **placeholders, **extra)
        names = {"#status": "status"} | {f"#{name}": name for name in extra}
        condition = "#status IN ({})".format(", ".join(f":{p}" for p in placeholders))
        job = self._update(job_id, "SET " + ", ".join(assignments), condition, values, attribute_names=names)
        if job is not None:
            self.events.publish(job)
        return job

    def _finish(
        self,
        job_id: str,
        from_states: Iterable[str],
        to_status: str,
        *,
        message: str,
        extra: Mapping[str, Any],
    ) -> Job | None:
        """A terminal transition: finished_at, the retention TTL, then the cancel flags removed."""
        now = self._clock()
        retention = {
            "finished_at": iso_utc(now),
            "expires_at": int(now) + self.settings.job_retention_days * SECONDS_PER_DAY,
        }
        job = self._transition(job_id, from_states, to_status, message=message, extra={**extra, **retention})
        if job is not None:
            self.clear_cancel(job_id)
        return job


def _counts(purged: Any) -> dict[str, Any]:
    """The counts of a PurgeReport (or of a plain mapping of them)."""
    if purged is None:
        return {}
    if isinstance(purged, Mapping):
        return dict(purged)
    if hasattr(purged, "as_dict"):
        return dict(purged.as_dict())
    return asdict(purged)


def _cancelled_message(counts: Mapping[str, int]) -> str:
    if not counts:
        return "cancelled"
    return (
        f"cancelled; deleted {counts.get('versions', 0)} object versions and "
        f"{counts.get('delete_markers', 0)} delete markers under {counts.get('objects', 0)} keys, "
        f"aborted {counts.get('multipart_uploads', 0)} uploads"
    )


def _encode_cursor(last_key: Mapping[str, Any]) -> str:
    raw = json.dumps({k: last_key[k] for k in sorted(_CURSOR_KEYS)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: object, owner: str) -> dict[str, str]:
    """The start key of a page; InvalidRequest for anything this service did not hand out for ``owner``."""
    bad = InvalidRequest("malformed cursor")
    if not isinstance(cursor, str) or not cursor or len(cursor) > 2048:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
    except (binascii.Error, ValueError) as error:
        raise bad from error
    if (
        not isinstance(key, dict)
        or set(key) != _CURSOR_KEYS
        or not all(isinstance(v, str) for v in key.values())
    ):
        raise bad
    if key["owner"] != owner or key["sk"] != JOB_SK:
        raise bad
    try:
        parse_job_id(key["pk"])
    except Exception as error:
        raise bad from error
    return key
