"""The local stack's HTTP API against its OpenAPI document, with schemathesis (bounded, seeded).

The document is the one the stack serves (``GET /openapi.json``, the committed
``docs/openapi.json``). Every generated request, valid or not, must get an answer that is not a
5xx and that the document describes: its status, its content type and its body's schema. The
stateful run follows the document's links (create a job -> read it -> request a cancel ->
confirm it), so the routes also see real job ids and tokens, not only random ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

from reconflow import openapi
from reconflow.local.http_api import HttpResponse
from reconflow.local.stack import LocalStack

# Examples per operation in the fuzzing phase, and steps of the stateful run: enough to reach
# every documented answer, few enough to keep the module within a minute or two on two cores.
MAX_EXAMPLES = 40
STATEFUL_EXAMPLES = 15
SEED = 20261201
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {
            "mode": "all",
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            # The local stack has a development identity for the JWT authorizer: auth is not tested here.
            "with-security-parameters": False,
        },
        "phases": {
            "examples": {"enabled": True},
            "coverage": {"enabled": True},
            "fuzzing": {"enabled": True},
            "stateful": {"enabled": True},
        },
        "checks": {
            "enabled": False,
            "not_a_server_error": {"enabled": True},
            "status_code_conformance": {"enabled": True},
            "content_type_conformance": {"enabled": True},
            "response_schema_conformance": {"enabled": True},
            "negative_data_rejection": {"enabled": True},
            "ensure_resource_availability": {"enabled": True},
        },
    }
)


@pytest.fixture(scope="module")
def api_schema(stack: LocalStack) -> Any:
    """The document as the stack serves it (its servers entry is the stack's URL)."""
    return schemathesis.openapi.from_url(f"{stack.api_url}{openapi.SERVED_PATH}", config=CONFIG)


# Loaded from the committed file at collection: schemathesis' lazy from_fixture loader does not
# run under pytest 9 (it reads Function._nodeid); the stack's URL is given per call instead.
schema = schemathesis.openapi.from_path(openapi.DOCUMENT_PATH, config=CONFIG)


def test_the_stack_serves_the_committed_document(stack: LocalStack) -> None:
    served = requests.get(f"{stack.api_url}{openapi.SERVED_PATH}", timeout=10).json()
    committed = openapi.load_document()
    assert served["servers"] == [{"url": stack.api_url, "description": "this local stack"}]
    assert {**served, "servers": committed["servers"]} == committed


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_every_answer_is_documented_and_none_is_a_5xx(stack: LocalStack, case: schemathesis.Case) -> None:
    case.call_and_validate(base_url=stack.api_url)


@dataclass(frozen=True)
class Answer:
    method: str
    path: str
    status: int
    body: bytes


@pytest.fixture
def answers(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> list[Answer]:
    """Every request the gateway answers during the test, with its answer."""
    gateway = stack.gateway
    assert gateway is not None
    seen: list[Answer] = []
    dispatch = gateway.dispatch

    def recording(method: str, target: str, headers: dict[str, str], body: bytes) -> HttpResponse:
        response = dispatch(method, target, headers, body)
        seen.append(Answer(method, urlsplit(target).path, response.status, response.body))
        return response

    monkeypatch.setattr(gateway, "dispatch", recording)
    return seen


def test_linked_calls_follow_the_document(api_schema: Any, answers: list[Answer]) -> None:
    workflow = api_schema.as_state_machine()
    workflow.run(
        settings=settings(
            max_examples=STATEFUL_EXAMPLES,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            stateful_step_count=6,
        )
    )
    assert all(answer.status < 500 for answer in answers)
    created = {
        json.loads(answer.body)["job_id"]
        for answer in answers
        if (answer.method, answer.path, answer.status) == ("POST", "/jobs", 201)
    }
    assert created, "no job was created"
    # The links were followed: jobs made in this run were read back, and asked to cancel (a
    # CREATED job cannot be: 409).
    read = {answer.path for answer in answers if answer.method == "GET" and answer.status == 200}
    assert read & {f"/jobs/{job_id}" for job_id in created}
    refused = {answer.path for answer in answers if answer.method == "POST" and answer.status == 409}
    assert refused & {f"/jobs/{job_id}/cancel" for job_id in created}
