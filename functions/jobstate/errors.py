"""Domain errors raised by the core. The API maps each to one status code in one place."""

from __future__ import annotations


class JobStateError(Exception):
    """Base of every error the core raises on purpose."""

    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidJobId(JobStateError):
    """A job id that is not one the service generates (400)."""

    code = "invalid_job_id"


class InvalidRequest(JobStateError):
    """A malformed body or parameter (400)."""

    code = "invalid_request"


class JobNotFound(JobStateError):
    """No such job, or one owned by someone else: never leak which (404)."""

    code = "job_not_found"


class StateConflict(JobStateError):
    """The job is not in a state that allows the operation (409)."""

    code = "state_conflict"


class CancelConflict(StateConflict):
    """Nothing to confirm, token mismatch, or an expired request (409)."""

    code = "cancel_conflict"
