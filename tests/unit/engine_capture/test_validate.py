"""Stage 1 (validate): every rule of DESIGN.md's capture format has its own error code."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest
from capture_fixtures import CAPTURE_NAME, capture_files, capture_truth, make_job, zip_with
from PIL import Image

from gpu_container.capture import synthetic
from gpu_container.engine import validate
from gpu_container.engine.context import CaptureError, StageCancelled, StageContext

VIEWS = 10
SIZE = 32


def _good_files(**layout) -> dict[str, bytes]:
    return dict(capture_files("sphere", views=VIEWS, size=SIZE, zip_layout=synthetic.ZipLayout(**layout)))


def _edit_transforms(files: dict[str, bytes], edit: Callable[[dict], None]) -> dict[str, bytes]:
    transforms = json.loads(files["transforms.json"])
    edit(transforms)
    return {**files, "transforms.json": json.dumps(transforms).encode()}


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _validate(tmp_path, files: dict[str, bytes], params: validate.ValidateParams | None = None) -> dict:
    job = make_job(tmp_path, capture=zip_with(tmp_path, files, name="made.zip"))
    validate.run(StageContext(job), params)
    return json.loads((job / "work" / "validate" / validate.MANIFEST_FILE).read_text())


def _refused(tmp_path, files, code: str, params=None) -> CaptureError:
    with pytest.raises(CaptureError) as caught:
        _validate(tmp_path, files, params)
    assert caught.value.code == code, caught.value
    return caught.value


def _set_frame(index: int, key: str, value) -> Callable[[dict], None]:
    def edit(transforms: dict) -> None:
        transforms["frames"][index][key] = value

    return edit


# --- what is accepted ---------------------------------------------------------------------------


def test_good_capture_writes_manifest_with_cameras_and_intrinsics(tmp_path):
    manifest = _validate(tmp_path, _good_files())
    truth = capture_truth("sphere", views=VIEWS, size=SIZE)
    assert manifest["archive"] == CAPTURE_NAME
    assert (manifest["width"], manifest["height"]) == (SIZE, SIZE)
    assert len(manifest["frames"]) == VIEWS
    np.testing.assert_allclose(
        [frame["transform_matrix"] for frame in manifest["frames"]], truth.cam_to_world
    )
    frame = manifest["frames"][0]
    assert frame["file"] == "images/r_000.png"
    assert frame["mask"] is None
    assert frame["fl_x"] == pytest.approx(truth.fl_x)
    assert (frame["cx"], frame["cy"], frame["w"], frame["h"]) == (SIZE / 2, SIZE / 2, SIZE, SIZE)
    stage = json.loads((tmp_path / "job" / "work" / "validate" / "stage.json").read_text())
    assert stage["stage"] == "validate"
    assert stage["views"] == VIEWS


def test_extensionless_paths_pixel_intrinsics_and_mask_files_are_accepted(tmp_path):
    files = _good_files(extension_in_path=False, intrinsics="pixels", image_format="jpg", separate_masks=True)
    manifest = _validate(tmp_path, files)
    frame = manifest["frames"][3]
    assert frame["file"] == "images/r_003.jpg"
    assert frame["mask"] == "masks/r_003.png"
    assert frame["fl_y"] == pytest.approx(capture_truth("sphere", views=VIEWS, size=SIZE).fl_y)


def test_capture_zipped_inside_a_folder_with_macos_junk_is_accepted(tmp_path):
    files = {f"scan/{name}": data for name, data in _good_files().items()}
    files["__MACOSX/scan/._transforms.json"] = b"\x00\x05junk"
    files["__MACOSX/transforms.json"] = b"not json"
    manifest = _validate(tmp_path, files)
    assert manifest["frames"][0]["file"] == "scan/images/r_000.png"


def test_nerf_synthetic_split_files_are_merged(tmp_path):
    files = _good_files(extension_in_path=False)
    transforms = json.loads(files.pop("transforms.json"))
    half = len(transforms["frames"]) // 2
    for split, frames in (("train", transforms["frames"][:half]), ("test", transforms["frames"][half:])):
        files[f"transforms_{split}.json"] = json.dumps({**transforms, "frames": frames}).encode()
    manifest = _validate(tmp_path, files)
    assert len(manifest["frames"]) == VIEWS


def test_per_frame_intrinsics_override_the_shared_ones(tmp_path):
    files = _edit_transforms(_good_files(), _set_frame(2, "fl_x", 50.0))
    manifest = _validate(tmp_path, files)
    assert manifest["frames"][2]["fl_x"] == 50.0
    assert manifest["frames"][2]["fl_y"] == 50.0  # fl_y follows fl_x when not given
    assert manifest["frames"][1]["fl_x"] == pytest.approx(manifest["fl_x"])


# --- the archive ---------------------------------------------------------------------------------


def test_file_that_is_not_a_zip_is_refused(tmp_path):
    job = tmp_path / "job"
    (job / "input").mkdir(parents=True)
    (job / "input" / CAPTURE_NAME).write_bytes(b"PK\x03\x04 this is no archive")
    with pytest.raises(CaptureError) as caught:
        validate.run(StageContext(job))
    assert caught.value.code == "not_a_zip"
    assert CAPTURE_NAME in caught.value.message


def test_job_without_archive_is_refused(tmp_path):
    (tmp_path / "job" / "input").mkdir(parents=True)
    with pytest.raises(CaptureError) as caught:
        validate.run(StageContext(tmp_path / "job"))
    assert caught.value.code == "missing_archive"


@pytest.mark.parametrize(
    "entry", ["../evil.txt", "images/../../evil.txt", "/etc/evil.txt", "C:/evil.txt", "..\\evil.txt"]
)
def test_entry_escaping_its_folder_is_zip_slip(tmp_path, entry):
    error = _refused(tmp_path, {**_good_files(), entry: b"x"}, "zip_slip")
    assert "evil.txt" in error.message


def test_symlink_entry_is_zip_slip(tmp_path):
    files = _good_files()
    path = zip_with(tmp_path, files, name="made.zip")
    with zipfile.ZipFile(path, "a") as archive:
        link = zipfile.ZipInfo("images/link.png")
        link.external_attr = 0o120777 << 16
        archive.writestr(link, "/etc/passwd")
    job = make_job(tmp_path, capture=path)
    with pytest.raises(CaptureError) as caught:
        validate.run(StageContext(job))
    assert caught.value.code == "zip_slip"


def test_file_path_climbing_out_of_the_archive_is_zip_slip(tmp_path):
    files = _edit_transforms(_good_files(), _set_frame(0, "file_path", "../../outside.png"))
    assert "outside.png" in _refused(tmp_path, files, "zip_slip").message


def test_too_many_entries_is_zip_bomb(tmp_path):
    params = replace(validate.ValidateParams(), max_entries=VIEWS)
    assert "entries" in _refused(tmp_path, _good_files(), "zip_bomb", params).message


def test_too_many_uncompressed_bytes_is_zip_bomb(tmp_path):
    params = replace(validate.ValidateParams(), max_total_bytes=5_000)
    assert "bytes" in _refused(tmp_path, _good_files(), "zip_bomb", params).message


def test_entry_with_extreme_compression_ratio_is_zip_bomb(tmp_path):
    files = {**_good_files(), "padding.bin": bytes(2 << 20)}  # 2 MiB of zeros deflates ~1000x
    assert "padding.bin" in _refused(tmp_path, files, "zip_bomb").message


# --- transforms.json -----------------------------------------------------------------------------


def test_archive_without_transforms_or_photos_is_refused(tmp_path):
    files = {"notes.txt": b"no capture here", "__MACOSX/._r_000.png": b"\x00\x05", "images/.hidden.png": b"x"}
    assert "no PNG or JPEG photos" in _refused(tmp_path, files, "missing_transforms").message


@pytest.mark.parametrize(
    ("document", "named"),
    [
        (b'{"frames": [', "line 1"),
        (b"[1, 2, 3]", "object"),
        (b'{"camera_angle_x": 0.7}', "frames"),
        (b'{"camera_angle_x": 0.7, "frames": [3]}', "frames[0]"),
        (b"\xff\xfe\x00garbage", "UTF-8"),
    ],
)
def test_malformed_transforms_is_refused(tmp_path, document, named):
    files = {**_good_files(), "transforms.json": document}
    assert named in _refused(tmp_path, files, "malformed_transforms").message


def test_file_path_of_wrong_type_is_malformed(tmp_path):
    files = _edit_transforms(_good_files(), _set_frame(4, "file_path", 17))
    assert "frames[4].file_path" in _refused(tmp_path, files, "malformed_transforms").message


def test_too_few_views_is_refused(tmp_path):
    files = _edit_transforms(_good_files(), lambda t: t.update(frames=t["frames"][:5]))
    assert "5 frames" in _refused(tmp_path, files, "too_few_views").message


def test_missing_intrinsics_are_refused(tmp_path):
    files = _edit_transforms(_good_files(), lambda t: t.pop("camera_angle_x"))
    _refused(tmp_path, files, "bad_intrinsics")


@pytest.mark.parametrize(
    ("key", "value"), [("fl_x", -10.0), ("camera_angle_x", 4.0), ("cx", "middle"), ("fl_x", True)]
)
def test_bad_intrinsic_values_are_refused(tmp_path, key, value):
    files = _edit_transforms(_good_files(), _set_frame(1, key, value))
    assert "frames[1]" in _refused(tmp_path, files, "bad_intrinsics").message


def _scaled(matrix: list, factor: float) -> list:
    array = np.array(matrix)
    array[:3, :3] *= factor
    return array.tolist()


def _mirrored(matrix: list) -> list:
    array = np.array(matrix)
    array[:3, 0] *= -1
    return array.tolist()


@pytest.mark.parametrize(
    ("make_matrix", "named"),
    [
        (lambda m: m[:3], "shape"),
        (lambda m: [[float("nan")] * 4] * 4, "non-finite"),
        (lambda m: [["a", "b", "c", "d"]] * 4, "numbers"),
        (lambda m: _scaled(m, 2.0), "not rigid"),
        (_mirrored, "reflection"),
        (lambda m: [*m[:3], [0, 0, 1, 1]], "last row"),
        (lambda m: None, "missing"),
    ],
)
def test_bad_camera_matrix_is_refused(tmp_path, make_matrix, named):
    files = _good_files()
    transforms = json.loads(files["transforms.json"])
    matrix = make_matrix(transforms["frames"][6]["transform_matrix"])
    files = _edit_transforms(files, _set_frame(6, "transform_matrix", matrix))
    error = _refused(tmp_path, files, "bad_camera_matrix")
    assert "frames[6].transform_matrix" in error.message
    assert named in error.message


# --- images --------------------------------------------------------------------------------------


def test_missing_image_is_refused(tmp_path):
    files = _good_files()
    del files["images/r_003.png"]
    assert "r_003" in _refused(tmp_path, files, "missing_image").message


def test_missing_mask_file_is_refused(tmp_path):
    files = _good_files(separate_masks=True)
    del files["masks/r_002.png"]
    assert "frames[2].mask_path" in _refused(tmp_path, files, "missing_image").message


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],
        lambda data: b"\x89PNG\r\n\x1a\n" + bytes(64),
        lambda data: b"GIF89a" + data,
    ],
)
def test_corrupt_image_is_refused(tmp_path, damage):
    files = _good_files()
    files["images/r_005.png"] = damage(files["images/r_005.png"])
    assert "r_005" in _refused(tmp_path, files, "corrupt_image").message


def test_image_of_other_size_is_refused(tmp_path):
    files = _good_files()
    files["images/r_004.png"] = _png(np.zeros((SIZE, SIZE + 2, 4), dtype=np.uint8))
    assert "r_004" in _refused(tmp_path, files, "image_size_mismatch").message


def test_declared_size_disagreeing_with_images_is_refused(tmp_path):
    files = _good_files(intrinsics="both")
    files = _edit_transforms(files, lambda t: t.update(w=SIZE * 2))
    _refused(tmp_path, files, "image_size_mismatch")


def test_mask_of_other_size_is_refused(tmp_path):
    files = _good_files(separate_masks=True)
    files["masks/r_001.png"] = _png(np.zeros((SIZE // 2, SIZE // 2), dtype=np.uint8))
    assert "r_001" in _refused(tmp_path, files, "image_size_mismatch").message


def test_image_over_the_pixel_limit_is_refused(tmp_path):
    params = replace(validate.ValidateParams(), max_image_pixels=SIZE * SIZE - 1)
    _refused(tmp_path, _good_files(), "image_too_large", params)


def test_image_without_alpha_or_mask_is_refused(tmp_path):
    files = _good_files()
    files["images/r_000.png"] = _png(np.zeros((SIZE, SIZE, 3), dtype=np.uint8))
    assert "r_000" in _refused(tmp_path, files, "missing_mask").message


def test_validate_stops_when_asked(tmp_path):
    job = make_job(tmp_path, capture=zip_with(tmp_path, _good_files(), name="made.zip"))
    with pytest.raises(StageCancelled):
        validate.run(StageContext(job, should_stop=lambda: True))
    assert not (job / "work" / "validate" / validate.MANIFEST_FILE).exists()
