"""Capture formats: the object name each one is uploaded as, and the format read from a file's head."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from jobstate.captures import CAPTURE_FORMATS, capture_name, format_of_file, format_of_head


def test_each_format_has_its_own_capture_object() -> None:
    assert [capture_name(fmt) for fmt in CAPTURE_FORMATS] == ["capture.zip", "capture.mp4", "capture.mov"]


def test_an_unknown_format_names_no_object() -> None:
    with pytest.raises(ValueError, match="zip, mp4, mov"):
        capture_name("../zip")


def test_a_zip_is_told_by_its_content_whatever_its_name(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("transforms.json", "{}")
    path = tmp_path / "scan.mp4"
    path.write_bytes(buffer.getvalue())
    assert format_of_file(path) == "zip"


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\x00\x00\x00\x18ftypisom\x00\x00", "mp4"),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00", "mov"),
        (b"\x00\x00\x00\x08moov\x00\x00\x00\x00", "mov"),  # an old QuickTime file with no ftyp box
        (b"PK\x05\x06" + bytes(8), "zip"),  # an empty zip's end record
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0d", None),
        (b"", None),
    ],
)
def test_format_of_head(head: bytes, expected: str | None) -> None:
    assert format_of_head(head) == expected
