"""Property: whatever archive is uploaded, the validate stage ends in a ``CaptureError`` with one of
the known codes or writes a valid manifest; nothing else is raised and nothing lands outside
``work/validate/``.

Inputs: random bytes, byte-level mutations of a good capture zip (flips, truncation, splices),
good zips with a random or mutated ``transforms.json``, corrupted or resized images, and entry
names that try to leave the archive's folder.
"""

from __future__ import annotations

import io
import json
import math
import tempfile
from pathlib import Path
from typing import Any

from capture_fixtures import CAPTURE_NAME, capture_files, zip_with
from fuzz_world import FUZZ_SETTINGS
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from gpu_container.engine import validate
from gpu_container.engine.context import CaptureError, StageContext

VALIDATOR_SETTINGS = settings(FUZZ_SETTINGS, max_examples=80)  # each example writes and reads a zip
VIEWS = 8  # the validator's minimum: one dropped frame is already too few
SIZE = 16
# Every code the validate stage may give a bad capture (DESIGN.md, "The capture").
CAPTURE_ERROR_CODES = frozenset(
    {
        "missing_archive",
        "too_many_archives",
        "not_a_zip",
        "corrupt_archive",
        "zip_slip",
        "zip_bomb",
        "missing_transforms",
        "malformed_transforms",
        "bad_camera_matrix",
        "bad_intrinsics",
        "missing_image",
        "missing_mask",
        "corrupt_image",
        "image_too_large",
        "image_size_mismatch",
        "too_few_views",
    }
)


def good_files() -> dict[str, bytes]:
    return dict(capture_files("sphere", views=VIEWS, size=SIZE))


def zip_bytes(files: dict[str, bytes]) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        return zip_with(Path(folder), files).read_bytes()


def run_validate(archive: bytes) -> dict[str, Any] | CaptureError:
    """The manifest the stage wrote, or the CaptureError it raised (anything else propagates)."""
    with tempfile.TemporaryDirectory() as folder:
        job = Path(folder) / "job"
        (job / "input").mkdir(parents=True)
        (job / "input" / CAPTURE_NAME).write_bytes(archive)
        try:
            validate.run(StageContext(job))
        except CaptureError as error:
            written = sorted(p.relative_to(job).as_posix() for p in job.rglob("*") if p.is_file())
            assert written == [f"input/{CAPTURE_NAME}"], written  # nothing written on refusal
            return error
        outside = [
            p
            for p in job.rglob("*")
            if p.is_file() and p.parent not in (job / "input", job / "work" / "validate")
        ]
        assert not outside, outside
        return json.loads((job / "work" / "validate" / validate.MANIFEST_FILE).read_text())


def assert_valid_manifest(manifest: dict[str, Any]) -> None:
    frames = manifest["frames"]
    assert manifest["form"] in ("lab", "posed", "photos")
    assert len(frames) >= validate.ValidateParams().min_views
    for frame in frames:
        matrix = frame["transform_matrix"]
        assert (matrix is None) == manifest["estimate"]["cameras"]
        if matrix is not None:
            assert len(matrix) == 4
            assert all(len(row) == 4 for row in matrix)
            assert all(math.isfinite(v) for row in matrix for v in row)
        assert (frame["w"], frame["h"]) == (manifest["width"], manifest["height"])
        if frame["intrinsics"] is not None:
            assert frame["fl_x"] > 0
            assert frame["fl_y"] > 0
        assert not frame["file"].startswith("/")
        assert ".." not in frame["file"].split("/")


def assert_clear_outcome(outcome: dict[str, Any] | CaptureError) -> None:
    if isinstance(outcome, CaptureError):
        assert outcome.code in CAPTURE_ERROR_CODES, outcome.code
        assert outcome.message
    else:
        assert_valid_manifest(outcome)


# --- strategies -------------------------------------------------------------------------------

JSON_SCALAR = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
JSON_VALUE = st.recursive(
    JSON_SCALAR,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
NUMBER = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**6), 10**6) | JSON_SCALAR
MATRIX = st.one_of(
    st.lists(st.lists(NUMBER, min_size=4, max_size=4), min_size=4, max_size=4),
    st.lists(st.lists(st.floats(-2, 2), min_size=0, max_size=5), min_size=0, max_size=5),
    JSON_VALUE,
)
PATH_TEXT = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        ["../images/r_000.png", "/etc/passwd", "images/../../x.png", "images", "", ".", "./images/"]
    ),
)
FIELD_VALUE = {
    "camera_angle_x": NUMBER,
    "camera_angle_y": NUMBER,
    "fl_x": NUMBER,
    "fl_y": NUMBER,
    "cx": NUMBER,
    "cy": NUMBER,
    "w": NUMBER,
    "h": NUMBER,
    "k1": NUMBER,
    "k4": NUMBER,
    "camera_model": st.sampled_from(["OPENCV", "OPENCV_FISHEYE", "PINHOLE", ""]) | JSON_SCALAR,
    "frames": st.lists(JSON_VALUE, max_size=3) | JSON_VALUE,
}
FRAME_FIELD_VALUE = {
    "file_path": PATH_TEXT | JSON_SCALAR,
    "mask_path": PATH_TEXT | JSON_SCALAR,
    "transform_matrix": MATRIX,
    "fl_x": NUMBER,
    "camera_angle_x": NUMBER,
}


@st.composite
def mutated_transforms(draw: st.DrawFn, files: dict[str, bytes]) -> dict[str, bytes]:
    """The good capture with a few fields of transforms.json (top level or frames) replaced or dropped."""
    transforms = json.loads(files["transforms.json"])
    for _ in range(draw(st.integers(1, 4))):
        frames = transforms.get("frames")
        frame_objects = [f for f in frames if isinstance(f, dict)] if isinstance(frames, list) else []
        if draw(st.booleans()) or not frame_objects:
            field = draw(st.sampled_from(sorted(FIELD_VALUE)))
            target = transforms
            values = FIELD_VALUE
        else:
            target = draw(st.sampled_from(frame_objects))
            field = draw(st.sampled_from(sorted(FRAME_FIELD_VALUE)))
            values = FRAME_FIELD_VALUE
        if draw(st.integers(0, 4)) == 0:
            target.pop(field, None)
        else:
            target[field] = draw(values[field])
    text = json.dumps(transforms, allow_nan=True)
    return {**files, "transforms.json": text.encode()}


def _png(size: tuple[int, int], mode: str) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG")
    return buffer.getvalue()


@st.composite
def corrupted_images(draw: st.DrawFn, files: dict[str, bytes]) -> dict[str, bytes]:
    """The good capture with some images truncated, overwritten, resized, stripped of alpha or removed."""
    images = sorted(name for name in files if name.endswith(".png"))
    changed = dict(files)
    for name in draw(st.lists(st.sampled_from(images), min_size=1, max_size=3, unique=True)):
        kind = draw(st.sampled_from(["truncate", "random", "resize", "no_alpha", "remove", "flip"]))
        data = changed[name]
        if kind == "truncate":
            changed[name] = data[: draw(st.integers(0, len(data) - 1))]
        elif kind == "random":
            changed[name] = draw(st.binary(max_size=200))
        elif kind == "resize":
            changed[name] = _png((draw(st.integers(1, 40)), draw(st.integers(1, 40))), "RGBA")
        elif kind == "no_alpha":
            changed[name] = _png((SIZE, SIZE), "RGB")
        elif kind == "remove":
            del changed[name]
        else:
            at = draw(st.integers(0, len(data) - 1))
            changed[name] = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    return changed


@st.composite
def renamed_entries(draw: st.DrawFn, files: dict[str, bytes]) -> dict[str, bytes]:
    """Entry names that try to escape, are absolute, or move transforms.json around."""
    prefix = draw(st.sampled_from(["../", "/", "a/../../", "..\\", "C:/", "nested/", "__MACOSX/", ""]))
    names = draw(st.lists(st.sampled_from(sorted(files)), min_size=1, max_size=3, unique=True))
    return {(prefix + name if name in names else name): data for name, data in files.items()}


@st.composite
def mutated_zip(draw: st.DrawFn, archive: bytes) -> bytes:
    """Byte-level damage to a whole zip: flips, truncation, a spliced-in run of random bytes."""
    data = bytearray(archive)
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "truncate", "splice"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[at:]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
    return bytes(data)


# --- the properties ---------------------------------------------------------------------------


def test_the_good_capture_gives_a_manifest() -> None:
    outcome = run_validate(zip_bytes(good_files()))
    assert not isinstance(outcome, CaptureError), outcome
    assert_valid_manifest(outcome)
    assert len(outcome["frames"]) == VIEWS


@VALIDATOR_SETTINGS
@given(archive=st.binary(max_size=2048))
def test_random_bytes_are_refused_with_a_known_code(archive: bytes) -> None:
    outcome = run_validate(archive)
    assert isinstance(outcome, CaptureError)
    assert outcome.code in CAPTURE_ERROR_CODES


@VALIDATOR_SETTINGS
@given(data=st.data())
def test_damaged_zip_bytes_end_in_a_known_code_or_a_valid_manifest(data: st.DataObject) -> None:
    archive = data.draw(mutated_zip(zip_bytes(good_files())))
    assert_clear_outcome(run_validate(archive))


@VALIDATOR_SETTINGS
@given(transforms=JSON_VALUE)
def test_a_random_transforms_json_is_refused_with_a_known_code(transforms: Any) -> None:
    files = {**good_files(), "transforms.json": json.dumps(transforms, allow_nan=True).encode()}
    outcome = run_validate(zip_bytes(files))
    assert isinstance(outcome, CaptureError)  # no random document holds 8 valid frames
    assert outcome.code in CAPTURE_ERROR_CODES


@VALIDATOR_SETTINGS
@given(data=st.data())
def test_mutated_transforms_fields_end_in_a_known_code_or_a_valid_manifest(data: st.DataObject) -> None:
    files = data.draw(mutated_transforms(good_files()))
    assert_clear_outcome(run_validate(zip_bytes(files)))


@VALIDATOR_SETTINGS
@given(data=st.data())
def test_corrupted_images_end_in_a_known_code_or_a_valid_manifest(data: st.DataObject) -> None:
    files = data.draw(corrupted_images(good_files()))
    assert_clear_outcome(run_validate(zip_bytes(files)))


@VALIDATOR_SETTINGS
@given(data=st.data())
def test_entries_outside_the_archive_folder_end_in_a_known_code_or_a_valid_manifest(
    data: st.DataObject,
) -> None:
    files = data.draw(renamed_entries(good_files()))
    outcome = run_validate(zip_bytes(files))
    assert_clear_outcome(outcome)
    escaping = any(name.startswith(("../", "/", "a/../", "C:/")) or "\\" in name for name in files)
    if escaping:
        assert isinstance(outcome, CaptureError)
        assert outcome.code == "zip_slip", outcome


def test_a_damaged_deflate_stream_is_a_corrupt_archive() -> None:
    """Found by the fuzzer: zlib.error from a damaged entry escaped as a crash (fixed in imageio)."""
    archive = bytearray(zip_bytes(good_files()))
    data_start = 30 + len("transforms.json")  # local header + name: the deflate stream follows
    archive[data_start] ^= 0xFF  # an invalid deflate block type
    outcome = run_validate(bytes(archive))
    assert isinstance(outcome, CaptureError)
    assert outcome.code == "corrupt_archive"
