"""Who is calling: the ``sub`` claim that the HTTP API's JWT authorizer put in the request context."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobstate.errors import JobStateError
from jobstate.jobs import MAX_OWNER_LENGTH


class MissingIdentityError(JobStateError):
    """No caller identity in the request (401): the route is not behind the authorizer."""

    code = "unauthenticated"


def _child(value: Any, name: str) -> Any:
    return value.get(name) if isinstance(value, Mapping) else None


def caller(event: Mapping[str, Any]) -> str:
    """``requestContext.authorizer.jwt.claims.sub`` of a payload 2.0 event (else MissingIdentityError)."""
    claims = event
    for name in ("requestContext", "authorizer", "jwt", "claims"):
        claims = _child(claims, name)
    sub = _child(claims, "sub")
    if not isinstance(sub, str) or not sub or len(sub) > MAX_OWNER_LENGTH:
        raise MissingIdentityError("no caller identity in the request")
    return sub
