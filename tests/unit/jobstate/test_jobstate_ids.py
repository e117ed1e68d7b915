"""Job ids: generated as lower-case UUID4 and parsed strictly."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobstate.errors import InvalidJobId
from jobstate.ids import JOB_ID_PATTERN, is_job_id, new_job_id, parse_job_id

VALID = "3f2b8c1e-9a4d-4e6f-8b2a-1c3d5e7f9a0b"


def test_new_job_ids_are_lower_case_uuid4_and_parse_to_themselves() -> None:
    ids = {new_job_id() for _ in range(50)}
    assert len(ids) == 50
    for job_id in ids:
        assert uuid.UUID(job_id).version == 4
        assert job_id == job_id.lower()
        assert parse_job_id(job_id) == job_id


@pytest.mark.parametrize(
    "value",
    [
        VALID.upper(),
        VALID + "\n",
        " " + VALID,
        "{" + VALID + "}",
        VALID.replace("-", ""),
        str(uuid.uuid1()),  # version 1
        "3f2b8c1e-9a4d-4e6f-7b2a-1c3d5e7f9a0b",  # variant nibble 7
        "../" + VALID[3:],
        "",
        None,
        42,
        VALID.encode(),
        [VALID],
    ],
)
def test_anything_but_a_lower_case_uuid4_is_an_invalid_job_id(value: object) -> None:
    with pytest.raises(InvalidJobId):
        parse_job_id(value)
    assert not is_job_id(value)


@given(st.text())
def test_any_text_parses_to_itself_or_raises_invalid_job_id(value: str) -> None:
    try:
        parsed = parse_job_id(value)
    except InvalidJobId:
        return
    assert parsed == value
    assert JOB_ID_PATTERN.fullmatch(value)


@given(st.from_regex(JOB_ID_PATTERN, fullmatch=True))
def test_every_string_of_the_pattern_parses_to_itself(value: str) -> None:
    assert parse_job_id(value) == value


@given(
    st.one_of(
        st.none(),
        st.integers(),
        st.floats(),
        st.binary(),
        st.lists(st.text()),
        st.dictionaries(st.text(), st.text()),
    )
)
def test_non_strings_raise_invalid_job_id(value: object) -> None:
    with pytest.raises(InvalidJobId):
        parse_job_id(value)
