"""The S3 layout: keys are built under jobs/{job_id}/ and parsed back strictly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobstate import layout
from jobstate.errors import InvalidJobId, InvalidRequest
from jobstate.layout import JobKey, parse_key

JOB_ID = "3f2b8c1e-9a4d-4e6f-8b2a-1c3d5e7f9a0b"


def test_keys_sit_under_the_jobs_own_prefix() -> None:
    assert layout.job_prefix(JOB_ID) == f"jobs/{JOB_ID}/"
    assert layout.input_prefix(JOB_ID) == f"jobs/{JOB_ID}/input/"
    assert layout.input_key(JOB_ID, "capture.zip") == f"jobs/{JOB_ID}/input/capture.zip"
    assert layout.work_prefix(JOB_ID, "hull") == f"jobs/{JOB_ID}/work/hull/"
    assert layout.work_key(JOB_ID, "hull", "grid/level0.npz") == f"jobs/{JOB_ID}/work/hull/grid/level0.npz"
    assert layout.output_prefix(JOB_ID) == f"jobs/{JOB_ID}/output/"
    assert layout.output_key(JOB_ID, "model.glb") == f"jobs/{JOB_ID}/output/model.glb"


def test_building_a_key_checks_the_id_the_stage_and_the_name() -> None:
    with pytest.raises(InvalidJobId):
        layout.input_key("../other", "capture.zip")
    with pytest.raises(InvalidRequest):
        layout.work_key(JOB_ID, "render", "x")
    for name in ("../x", "a/../../b", "", "/abs", "a//b", "./a", "a\\b", "nul\x00"):
        with pytest.raises(InvalidRequest):
            layout.output_key(JOB_ID, name)


@pytest.mark.parametrize(
    ("key", "area", "rest"),
    [
        (f"jobs/{JOB_ID}/input/capture.zip", "input", "capture.zip"),
        (f"jobs/{JOB_ID}/work/mesh/a/b.ply", "work", "mesh/a/b.ply"),
        (f"jobs/{JOB_ID}/output/model.glb", "output", "model.glb"),
    ],
)
def test_parse_key_splits_a_key_of_the_layout(key: str, area: str, rest: str) -> None:
    assert parse_key(key) == JobKey(JOB_ID, area, rest)


@pytest.mark.parametrize(
    "key",
    [
        f"jobs/{JOB_ID}/input/../../other/input/x.zip",
        f"jobs/{JOB_ID}/input/./x.zip",
        f"jobs/{JOB_ID}/input/",
        f"jobs/{JOB_ID}/input//x.zip",
        f"jobs/{JOB_ID}/input/a\\..\\x.zip",
        f"jobs/{JOB_ID}/secrets/x",
        f"jobs/{JOB_ID}/input",
        f"jobs/{JOB_ID}",
        f"/jobs/{JOB_ID}/input/x.zip",
        f"other/{JOB_ID}/input/x.zip",
        "jobs/../input/x.zip",
        "",
        None,
        "jobs/" + JOB_ID + "/input/" + "a" * 1100,
    ],
)
def test_parse_key_rejects_escapes_and_foreign_keys(key: object) -> None:
    with pytest.raises((InvalidRequest, InvalidJobId)):
        parse_key(key)


@pytest.mark.parametrize("job_part", [JOB_ID + "x", JOB_ID.upper(), "..", ""])
def test_parse_key_rejects_a_bad_job_id_as_invalid_job_id(job_part: str) -> None:
    with pytest.raises(InvalidJobId):
        parse_key(f"jobs/{job_part}/input/capture.zip")


@given(st.text(min_size=1, max_size=60))
def test_a_name_either_round_trips_through_parse_key_or_is_refused(name: str) -> None:
    try:
        key = layout.output_key(JOB_ID, name)
    except InvalidRequest:
        return
    parsed = parse_key(key)
    assert parsed == JobKey(JOB_ID, "output", name)
    assert ".." not in parsed.rest.split("/")


@given(st.text(max_size=120))
def test_parse_key_returns_a_key_of_the_layout_or_raises_a_domain_error(key: str) -> None:
    try:
        parsed = parse_key(key)
    except (InvalidRequest, InvalidJobId):
        return
    assert key == f"jobs/{parsed.job_id}/{parsed.area}/{parsed.rest}"
