"""The committed OpenAPI document is what the code says, and names the routes that really exist."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from handlers.api import STATUS_BY_ERROR  # imported at collection: X-Ray's recorder makes a socket
from jobstate.jobs import STATUSES
from jobstate.stages import PRESETS
from reconflow import openapi
from reconflow.local import template

HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def _document_routes(document: dict) -> set[str]:
    return {
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def _template_routes() -> set[str]:
    sam = template.load_template()
    routes = set()
    for resource in sam["Resources"].values():
        for event in resource.get("Properties", {}).get("Events", {}).values():
            if event.get("Type") == "HttpApi":
                routes.add(f"{event['Properties']['Method'].upper()} {event['Properties']['Path']}")
    return routes


def test_the_committed_document_is_what_the_generator_writes() -> None:
    committed = openapi.DOCUMENT_PATH.read_text(encoding="utf-8")
    assert committed == openapi.render(openapi.build_document()), "run python -m reconflow.openapi"


def test_the_document_is_valid_openapi_3_1() -> None:
    document = openapi.load_document()
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_its_routes_are_the_resolvers_and_the_templates() -> None:
    documented = _document_routes(openapi.load_document())
    assert documented == set(openapi.resolver_routes())
    assert documented == _template_routes()
    assert len(documented) == 5


def test_a_route_registered_but_not_described_stops_the_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    routes = [*openapi.resolver_routes(), "DELETE /jobs/{job_id}"]
    monkeypatch.setattr(openapi, "resolver_routes", lambda: sorted(routes))
    with pytest.raises(openapi.RouteDrift, match="DELETE /jobs/"):
        openapi.build_document()


def test_the_job_schema_names_every_field_of_a_job_body() -> None:
    job = openapi.load_document()["components"]["schemas"]["Job"]
    assert set(job["properties"]) == set(openapi.job_fields())
    assert job["properties"]["status"]["enum"] == list(STATUSES)
    assert not {"owner", "execution_arn"} & set(job["properties"])


def _codes_in(schema: object) -> set[str]:
    """Every ``error.code`` enum value anywhere inside one answer's schema."""
    if isinstance(schema, dict):
        code = schema.get("properties", {}).get("error", {}).get("properties", {}).get("code", {})
        found = set(code.get("enum", []))
        return found.union(*(_codes_in(value) for value in schema.values()))
    if isinstance(schema, list):
        return set().union(*(_codes_in(value) for value in schema))
    return set()


def test_every_error_code_of_the_api_is_documented_under_its_status() -> None:
    documented: dict[str, set[str]] = {}
    for item in openapi.load_document()["paths"].values():
        for operation in item.values():
            for status, answer in operation["responses"].items():
                documented.setdefault(status, set()).update(_codes_in(answer))
    for kind, status in STATUS_BY_ERROR:
        assert kind.code in documented[str(status.value)], (kind, status)
    assert documented["409"] >= {"state_conflict", "cancel_conflict"}


def test_presets_come_from_the_core() -> None:
    request = openapi.load_document()["components"]["schemas"]["CreateJobRequest"]
    assert request["properties"]["preset"]["anyOf"][0]["enum"] == list(PRESETS)


def test_check_mode_fails_on_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "openapi.json"
    stale.write_text(openapi.DOCUMENT_PATH.read_text(encoding="utf-8").replace("create_job", "make_job"))
    assert openapi.main(["--check", "--out", str(stale)]) == 1
    fresh = tmp_path / "fresh.json"
    assert openapi.main(["--out", str(fresh)]) == 0
    assert openapi.main(["--check", "--out", str(fresh)]) == 0


def test_the_served_document_names_the_local_api() -> None:
    answer = openapi.document_answer("http://127.0.0.1:1234")
    assert answer["statusCode"] == 200
    assert json.loads(answer["body"])["servers"] == [
        {"url": "http://127.0.0.1:1234", "description": "this local stack"}
    ]
