"""Claim: a job is visible and controllable only by the ``sub`` that created it; the identity comes
only from the JWT authorizer's claims in the request context, never from headers or the body."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fuzz_world import FuzzWorld
from handler_helpers import api_event, call_api
from seeded_jobs import OWNER_A, OWNER_B, seed_jobs

from jobstate.ids import new_job_id

JOB_ROUTES = ("api_get_job.json", "api_request_cancel.json", "api_confirm_cancel.json")


def _answer(name: str, job_id: str, sub: str | None, **changes: Any) -> tuple[int, Any]:
    event = api_event(name, job_id=job_id, sub=sub)
    event.update(changes)
    return call_api(event)


@pytest.mark.parametrize("route", JOB_ROUTES)
def test_another_owners_job_answers_exactly_like_a_job_that_does_not_exist(
    fuzz_world: FuzzWorld, route: str
) -> None:
    seeded = seed_jobs(fuzz_world.deps.jobs)
    unknown = _answer(route, new_job_id(), OWNER_B)
    for job_id in seeded.of(OWNER_A):
        assert _answer(route, job_id, OWNER_B) == unknown
        assert unknown[0] == 404


def test_the_list_holds_only_the_callers_jobs(fuzz_world: FuzzWorld) -> None:
    seeded = seed_jobs(fuzz_world.deps.jobs)
    for owner in (OWNER_A, OWNER_B):
        status, body = call_api(api_event("api_list_jobs.json", sub=owner, query={"limit": "100"}))
        assert status == 200
        assert sorted(job["job_id"] for job in body["jobs"]) == seeded.of(owner)


def test_a_cancel_by_another_owner_changes_nothing(fuzz_world: FuzzWorld) -> None:
    seeded = seed_jobs(fuzz_world.deps.jobs)
    before = fuzz_world.raw_items()
    for job_id in seeded.of(OWNER_A):
        assert _answer("api_request_cancel.json", job_id, OWNER_B)[0] == 404
        assert _answer("api_confirm_cancel.json", job_id, OWNER_B, body=json.dumps({"token": "x"}))[0] == 404
    assert fuzz_world.raw_items() == before


def test_headers_and_body_do_not_set_the_identity(fuzz_world: FuzzWorld) -> None:
    seeded = seed_jobs(fuzz_world.deps.jobs)
    job_id = seeded.of(OWNER_A)[0]
    spoofed = {"x-owner": OWNER_A, "x-amzn-oidc-identity": OWNER_A, "x-forwarded-user": OWNER_A}

    event = api_event("api_get_job.json", job_id=job_id, sub=None)  # no authorizer in the context
    event["headers"].update(spoofed)
    assert call_api(event)[0] == 401

    event = api_event("api_get_job.json", job_id=job_id, sub=OWNER_B)
    event["headers"].update(spoofed)
    assert call_api(event)[0] == 404

    status, body = call_api(api_event("api_create_job.json", sub=OWNER_B, body={"owner": OWNER_A}))
    assert status == 400  # unknown fields are refused, so a body cannot name the owner
    assert body["error"]["code"] == "invalid_request"
