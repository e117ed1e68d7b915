"""S3's browser-upload (POST form) policy, enforced on moto's S3 as AWS enforces it.

moto 5.2.5 stores whatever a presigned POST sends: it never reads the form's ``policy``, so a
0-byte or oversize file, a form past its expiry or a field the policy does not allow are all
accepted, where S3 refuses them. While ``enforced()`` is active, moto's POST-object handler
first checks the policy the way S3 documents it (``expiration``; ``content-length-range``;
``eq`` / ``starts-with`` / exact-match conditions on the form's fields) and answers with S3's own
error codes: ``EntityTooSmall`` / ``EntityTooLarge`` (400) for the size range, ``AccessDenied``
(403, "Invalid according to Policy: ...") for the rest. The signature is not checked (moto holds
no secret keys to check it against).
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

from moto.s3.responses import S3Response

# Form fields that are never listed in a policy (S3: "x-amz-signature", the policy itself, the file).
UNCONDITIONED_FIELDS = frozenset({"policy", "x-amz-signature", "signature", "file", "awsaccesskeyid"})
_patch_lock = threading.Lock()


@dataclass(frozen=True)
class PolicyRefusal:
    """Why S3 would refuse the upload: its HTTP status, error code, message and extra XML fields."""

    status: int
    code: str
    message: str
    details: tuple[tuple[str, str], ...] = ()

    def xml(self) -> str:
        extra = "".join(f"<{name}>{escape(value)}</{name}>" for name, value in self.details)
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{self.code}</Code><Message>{escape(self.message)}</Message>{extra}</Error>"
        )


def _denied(reason: str) -> PolicyRefusal:
    return PolicyRefusal(403, "AccessDenied", f"Invalid according to Policy: {reason}")


def decode_policy(encoded: str) -> dict[str, Any] | None:
    """The policy document of a form's ``policy`` field; None when it is not base64 JSON."""
    try:
        document = json.loads(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError):
        return None
    return document if isinstance(document, dict) else None


def _condition_failed(condition: Any, fields: Mapping[str, str]) -> bool:
    """True when a field condition (``{"f": v}``, ``["eq", "$f", v]``, ``["starts-with", "$f", p]``) fails."""
    if isinstance(condition, dict):
        return any(fields.get(str(name).lower()) != str(value) for name, value in condition.items())
    operator, name, value = (str(part) for part in condition)
    actual = fields.get(name.removeprefix("$").lower())
    if operator.lower() == "eq":
        return actual != value
    if operator.lower() == "starts-with":
        return actual is None or not actual.startswith(value)
    return True  # an operator S3 does not know refuses the upload


def check_post_policy(
    policy: Mapping[str, Any], fields: Mapping[str, str], size: int, now: datetime
) -> PolicyRefusal | None:
    """What S3 answers for this form and file (``fields`` with lower-case names), or None to accept.

    The order is S3's: an expired policy first, then the field conditions, then the size range.
    """
    expiration = policy.get("expiration")
    try:
        expires = datetime.fromisoformat(str(expiration).replace("Z", "+00:00"))
    except ValueError:
        return _denied("Policy expiration is not a valid date.")
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    if now >= expires:
        return _denied("Policy expired.")
    size_range: tuple[int, int] | None = None
    conditioned = {"bucket"}
    for condition in policy.get("conditions") or []:
        if isinstance(condition, list) and len(condition) == 3 and condition[0] == "content-length-range":
            size_range = (int(condition[1]), int(condition[2]))
            continue
        if not isinstance(condition, dict | list) or (isinstance(condition, list) and len(condition) != 3):
            return _denied(f"Policy Condition is malformed: {json.dumps(condition)}")
        if _condition_failed(condition, fields):
            return _denied(f"Policy Condition failed: {json.dumps(condition)}")
        names = condition.keys() if isinstance(condition, dict) else [str(condition[1]).removeprefix("$")]
        conditioned.update(str(name).lower() for name in names)
    extra = sorted(
        name
        for name in fields
        if name not in conditioned and name not in UNCONDITIONED_FIELDS and not name.startswith("x-ignore-")
    )
    if extra:
        return _denied(f"Extra input fields: {', '.join(extra)}")
    if size_range is not None:
        low, high = size_range
        if size < low:
            return PolicyRefusal(
                400,
                "EntityTooSmall",
                "Your proposed upload is smaller than the minimum allowed size",
                (("ProposedSize", str(size)), ("MinSizeAllowed", str(low))),
            )
        if size > high:
            return PolicyRefusal(
                400,
                "EntityTooLarge",
                "Your proposed upload exceeds the maximum allowed size",
                (("ProposedSize", str(size)), ("MaxSizeAllowed", str(high))),
            )
    return None


def _form_refusal(response: S3Response, bucket_name: str, now: datetime) -> PolicyRefusal | None:
    """The refusal of a POST-object form that carries a policy; None for other POSTs."""
    form = {str(name).lower(): str(value) for name, value in response.form_data.items()}
    if "policy" not in form or "key" not in form:
        return None  # not a browser upload (or moto's own handling applies, e.g. delete-objects)
    policy = decode_policy(form["policy"])
    if policy is None:
        return PolicyRefusal(400, "InvalidPolicyDocument", "Invalid Policy: Invalid JSON.")
    body = response.raw_body
    size = len(body) if isinstance(body, bytes | str) else 0
    return check_post_policy(policy, {**form, "bucket": bucket_name}, size, now)


@contextmanager
def enforced(clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Iterator[None]:
    """Check every POST-object form's policy on moto's S3 (in this process) while active."""
    with _patch_lock:
        original = S3Response._bucket_response_post

        def checked(self: S3Response, request: Any, bucket_name: str) -> Any:
            refusal = _form_refusal(self, bucket_name, clock())
            if refusal is not None:
                return refusal.status, {"Content-Type": "application/xml"}, refusal.xml()
            return original(self, request, bucket_name)

        S3Response._bucket_response_post = checked  # type: ignore[method-assign]
    try:
        yield
    finally:
        with _patch_lock:
            S3Response._bucket_response_post = original  # type: ignore[method-assign]
