"""Property: whatever reaches the cleanup function (the state machine's cleanup input, a Step
Functions status change, another state machine's, a direct invocation, junk), it answers and never
raises, so no malformed event is retried into a storm; and only a status change of this stack's
state machine or a cleanup action ever ends a job."""

from __future__ import annotations

import copy
from typing import Any

from fuzz_world import FUZZ_SETTINGS, FuzzWorld
from handler_helpers import CONTEXT, STATE_MACHINE_ARN, load_event
from hypothesis import given
from hypothesis import strategies as st
from seeded_jobs import OWNER_A

from handlers import cleanup
from jobstate.jobs import QUEUED, RUNNING

OTHER_MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:someone-elses-pipeline"
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=15,
)
STATUSES = st.sampled_from(["ABORTED", "TIMED_OUT", "FAILED", "SUCCEEDED", "RUNNING"]) | JSON_VALUE


@st.composite
def cleanup_events(draw: st.DrawFn, job_id: str) -> tuple[Any, bool]:
    """(event, whether it may end the job)."""
    kind = draw(st.sampled_from(["any", "action", "status_change"]))
    if kind == "any":
        return draw(JSON_VALUE), False
    if kind == "action":
        event = load_event(draw(st.sampled_from(["cleanup_cancel.json", "cleanup_fail.json"])))
        event["job_id"] = draw(st.sampled_from([job_id, job_id.upper(), "../x"]) | JSON_VALUE)
        if draw(st.booleans()):
            event["action"] = draw(JSON_VALUE)
        if draw(st.booleans()):
            event["error"] = draw(JSON_VALUE)
        return event, event["job_id"] == job_id and event["action"] in ("cancel", "fail")
    event = load_event("cleanup_sfn_status_change.json")
    if draw(st.integers(0, 5)) == 0:
        event["detail"] = draw(JSON_VALUE)
        return event, False
    detail = event["detail"]
    detail["name"] = draw(st.sampled_from([job_id, job_id]) | JSON_VALUE)
    detail["stateMachineArn"] = draw(st.sampled_from([STATE_MACHINE_ARN, OTHER_MACHINE]) | JSON_VALUE)
    detail["status"] = draw(STATUSES)
    for name in draw(st.lists(st.sampled_from(["error", "cause", "executionArn"]), max_size=2, unique=True)):
        detail[name] = draw(JSON_VALUE)
    ours = detail["stateMachineArn"] == STATE_MACHINE_ARN and detail["name"] == job_id
    return event, ours and isinstance(detail["status"], str) and detail["status"] in cleanup.ENDED_BADLY


@FUZZ_SETTINGS
@given(data=st.data())
def test_no_event_makes_cleanup_raise_and_only_ours_end_a_job(
    fuzz_world: FuzzWorld, data: st.DataObject
) -> None:
    jobs = fuzz_world.deps.jobs
    job = jobs.create(OWNER_A, status=QUEUED)
    jobs.begin_stage(job.job_id, "hull")
    event, may_end = data.draw(cleanup_events(job.job_id), label="event")

    answer = cleanup.handler(copy.deepcopy(event), CONTEXT)

    assert isinstance(answer, dict)
    if not may_end:
        assert jobs.get(job.job_id, consistent=True).status == RUNNING, answer


def test_a_status_change_of_another_state_machine_leaves_the_job_alone(fuzz_world: FuzzWorld) -> None:
    jobs = fuzz_world.deps.jobs
    job = jobs.create(OWNER_A, status=QUEUED)
    jobs.begin_stage(job.job_id, "hull")
    event = load_event("cleanup_sfn_status_change.json")
    event["detail"] |= {"name": job.job_id, "stateMachineArn": OTHER_MACHINE, "status": "FAILED"}

    answer = cleanup.handler(event, CONTEXT)

    assert answer["ignored"] == "status change of another state machine"
    assert jobs.get(job.job_id, consistent=True).status == RUNNING
