"""Validate tells the capture forms apart by content and says in the manifest what must be estimated."""

from __future__ import annotations

import functools
import io
import json
import shutil
import zipfile
from dataclasses import replace

import numpy as np
import pytest
from capture_fixtures import capture_files, fixture_mesh, make_job, zip_with
from PIL import Image

from gpu_container.capture import room, synthetic, video
from gpu_container.engine import pipeline, validate
from gpu_container.engine.context import CaptureError, StageContext

VIEWS = 10
SIZE = 32


@functools.cache
def _room_capture() -> synthetic.RenderedCapture:
    rig = room.PersonRig(views=VIEWS, width=SIZE, height=SIZE, supersample=1)
    small = room.RoomSettings(room_texels_per_m=100.0, table_texels_per_m=300.0)
    return room.render_room_capture(fixture_mesh("sphere"), rig=rig, room=small)


def _manifest(job) -> dict:
    return json.loads((job / "work" / "validate" / validate.MANIFEST_FILE).read_text())


def _validate_files(tmp_path, files: dict[str, bytes], name: str = "made.zip") -> dict:
    job = make_job(tmp_path, capture=zip_with(tmp_path, files, name=name))
    validate.run(StageContext(job))
    return _manifest(job)


def _jpeg(rgb: np.ndarray, exif: Image.Exif | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", **({"exif": exif.tobytes()} if exif is not None else {}))
    return buffer.getvalue()


def _photos(exif: bool = True, count: int = VIEWS) -> dict[str, bytes]:
    capture = _room_capture()
    files = synthetic.photo_files(capture, exif=exif)
    return dict(list(files.items())[:count])


# --- lab and posed captures ---------------------------------------------------------------------


def test_lab_capture_needs_nothing_estimated(tmp_path):
    manifest = _validate_files(tmp_path, dict(capture_files("sphere", views=VIEWS, size=SIZE)))
    assert manifest["form"] == "lab"
    assert manifest["estimate"] == {"cameras": False, "masks": False, "intrinsics": False}
    assert manifest["masks"] == "alpha"
    assert manifest["frames"][0]["intrinsics"] == "transforms"


def test_posed_capture_without_masks_is_accepted_and_masks_are_to_be_found(tmp_path):
    capture = _room_capture()
    manifest = _validate_files(tmp_path, synthetic.capture_files(capture, synthetic.POSED_LAYOUT))
    assert manifest["form"] == "posed"
    assert manifest["estimate"] == {"cameras": False, "masks": True, "intrinsics": False}
    assert manifest["masks"] is None
    assert all(frame["mask"] is None for frame in manifest["frames"])
    np.testing.assert_allclose([f["transform_matrix"] for f in manifest["frames"]], capture.cam_to_world)
    assert manifest["fl_x"] == pytest.approx(capture.fl_x)


def test_rgba_images_whose_alpha_is_all_opaque_are_a_posed_capture(tmp_path):
    files = dict(capture_files("sphere", views=VIEWS, size=SIZE))
    for name in [n for n in files if n.endswith(".png")]:
        rgba = np.asarray(Image.open(io.BytesIO(files[name]))).copy()
        rgba[..., 3] = 255
        buffer = io.BytesIO()
        Image.fromarray(rgba).save(buffer, format="PNG")
        files[name] = buffer.getvalue()
    manifest = _validate_files(tmp_path, files)
    assert (manifest["form"], manifest["masks"]) == ("posed", None)


def test_lab_capture_with_a_view_filled_by_the_object_keeps_its_masks(tmp_path):
    files = dict(capture_files("sphere", views=VIEWS, size=SIZE))
    rgba = np.asarray(Image.open(io.BytesIO(files["images/r_002.png"]))).copy()
    rgba[..., 3] = 255  # a close-up: the object covers the whole view
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, format="PNG")
    files["images/r_002.png"] = buffer.getvalue()
    assert _validate_files(tmp_path, files)["form"] == "lab"


# --- photo sets ---------------------------------------------------------------------------------


def test_zip_of_phone_photos_is_a_photo_set_with_exif_intrinsics(tmp_path):
    manifest = _validate_files(tmp_path, _photos())
    capture = _room_capture()
    assert manifest["form"] == "photos"
    assert manifest["estimate"] == {"cameras": True, "masks": True, "intrinsics": False}
    assert manifest["transforms"] == []
    frame = manifest["frames"][0]
    assert frame["file"] == "IMG_0001.JPG"
    assert frame["transform_matrix"] is None
    assert frame["intrinsics"] == "exif"
    assert frame["fl_x"] == pytest.approx(capture.fl_x, rel=0.03)
    assert (frame["cx"], frame["cy"]) == (SIZE / 2, SIZE / 2)


def test_photos_without_exif_leave_the_intrinsics_to_be_estimated(tmp_path):
    manifest = _validate_files(tmp_path, _photos(exif=False))
    assert manifest["estimate"]["intrinsics"] is True
    assert manifest["fl_x"] is None
    assert {frame["intrinsics"] for frame in manifest["frames"]} == {None}


def test_focal_length_with_focal_plane_resolution_and_absurd_exif(tmp_path):
    rgb = _room_capture().rgba[0, ..., :3]
    exif = Image.Exif()
    tags = exif.get_ifd(validate.EXIF_IFD)
    tags[validate.EXIF_FOCAL_LENGTH] = 4.0  # mm
    tags[validate.EXIF_FOCAL_PLANE_X_RESOLUTION] = 10.0  # pixels per mm
    tags[validate.EXIF_FOCAL_PLANE_UNIT] = 4
    assert (
        validate.exif_intrinsics(Image.open(io.BytesIO(_jpeg(rgb, exif))), validate.ValidateParams())["fl_x"]
        == 40.0
    )
    tags[validate.EXIF_FOCAL_LENGTH_35MM] = 5000  # 5000 mm on a phone: ignored, not trusted
    assert (
        validate.exif_intrinsics(Image.open(io.BytesIO(_jpeg(rgb, exif))), validate.ValidateParams()) is None
    )


def test_photo_set_in_a_folder_skips_macos_junk_and_other_files(tmp_path):
    files = {f"holiday/{name}": data for name, data in _photos().items()}
    files["holiday/._IMG_0001.JPG"] = b"\x00\x05\x16\x07junk"
    files["__MACOSX/holiday/._IMG_0002.JPG"] = b"\x00\x05\x16\x07junk"
    files["holiday/notes.txt"] = b"the statue in the hall"
    manifest = _validate_files(tmp_path, files)
    assert [frame["file"] for frame in manifest["frames"]] == sorted(f"holiday/{n}" for n in _photos())


def test_transforms_with_intrinsics_but_no_poses_is_a_photo_set(tmp_path):
    layout = synthetic.ZipLayout(intrinsics="pixels", image_format="jpg", masks=False, poses=False)
    capture = _room_capture()
    manifest = _validate_files(tmp_path, synthetic.capture_files(capture, layout))
    assert manifest["form"] == "photos"
    assert manifest["transforms"] == ["transforms.json"]
    assert manifest["estimate"] == {"cameras": True, "masks": True, "intrinsics": False}
    assert manifest["frames"][3]["fl_x"] == pytest.approx(capture.fl_x)
    assert manifest["frames"][3]["intrinsics"] == "transforms"


def test_cut_out_photos_keep_their_masks(tmp_path):
    files = dict(capture_files("sphere", views=VIEWS, size=SIZE))
    del files["transforms.json"]
    manifest = _validate_files(tmp_path, files)
    assert (manifest["form"], manifest["masks"]) == ("photos", "alpha")
    assert manifest["estimate"] == {"cameras": True, "masks": False, "intrinsics": True}


def test_some_frames_posed_and_others_not_is_a_bad_camera_matrix(tmp_path):
    layout = synthetic.ZipLayout(intrinsics="pixels", image_format="jpg", masks=False)
    files = synthetic.capture_files(_room_capture(), layout)
    transforms = json.loads(files["transforms.json"])
    del transforms["frames"][4]["transform_matrix"]
    files = {**files, "transforms.json": json.dumps(transforms).encode()}
    with pytest.raises(CaptureError) as caught:
        _validate_files(tmp_path, files)
    assert caught.value.code == "bad_camera_matrix"
    assert "frames[4].transform_matrix is missing" in caught.value.message


@pytest.mark.parametrize(
    ("damage", "code"),
    [
        (lambda files: dict(list(files.items())[:5]), "too_few_views"),
        (lambda files: {**files, "IMG_0003.JPG": files["IMG_0003.JPG"][:100]}, "corrupt_image"),
        (
            lambda files: {**files, "IMG_0004.JPG": _jpeg(np.zeros((SIZE, SIZE + 8, 3), np.uint8))},
            "image_size_mismatch",
        ),
    ],
)
def test_bad_photo_sets_are_refused(tmp_path, damage, code):
    with pytest.raises(CaptureError) as caught:
        _validate_files(tmp_path, damage(_photos()))
    assert caught.value.code == code


def test_photos_with_masks_on_some_but_not_all_are_missing_masks(tmp_path):
    files = dict(capture_files("sphere", views=VIEWS, size=SIZE))
    del files["transforms.json"]
    files["images/r_001.png"] = _jpeg(np.zeros((SIZE, SIZE, 3), np.uint8))  # PNG name, JPEG data: no alpha
    with pytest.raises(CaptureError) as caught:
        _validate_files(tmp_path, files)
    assert caught.value.code == "missing_mask"
    assert "r_001" in caught.value.message


# --- videos -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def walk_video(tmp_path_factory):
    """A three-second walk round the sphere, 32x32 (written once for the module)."""
    path = tmp_path_factory.mktemp("video") / "walk.mp4"
    walk = room.WalkSettings(seconds=3.0, fps=10.0)
    video.write_video(
        fixture_mesh("sphere"), path, rig=room.PersonRig(width=SIZE, height=SIZE, supersample=1), walk=walk
    )
    return path


@pytest.mark.parametrize("name", ["capture.mp4", "capture.MOV", "capture.zip"])
def test_video_is_told_by_its_content_and_its_header_goes_in_the_manifest(tmp_path, walk_video, name):
    job = tmp_path / "job"
    (job / "input").mkdir(parents=True)
    shutil.copyfile(walk_video, job / "input" / name)
    figures = validate.run(StageContext(job))
    manifest = _manifest(job)
    assert manifest["form"] == figures["form"] == "video"
    assert manifest["estimate"] == {"cameras": True, "masks": True, "intrinsics": True}
    assert manifest["archive"] == name
    assert manifest["frames"] == []
    assert (manifest["video"]["codec"], manifest["video"]["frames"]) == ("h264", 30)
    assert manifest["video"]["duration_s"] == pytest.approx(3.0)


def test_zip_named_like_a_video_is_read_as_a_zip(tmp_path):
    zipped = zip_with(tmp_path, dict(capture_files("sphere", views=VIEWS, size=SIZE)), name="made.zip")
    job = tmp_path / "job"
    (job / "input").mkdir(parents=True)
    shutil.copyfile(zipped, job / "input" / "capture.mp4")
    validate.run(StageContext(job))
    assert _manifest(job)["form"] == "lab"


def test_hostile_video_fails_validate_with_its_code_and_writes_nothing(tmp_path, walk_video):
    job = tmp_path / "job"
    (job / "input").mkdir(parents=True)
    (job / "input" / "capture.mp4").write_bytes(walk_video.read_bytes()[:2000])
    with pytest.raises(CaptureError) as caught:
        validate.run(StageContext(job))
    assert caught.value.code == "video_unreadable"
    assert not (job / "work").exists()


def test_video_over_the_duration_limit_is_refused_by_validate(tmp_path, walk_video):
    job = make_job(tmp_path, capture=walk_video)  # copied as capture.zip: the content says video
    params = replace(
        validate.ValidateParams(), video=replace(validate.ValidateParams().video, max_duration_s=2.0)
    )
    with pytest.raises(CaptureError) as caught:
        validate.run(StageContext(job), params)
    assert caught.value.code == "video_too_long"


def test_a_zip_and_a_video_side_by_side_are_too_many_captures(tmp_path, walk_video):
    job = make_job(tmp_path)
    shutil.copyfile(walk_video, job / "input" / "walk.mov")
    with pytest.raises(CaptureError) as caught:
        validate.run(StageContext(job))
    assert caught.value.code == "too_many_archives"


def test_local_job_folder_takes_a_video_as_it_is(tmp_path, walk_video):
    job = tmp_path / "job"
    target = pipeline.prepare_job_folder(walk_video, job)
    assert target == job / "input" / "walk.mp4"
    validate.run(StageContext(job))
    assert _manifest(job)["form"] == "video"


def test_local_folder_of_photos_becomes_a_photo_set(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, data in _photos().items():
        (folder / name).write_bytes(data)
    job = tmp_path / "job"
    pipeline.prepare_job_folder(folder, job)
    validate.run(StageContext(job))
    assert _manifest(job)["form"] == "photos"
    with zipfile.ZipFile(job / "input" / "photos.zip") as archive:
        assert len(archive.namelist()) == VIEWS
