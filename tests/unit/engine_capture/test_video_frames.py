"""Video frames: header checks before decoding, sharp and distinct frames picked, hostile videos refused."""

from __future__ import annotations

import functools
import time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from capture_fixtures import fixture_mesh
from PIL import Image

from gpu_container.capture import room, video
from gpu_container.engine import video_frames
from gpu_container.engine.context import CaptureError, StageCancelled

SIDE = 96
FPS = 12.0


@functools.cache
def _scenery(seed: int = 0) -> np.ndarray:
    """(4 * SIDE, 12 * SIDE, 3) uint8 textured strip the camera pans over (sharp at every scale)."""
    rng = np.random.default_rng(seed)
    strip = np.zeros((4 * SIDE, 12 * SIDE, 3))
    for cell in (48, 12, 3):
        grid = rng.uniform(0, 1, (4 * SIDE // cell, 12 * SIDE // cell, 3))
        strip += np.asarray(
            Image.fromarray((grid * 255).astype(np.uint8)).resize(
                (12 * SIDE, 4 * SIDE), Image.Resampling.BICUBIC
            )
        )
    return (strip / 3).astype(np.uint8)


def _pan(frames: int, step: int = 6, blurred: tuple[int, ...] = (), still: bool = False) -> np.ndarray:
    """(F, SIDE, SIDE, 3) frames panning across the scenery (``still``: the same frame every time)."""
    strip = _scenery()
    out = np.stack(
        [strip[SIDE : 2 * SIDE, (0 if still else k * step) % (11 * SIDE) :][:, :SIDE] for k in range(frames)]
    )
    for index in blurred:
        out[index] = video.motion_blur(out[index], 0.12 * SIDE, 30.0)
    return out


def _mp4(tmp_path: Path, frames: np.ndarray, name: str = "walk.mp4", fps: float = FPS, **options) -> Path:
    path = tmp_path / name
    if options:
        with av.open(str(path), mode="w", options=options) as container:
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
            for rgb in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        return path
    return video.encode_mp4(frames, path, fps)


def _refused(path: Path, code: str, params: video_frames.VideoParams | None = None) -> CaptureError:
    with pytest.raises(CaptureError) as caught:
        video_frames.select_frames(path, params)
    assert caught.value.code == code, caught.value
    assert path.name in caught.value.message
    return caught.value


# --- picking frames -----------------------------------------------------------------------------


def test_frames_come_at_the_rate_and_blurred_ones_are_never_picked(tmp_path):
    blurred = tuple(range(2, 72, 4))  # one frame in four shakes
    path = _mp4(tmp_path, _pan(72, blurred=blurred))
    messages = []
    selection = video_frames.select_frames(path, on_progress=lambda f, m: messages.append((f, m)))
    picked = [frame.index for frame in selection.frames]
    assert not set(picked) & set(blurred)
    assert selection.decoded == 72
    duration = 72 / FPS
    assert len(picked) == pytest.approx(duration * video_frames.VideoParams().sample_fps, abs=1)
    assert selection.frames[0].image.shape == (SIDE, SIDE, 3)
    assert any(m.startswith("decoded frame") and m.endswith("of 72") for _, m in messages)
    assert messages[-1][0] == 1.0


def test_frames_blurred_past_their_window_are_dropped_by_sharpness(tmp_path):
    frames = _pan(48, blurred=tuple(range(12, 24)))  # a whole second shakes: whole windows are blurred
    selection = video_frames.select_frames(_mp4(tmp_path, frames))
    assert selection.blurred >= 2
    assert all(not 12 <= frame.index < 24 for frame in selection.frames)
    assert {d["reason"] for d in selection.dropped} == {"blurred"}


def test_at_most_max_frames_are_kept_spread_over_the_video(tmp_path):
    params = replace(video_frames.VideoParams(), max_frames=9, min_frames=4)
    selection = video_frames.select_frames(_mp4(tmp_path, _pan(120, step=3)), params)
    times = [frame.time_s for frame in selection.frames]
    assert len(times) == 9
    assert times[0] < 1.0
    assert times[-1] > 120 / FPS - 1.5
    assert max(np.diff(times)) < 3 * (120 / FPS) / 9  # no long stretch left out


def test_a_camera_standing_still_gives_near_duplicates_only(tmp_path):
    error = _refused(_mp4(tmp_path, _pan(60, still=True)), "too_few_sharp_frames")
    assert "near-duplicates" in error.message


def test_a_blank_video_has_no_sharp_frames(tmp_path):
    frames = np.full((60, SIDE, SIDE, 3), 128, dtype=np.uint8)
    assert "0 sharp" in _refused(_mp4(tmp_path, frames), "too_few_sharp_frames").message


def test_walkaround_from_the_generator_keeps_its_sharp_frames(tmp_path):
    path = tmp_path / "spot.mp4"
    walk = room.WalkSettings(seconds=4.0, fps=10.0)
    rig = room.PersonRig(width=64, height=64, supersample=1)
    video.write_video(fixture_mesh("spot"), path, rig=rig, walk=walk)
    selection = video_frames.select_frames(path)
    picked = {frame.index for frame in selection.frames}
    assert len(picked) >= 10
    assert not picked & set(video.blurred_frames(walk.frames))


# --- stopping -----------------------------------------------------------------------------------


def test_should_stop_is_polled_at_least_every_quarter_second_and_stops_the_decode(tmp_path, monkeypatch):
    path = _mp4(tmp_path, _pan(96))
    calls: list[float] = []

    def note_call() -> bool:
        calls.append(time.monotonic())
        return False

    def slow_sharpness(grey: np.ndarray) -> float:  # a slow decode: 96 frames take about two seconds
        time.sleep(0.02)
        return float(grey.std())

    monkeypatch.setattr(video_frames, "sharpness", slow_sharpness)
    video_frames.select_frames(path, should_stop=note_call)
    assert len(calls) >= 6
    assert max(np.diff(calls)) < 0.25 + 0.1
    asked = iter([False, False, True])
    with pytest.raises(StageCancelled):
        video_frames.select_frames(
            path, replace(video_frames.VideoParams(), stop_poll_s=0.0), should_stop=lambda: next(asked, True)
        )


# --- hostile videos -----------------------------------------------------------------------------


def test_truncated_video_without_its_index_is_unreadable(tmp_path):
    path = _mp4(tmp_path, _pan(48))  # the index (moov) is written last: a cut file has none
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _refused(path, "video_unreadable")


def test_truncated_video_with_its_index_first_keeps_what_decodes(tmp_path):
    path = _mp4(tmp_path, _pan(96), movflags="faststart")
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.6)])
    selection = video_frames.select_frames(path, replace(video_frames.VideoParams(), min_frames=4))
    assert 0 < selection.decoded < 96
    cut_short = replace(video_frames.VideoParams(), min_frames=24)
    assert "24 are needed" in _refused(path, "too_few_sharp_frames", cut_short).message


def test_zero_length_file_is_unreadable(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    assert "empty" in _refused(path, "video_unreadable").message


def test_hours_long_video_is_refused_from_its_header(tmp_path):
    frames = np.zeros((180, 16, 16, 3), dtype=np.uint8)  # one frame a minute: three hours, 6 kB
    path = _mp4(tmp_path, frames, name="long.mov", fps=1 / 60)
    started = time.monotonic()
    assert "10800 s" in _refused(path, "video_too_long").message
    assert time.monotonic() - started < 1.0  # the header said so: nothing was decoded


def test_too_many_frames_or_bytes_are_too_long(tmp_path):
    path = _mp4(tmp_path, _pan(48))
    assert (
        "frames"
        in _refused(
            path, "video_too_long", replace(video_frames.VideoParams(), max_decoded_frames=40)
        ).message
    )
    assert (
        "bytes"
        in _refused(path, "video_too_long", replace(video_frames.VideoParams(), max_bytes=1000)).message
    )


def test_huge_resolution_is_refused_before_decoding(tmp_path):
    frames = np.zeros((2, 2304, 4096, 3), dtype=np.uint8)  # 4096x2304: over the 4K UHD limit
    path = _mp4(tmp_path, frames, name="huge.mp4", fps=1 / 8)
    assert "4096x2304" in _refused(path, "image_too_large").message


def test_video_too_short_for_enough_frames_is_too_few_views(tmp_path):
    assert "at least 8" in _refused(_mp4(tmp_path, _pan(12)), "too_few_views").message


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("noise.mp4", bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8))),
        ("photo.mov", b"\x89PNG\r\n\x1a\n" + bytes(200)),
        ("fake.mp4", b"\x00\x00\x00\x18ftypisom" + bytes(64)),  # an MP4 header and nothing after it
    ],
)
def test_what_is_not_a_video_is_unreadable(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    _refused(path, "video_unreadable")


def test_other_containers_and_audio_only_files_are_unreadable(tmp_path):
    mkv = tmp_path / "walk.mp4"
    with av.open(str(mkv), mode="w", format="matroska") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for _ in range(10):
            for packet in stream.encode(
                av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            ):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    assert "matroska" in _refused(mkv, "video_unreadable").message
    audio = tmp_path / "voice.mp4"
    with av.open(str(audio), mode="w") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono"
        )
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    assert "no video stream" in _refused(audio, "video_unreadable").message


def test_a_phones_portrait_hevc_mov_is_read_with_its_rotation_reported(tmp_path):
    path = tmp_path / "IMG_0042.MOV"
    frames = _pan(48)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx265", rate=int(FPS))
        stream.width, stream.height, stream.pix_fmt = SIDE, SIDE, "yuv420p"
        stream.options = {"x265-params": "log-level=error"}
        stream.set_display_rotation(90.0)
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    assert video_frames.probe(path).codec == "hevc"
    selection = video_frames.select_frames(path)
    assert selection.info.rotation_deg in (90.0, -90.0)
    assert len(selection.frames) >= 8
    assert selection.frames[0].image.shape == (SIDE, SIDE, 3)  # as stored: one camera for every frame


def test_the_engine_loads_ffmpeg_and_colmap_only_where_a_capture_needs_them() -> None:
    """Every stage imports the engine; PyAV (FFmpeg's libraries) loads only when a video is opened and
    pycolmap only in the structure-from-motion child, so a lab capture's stages need neither."""
    import subprocess
    import sys

    code = (
        "import sys, gpu_container.engine.pipeline, gpu_container.engine.validate, "
        "gpu_container.engine.camera_estimation, gpu_container.engine.video_frames; "
        "print(sorted(name for name in ('av', 'pycolmap') if name in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
