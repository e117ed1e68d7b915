"""Real-looking synthetic captures: the object on a table in a room, as posed captures, photo sets, videos."""

from __future__ import annotations

import functools
import io
import json
import zipfile

import av
import cv2
import numpy as np
import pytest
import trimesh
from capture_fixtures import fixture_mesh
from PIL import Image
from scipy import ndimage

from gpu_container import cli
from gpu_container.capture import forms, room, synthetic, video

SIZE = 64
SMALL_ROOM = room.RoomSettings(room_texels_per_m=160.0, table_texels_per_m=500.0)  # fast textures


def _rig(views: int = 12, **changes) -> room.PersonRig:
    return room.PersonRig(**{"views": views, "width": SIZE, "height": SIZE, "supersample": 1, **changes})


@functools.cache
def _spot_in_room(seed: int = 0) -> synthetic.RenderedCapture:
    return room.render_room_capture(fixture_mesh("spot"), rig=_rig(), room=SMALL_ROOM, seed=seed)


def _project(points: np.ndarray, cam_to_world: np.ndarray, fl: float, cx: float, cy: float) -> np.ndarray:
    """(P, 2) pixel coordinates and (P,) depths of world points (OpenGL camera)."""
    cam = (points - cam_to_world[:3, 3]) @ cam_to_world[:3, :3]
    return np.stack([cx + fl * cam[:, 0] / -cam[:, 2], cy - fl * cam[:, 1] / -cam[:, 2]], axis=-1)


def _is_closeup(index: int, rig: room.PersonRig) -> bool:
    return index % rig.closeup_every == rig.closeup_every - 1


def test_room_fills_every_pixel_and_the_object_lands_where_its_alpha_is():
    capture = _spot_in_room()
    surface = capture.mesh_world.sample(1500, seed=2)
    background = capture.rgba[..., 3] == 0
    assert (capture.rgba[..., :3][background].max(axis=-1) > 0).mean() > 0.999  # inside a closed room
    for index, (rgba, cam) in enumerate(zip(capture.rgba, capture.cam_to_world, strict=True)):
        cols, rows = np.floor(_project(surface, cam, capture.fl_x, capture.cx, capture.cy)).astype(int).T
        inside = (cols >= 0) & (cols < SIZE) & (rows >= 0) & (rows < SIZE)
        covered = ndimage.binary_dilation(rgba[..., 3] > 0, iterations=1)
        assert covered[rows[inside], cols[inside]].mean() > 0.97  # the rest is hidden by nothing but itself
        if not _is_closeup(index, _rig()):
            assert inside.all(), index


def test_closeups_run_off_the_frame_and_other_views_hold_the_whole_object():
    capture, rig = _spot_in_room(), _rig()
    for index, alpha in enumerate(capture.rgba[..., 3]):
        border = np.concatenate([alpha[0], alpha[-1], alpha[:, 0], alpha[:, -1]])
        if _is_closeup(index, rig):
            assert (border > 0).any(), index
            assert (alpha > 0).mean() > 0.25
        else:
            assert not (border > 0).any(), index
            assert 0.03 < (alpha > 0).mean() < 0.4


def test_upright_world_has_the_table_at_y_zero_and_the_object_on_the_y_axis():
    capture = _spot_in_room()
    bounds = capture.mesh_world.bounds
    assert bounds[0, 1] == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(0.5 * (bounds[0] + bounds[1])[[0, 2]], 0.0, atol=1e-9)
    assert max(bounds[1] - bounds[0]) == pytest.approx(room.Placement().size)
    eyes = capture.cam_to_world[:, :3, 3]
    heights = eyes[:, 1] + SMALL_ROOM.table_height  # above the floor
    assert heights.min() > SMALL_ROOM.table_height
    assert heights.max() < max(room.PersonRig().ring_heights) + 0.1
    sideways = capture.cam_to_world[:, :3, 0]  # held upright: the image's x axis stays level, but for roll
    assert np.abs(sideways[:, 1]).max() < np.sin(np.radians(room.PersonRig().roll_jitter_deg + 0.5))


def test_every_background_surface_gives_sift_features_and_none_repeats():
    empty = room.render_room_capture(
        fixture_mesh("spot"), rig=_rig(4, width=160, height=160), room=SMALL_ROOM, with_object=False
    )
    sift = cv2.SIFT_create()
    assert (empty.rgba[..., 3] == 0).all()  # no object: alpha is empty everywhere
    counts = [len(sift.detect(cv2.cvtColor(rgba[..., :3], cv2.COLOR_RGB2GRAY))) for rgba in empty.rgba]
    assert min(counts) > 100, counts
    parts = room.room_parts(SMALL_ROOM, np.random.default_rng(0))
    walls = [synthetic.texture_texels(part) for part in parts[-4:]]
    assert not any(np.allclose(walls[0][:50, :50], other[:50, :50], atol=0.05) for other in walls[1:])


def test_posed_capture_has_poses_and_rgb_images_without_masks(tmp_path):
    path = tmp_path / "posed.zip"
    capture = forms.write_form("posed", fixture_mesh("sphere"), path, rig=_rig(8))
    with zipfile.ZipFile(path) as archive:
        transforms = json.loads(archive.read("transforms.json"))
        images = [Image.open(io.BytesIO(archive.read(frame["file_path"]))) for frame in transforms["frames"]]
    assert {image.mode for image in images} == {"RGB"}
    assert all("mask_path" not in frame for frame in transforms["frames"])
    assert transforms["fl_x"] == pytest.approx(capture.fl_x)
    np.testing.assert_allclose([f["transform_matrix"] for f in transforms["frames"]], capture.cam_to_world)
    truth = json.loads(synthetic.truth_paths(path)[0].read_text())
    assert np.asarray(truth["object_to_world"]).shape == (4, 4)


def test_photo_set_is_jpegs_only_with_exif_focal_length_and_truth_beside(tmp_path):
    path = tmp_path / "photos.zip"
    capture = forms.write_form("photos", fixture_mesh("sphere"), path, rig=_rig(8))
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        photo = Image.open(io.BytesIO(archive.read(names[0])))
    assert names == [f"IMG_{index:04d}.JPG" for index in range(1, 9)]
    exif = photo.getexif().get_ifd(synthetic.EXIF_IFD)
    fl_35mm = exif[synthetic.EXIF_TAGS["focal_length_35mm"]]
    fl_px = fl_35mm * np.hypot(SIZE, SIZE) / synthetic.FILM_DIAGONAL_MM
    assert fl_px == pytest.approx(capture.fl_x, rel=0.03)
    cameras, mesh = synthetic.truth_paths(path)
    truth = json.loads(cameras.read_text())
    assert [frame["file_path"] for frame in truth["frames"]] == names
    np.testing.assert_allclose([f["transform_matrix"] for f in truth["frames"]], capture.cam_to_world)
    assert mesh.is_file()


def test_video_walkaround_decodes_to_its_frames_and_the_smeared_ones_are_blurrier(tmp_path):
    path = tmp_path / "walk.mp4"
    walk = room.WalkSettings(seconds=3.0, fps=10.0)
    capture = video.write_video(fixture_mesh("sphere"), path, rig=_rig(), walk=walk)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    assert len(frames) == walk.frames == capture.num_views
    assert frames[0].shape == (SIZE, SIZE, 3)
    sharpness = [cv2.Laplacian(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var() for f in frames]
    for index in video.blurred_frames(len(frames)):
        neighbours = [sharpness[i] for i in (index - 1, index + 1) if 0 <= i < len(frames)]
        assert sharpness[index] < 0.8 * min(neighbours), (index, sharpness[index], neighbours)
    truth = json.loads(synthetic.truth_paths(path)[0].read_text())
    assert [frame["time"] for frame in truth["frames"]][:3] == [0.0, 0.1, 0.2]


def test_walkaround_path_is_smooth_and_goes_round_once():
    bounds = np.array([[-0.1, -0.1, 0.75], [0.1, 0.1, 0.95]])
    walk = room.WalkSettings(seconds=6.0, fps=10.0)
    cameras = room.walkaround_path(bounds, room.PersonRig(), walk, np.random.default_rng(0))
    eyes = cameras[:, :3, 3]
    steps = np.linalg.norm(np.diff(eyes, axis=0), axis=1)
    assert steps.max() < 3 * np.median(steps)  # no jumps
    azimuth = np.unwrap(np.arctan2(eyes[:, 1], eyes[:, 0]))
    assert abs(azimuth[-1] - azimuth[0]) == pytest.approx(2 * np.pi * walk.turns, abs=0.3)


def test_same_seed_gives_the_same_photos_and_another_seed_another_room():
    again = room.render_room_capture(fixture_mesh("spot"), rig=_rig(), room=SMALL_ROOM, seed=0)
    np.testing.assert_array_equal(again.rgba, _spot_in_room().rgba)
    other = room.render_room_capture(fixture_mesh("spot"), rig=_rig(2), room=SMALL_ROOM, seed=1)
    assert not np.array_equal(other.rgba[0], _spot_in_room().rgba[0])


@pytest.mark.parametrize("form", ["photos", "video"])
def test_sample_command_writes_each_form(tmp_path, capsys, form):
    out = tmp_path / ("walk.mp4" if form == "video" else "set.zip")
    argv = ["sample", str(out), "--form", form, "--object", "cup", "--size", "32", "--views", "8"]
    assert (
        cli.main([*argv, "--seconds", "1", "--fps", "8", "--object-size", "0.15", "--offset", "0.1", "0"])
        == 0
    )
    assert out.is_file()
    assert synthetic.truth_paths(out)[0].is_file()
    assert form in capsys.readouterr().out


def test_sample_command_default_is_still_the_lab_bowl(tmp_path):
    out = tmp_path / "sample.zip"
    assert cli.main(["sample", str(out), "--views", "4", "--size", "32"]) == 0
    with zipfile.ZipFile(out) as archive:
        first = Image.open(io.BytesIO(archive.read("images/r_000.png")))
    assert first.mode == "RGBA"
    assert not synthetic.truth_paths(out)[0].exists()


def test_the_object_casts_a_shadow_on_the_table_and_the_room_shell_casts_none():
    lit = room.render_room_capture(
        fixture_mesh("spot"), rig=_rig(3), room=SMALL_ROOM, shading=synthetic.ShadingSettings(shadows=False)
    )
    shaded = room.render_room_capture(fixture_mesh("spot"), rig=_rig(3), room=SMALL_ROOM)
    darker = lit.rgba[..., :3].astype(int) - shaded.rgba[..., :3].astype(int)
    assert darker.min() >= 0  # a shadow only takes light away
    in_shadow = (darker.max(axis=-1) > 10) & (shaded.rgba[..., 3] == 0)
    assert 0.005 < in_shadow.mean() < 0.25  # on the table beside the object, not over the whole room


def test_empty_table_photos_show_the_same_room_without_the_object(tmp_path):
    with_cup, bare = tmp_path / "cup.zip", tmp_path / "bare.zip"
    common = ["--form", "photos", "--object", "cup", "--views", "4", "--size", "32"]
    assert cli.main(["sample", str(with_cup), *common]) == 0
    assert cli.main(["sample", str(bare), *common, "--empty-table"]) == 0
    assert cli.main(["sample", str(tmp_path / "lab.zip"), "--empty-table"]) == cli.EXIT_USAGE
    with zipfile.ZipFile(with_cup) as one, zipfile.ZipFile(bare) as other:
        first = [np.asarray(Image.open(io.BytesIO(one.read(n))), dtype=int) for n in one.namelist()]
        second = [np.asarray(Image.open(io.BytesIO(other.read(n))), dtype=int) for n in other.namelist()]
    changed = [np.abs(a - b).max(axis=-1) > 40 for a, b in zip(first, second, strict=True)]
    assert all(
        0.005 < mask.mean() < 0.5 for mask in changed
    )  # the cup (and its shadow) went, the room stayed


def test_objects_of_other_sizes_and_places_stand_on_the_table_and_stay_in_view():
    placement = room.Placement(size=0.12, offset=(0.35, -0.2), yaw_deg=70.0)
    cup = fixture_mesh("cup")
    capture = room.render_room_capture(cup, placement, _rig(6), room=SMALL_ROOM)
    bounds = capture.mesh_world.bounds
    assert max(bounds[1] - bounds[0]) == pytest.approx(0.12)
    assert bounds[0, 1] == pytest.approx(0.0, abs=1e-9)  # on the table top
    scene_to_world = capture.object_to_world @ np.linalg.inv(room.object_on_table(cup, placement, SMALL_ROOM))
    table_centre = trimesh.transform_points([[0.0, 0.0, SMALL_ROOM.table_height]], scene_to_world)[0]
    np.testing.assert_allclose(table_centre, [-0.35, 0.0, -0.2], atol=1e-9)  # scene y is world -z
    for index, alpha in enumerate(capture.rgba[..., 3]):
        if not _is_closeup(index, _rig()):
            assert (alpha > 0).mean() > 0.03
    with pytest.raises(ValueError, match="does not fit"):
        room.render_room_capture(cup, room.Placement(offset=(0.55, 0.0)), _rig(1), room=SMALL_ROOM)
