"""Frames of a walk-around video (MP4/MOV): header checks, then the sharp, distinct frames at a rate.

Two steps, so the cheap one can refuse a hostile file before anything is decoded:

- ``probe(path, params)`` reads the container's header only (PyAV, whose wheels carry FFmpeg):
  the container must be ISO-BMFF (MP4/MOV) with a video stream in an allowed codec; byte size,
  duration, decoded-frame count (duration x frame rate) and frame size are checked against named
  limits. Refusals: ``video_unreadable``, ``video_too_long`` (duration, bytes or frames),
  ``image_too_large`` (frame size), ``too_few_views`` (too short to give enough frames at the rate).
- ``select_frames(path, params, ...)`` decodes the stream once, front to back. Time is cut into
  windows of ``1 / sample_fps`` seconds (wider for long videos, so at most ~``oversample`` x
  ``max_frames`` candidates are ever held); each window keeps its sharpest frame (variance of the
  Laplacian of the grey image at ``score_long_side``). Then candidates far blurrier than their
  neighbours or under an absolute floor are dropped, near-duplicates of the last kept frame (the
  camera stood still) are dropped, and at most ``max_frames`` are kept, evenly spread. Fewer than
  ``min_frames`` left: ``too_few_sharp_frames``, with the counts. The header is not trusted while
  decoding: the same limits are enforced on what is actually decoded, and a stream that breaks off
  (truncated file) keeps the frames decoded before the break.

Progress goes to ``on_progress(fraction, "decoded frame k of N")``; ``should_stop`` is polled
between frames (a frame decodes in milliseconds) and at least every ``stop_poll_s`` seconds,
raising ``StageCancelled``. Frames come back RGB, at most ``output_long_side`` on the long side,
in the stream's stored orientation: a phone's rotation flag (display matrix) is reported in
``info.rotation_deg``, not applied, so every frame keeps the one camera it was shot with.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import cv2
import numpy as np

from gpu_container.engine.context import CaptureError, StageCancelled
from jobstate.captures import ISO_BMFF_BOXES

if TYPE_CHECKING:
    import av

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v")
MICROSECONDS = 1_000_000


@dataclass(frozen=True)
class VideoParams:
    """Limits checked from the header (and again while decoding) and how frames are picked."""

    max_bytes: int = 4 << 30
    max_duration_s: float = 600.0
    max_decoded_frames: int = 36_000  # duration x frame rate: ten minutes at 60 fps
    max_frame_pixels: int = 3840 * 2160  # 4K UHD
    formats: tuple[str, ...] = ("mov", "mp4")  # FFmpeg demuxer names (MP4 and QuickTime share one)
    codecs: tuple[str, ...] = ("h264", "hevc")
    sample_fps: float = 3.0  # candidate windows per second of video
    max_frames: int = 120  # frames kept at most
    min_frames: int = 8  # fewer sharp, distinct frames: too_few_sharp_frames
    oversample: float = 1.5  # candidates held at most, relative to max_frames (long videos get wider windows)
    score_long_side: int = 480  # sharpness and duplicates are measured on frames this size
    blur_ratio: float = 0.45  # blurred: sharpness under this fraction of the median of its neighbours
    blur_neighbours: int = 4  # on each side
    min_sharpness: float = 8.0  # absolute floor (a lens cap, a blank wall), variance of the Laplacian
    duplicate_difference: float = 0.012  # near-duplicate: mean |difference| (0-1) of small grey frames
    thumbnail_side: int = 64
    output_long_side: int = 1280  # frames come back no larger than this (memory: max_frames of them)
    stop_poll_s: float = 0.25


@dataclass(frozen=True)
class VideoInfo:
    """What the header says (``frames`` is the decoded-frame estimate: duration x rate)."""

    file: str
    format: str
    codec: str
    width: int
    height: int
    duration_s: float
    fps: float
    frames: int
    bytes: int
    rotation_deg: float = 0.0

    def as_dict(self) -> dict:
        return {key: getattr(self, key) for key in self.__dataclass_fields__}


@dataclass
class PickedFrame:
    index: int  # decoded-frame number in the stream, from 0
    time_s: float
    sharpness: float
    image: np.ndarray  # (H, W, 3) uint8 RGB


@dataclass
class FrameSelection:
    """The frames kept and what happened to the rest, for the stage's record."""

    info: VideoInfo
    frames: list[PickedFrame]
    decoded: int
    candidates: int
    blurred: int
    duplicates: int
    thinned: int
    broken_off: str | None = None  # why decoding stopped early (a truncated stream), if it did
    dropped: list[dict] = field(default_factory=list)  # {"index", "time_s", "reason"} per dropped candidate

    def summary(self) -> dict:
        return {
            "frames": len(self.frames),
            "decoded": self.decoded,
            "candidates": self.candidates,
            "blurred": self.blurred,
            "duplicates": self.duplicates,
            "thinned": self.thinned,
            "broken_off": self.broken_off,
        }


# --- the header ---------------------------------------------------------------------------------


def looks_like_video(path: Path) -> bool:
    """True when the file starts like an ISO-BMFF container (MP4/MOV), whatever its name."""
    with open(path, "rb") as handle:
        head = handle.read(12)
    return len(head) >= 8 and head[4:8] in ISO_BMFF_BOXES


def _ffmpeg() -> ModuleType:
    """PyAV, imported where a video is opened: FFmpeg's libraries load for video captures only (validate
    and preprocess import this module for every capture)."""
    import av

    return av


def _open(path: Path) -> av.container.InputContainer:
    av = _ffmpeg()
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as error:
        raise CaptureError("video_unreadable", f"{path.name} cannot be opened as a video ({error})") from None


def _rotation(stream: av.video.stream.VideoStream) -> float:
    """The legacy ``rotate`` tag; the display matrix is only seen on decoded frames (``select_frames``)."""
    rotate = stream.metadata.get("rotate")
    try:
        return float(rotate) if rotate is not None else 0.0
    except ValueError:
        return 0.0


def _header(path: Path, container: av.container.InputContainer, params: VideoParams) -> VideoInfo:
    name = path.name
    formats = set(container.format.name.split(","))
    if not formats & set(params.formats):
        raise CaptureError("video_unreadable", f"{name} is a {container.format.name} file, not MP4/MOV")
    if not container.streams.video:
        raise CaptureError("video_unreadable", f"{name} holds no video stream")
    stream = container.streams.video[0]
    codec = stream.codec_context.name
    if codec not in params.codecs:
        raise CaptureError(
            "video_unreadable", f"{name}: video codec {codec} is not supported ({', '.join(params.codecs)})"
        )
    width, height = stream.codec_context.width, stream.codec_context.height
    if width <= 0 or height <= 0:
        raise CaptureError("video_unreadable", f"{name}: the video stream has no frame size")
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / MICROSECONDS
    else:
        raise CaptureError("video_unreadable", f"{name}: the header gives no duration")
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    if not np.isfinite(duration) or duration <= 0 or fps <= 0:
        raise CaptureError("video_unreadable", f"{name}: duration {duration:.3g} s at {fps:.3g} fps")
    frames = max(int(stream.frames or 0), round(duration * fps))
    return VideoInfo(
        file=name,
        format=container.format.name,
        codec=codec,
        width=width,
        height=height,
        duration_s=duration,
        fps=fps,
        frames=frames,
        bytes=path.stat().st_size,
        rotation_deg=_rotation(stream),
    )


def check_limits(info: VideoInfo, params: VideoParams) -> None:
    """Refuse a video whose header is over a limit, before anything is decoded."""
    name = info.file
    if info.bytes > params.max_bytes:
        raise CaptureError(
            "video_too_long", f"{name} is {info.bytes} bytes, over the limit of {params.max_bytes}"
        )
    if info.duration_s > params.max_duration_s:
        raise CaptureError(
            "video_too_long",
            f"{name} lasts {info.duration_s:.0f} s, over the limit of {params.max_duration_s:.0f} s",
        )
    if info.frames > params.max_decoded_frames:
        raise CaptureError(
            "video_too_long",
            f"{name} holds {info.frames} frames ({info.fps:.3g} fps), "
            f"over the limit of {params.max_decoded_frames}",
        )
    if info.width * info.height > params.max_frame_pixels:
        raise CaptureError(
            "image_too_large",
            f"{name}: frames are {info.width}x{info.height}, "
            f"over the limit of {params.max_frame_pixels} pixels",
        )
    most = int(np.floor(info.duration_s * params.sample_fps)) + 1
    if most < params.min_frames:
        raise CaptureError(
            "too_few_views",
            f"{name} lasts {info.duration_s:.1f} s: at most {most} frames at {params.sample_fps:g} "
            f"per second, at least {params.min_frames} are needed",
        )


def probe(path: Path, params: VideoParams | None = None) -> VideoInfo:
    """The header of the video at ``path``, checked against the limits (nothing is decoded)."""
    params = params or VideoParams()
    path = Path(path)
    if path.stat().st_size == 0:
        raise CaptureError("video_unreadable", f"{path.name} is empty")
    with _open(path) as container:
        info = _header(path, container, params)
    check_limits(info, params)
    return info


# --- picking frames -----------------------------------------------------------------------------


def _scaled_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    scale = min(1.0, long_side / max(width, height))
    return max(2, round(width * scale) // 2 * 2), max(2, round(height * scale) // 2 * 2)


def sharpness(grey: np.ndarray) -> float:
    """Variance of the Laplacian of a grey uint8 image: low for blurred or featureless frames."""
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def _thumbnail(grey: np.ndarray, side: int) -> np.ndarray:
    small = cv2.resize(grey, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    return small - small.mean()  # a change of exposure alone is not motion


@dataclass
class _Candidate:
    index: int
    time_s: float
    sharpness: float
    image: np.ndarray
    thumbnail: np.ndarray


class _Stopper:
    """Polls ``should_stop`` between frames, at most every ``interval`` seconds of wall time."""

    def __init__(self, should_stop: Callable[[], bool], interval: float) -> None:
        self._should_stop, self._interval, self._last = should_stop, interval, -np.inf

    def check(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= self._interval:
            self._last = now
            if self._should_stop():
                raise StageCancelled("stop requested")


def _decode_candidates(
    path: Path,
    info: VideoInfo,
    params: VideoParams,
    on_progress: Callable[[float, str], None],
    stopper: _Stopper,
) -> tuple[list[_Candidate], int, str | None, float | None]:
    """The sharpest frame of each window; (candidates, frames decoded, why decoding broke off, rotation).

    The rotation (degrees, from the first frame's display matrix) is what a player would turn the
    frames by; the frames themselves are kept as stored.
    """
    window = max(1.0 / params.sample_fps, info.duration_s / (params.oversample * params.max_frames))
    score_size = _scaled_size(info.width, info.height, params.score_long_side)
    output_size = _scaled_size(info.width, info.height, params.output_long_side)
    best: dict[int, tuple[float, int, float, np.ndarray]] = {}  # window -> (sharpness, index, time, RGB)
    decoded, broken_off, rotation = 0, None, None
    last_report = -np.inf
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                stopper.check()
                if frame.width * frame.height > params.max_frame_pixels:
                    raise CaptureError(
                        "image_too_large",
                        f"{info.file}: frame {decoded} is {frame.width}x{frame.height}, "
                        f"over the limit of {params.max_frame_pixels} pixels",
                    )
                if rotation is None:
                    rotation = float(frame.rotation)
                moment = float(frame.time) if frame.time is not None else decoded / info.fps
                if moment > params.max_duration_s or decoded >= params.max_decoded_frames:
                    raise CaptureError(
                        "video_too_long",
                        f"{info.file} runs past {params.max_duration_s:.0f} s or {params.max_decoded_frames} "
                        "frames while decoding (its header said less)",
                    )
                grey = frame.reformat(width=score_size[0], height=score_size[1], format="gray").to_ndarray()
                score = sharpness(grey)
                slot = int(moment // window)
                if slot not in best or score > best[slot][0]:  # converted now: decoder buffers are not held
                    rgb = frame.reformat(
                        width=output_size[0], height=output_size[1], format="rgb24"
                    ).to_ndarray()
                    best[slot] = (score, decoded, moment, rgb)
                decoded += 1
                if time.monotonic() - last_report >= params.stop_poll_s:
                    last_report = time.monotonic()
                    on_progress(
                        min(decoded / max(info.frames, 1), 1.0), f"decoded frame {decoded} of {info.frames}"
                    )
        except _ffmpeg().FFmpegError as error:
            broken_off = f"decoding stopped after frame {decoded}: {error}"
    candidates = []
    for slot in sorted(best):
        score, index, moment, image = best[slot]
        grey = cv2.cvtColor(cv2.resize(image, score_size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
        candidates.append(_Candidate(index, moment, score, image, _thumbnail(grey, params.thumbnail_side)))
    return candidates, decoded, broken_off, rotation


def blurred_mask(scores: np.ndarray, params: VideoParams) -> np.ndarray:
    """(K,) True where a candidate is far blurrier than the median of its neighbours, or under the floor."""
    blurred = scores < params.min_sharpness
    for k in range(len(scores)):
        low, high = max(0, k - params.blur_neighbours), min(len(scores), k + params.blur_neighbours + 1)
        neighbours = np.delete(scores[low:high], k - low)
        if len(neighbours) and scores[k] < params.blur_ratio * np.median(neighbours):
            blurred[k] = True
    return blurred


def select_frames(
    path: Path,
    params: VideoParams | None = None,
    on_progress: Callable[[float, str], None] = lambda fraction, message: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> FrameSelection:
    """Probe, decode and pick the frames of the video at ``path`` (module docstring)."""
    params = params or VideoParams()
    path = Path(path)
    stopper = _Stopper(should_stop, params.stop_poll_s)
    stopper.check(force=True)
    info = probe(path, params)
    candidates, decoded, broken_off, rotation = _decode_candidates(path, info, params, on_progress, stopper)
    if rotation is not None:
        info = dataclasses.replace(info, rotation_deg=rotation)
    dropped: list[dict] = []
    blurred = blurred_mask(np.array([c.sharpness for c in candidates]), params)
    sharp = []
    for candidate, is_blurred in zip(candidates, blurred, strict=True):
        if is_blurred:
            dropped.append({"index": candidate.index, "time_s": candidate.time_s, "reason": "blurred"})
        else:
            sharp.append(candidate)
    distinct: list[_Candidate] = []
    for candidate in sharp:
        if (
            distinct
            and np.abs(candidate.thumbnail - distinct[-1].thumbnail).mean() < params.duplicate_difference
        ):
            dropped.append({"index": candidate.index, "time_s": candidate.time_s, "reason": "near_duplicate"})
            continue
        distinct.append(candidate)
    kept = distinct
    if len(distinct) > params.max_frames:
        chosen = set(np.round(np.linspace(0, len(distinct) - 1, params.max_frames)).astype(int).tolist())
        kept = [c for k, c in enumerate(distinct) if k in chosen]
        dropped += [
            {"index": c.index, "time_s": c.time_s, "reason": "thinned"}
            for k, c in enumerate(distinct)
            if k not in chosen
        ]
    selection = FrameSelection(
        info=info,
        frames=[PickedFrame(c.index, c.time_s, c.sharpness, c.image) for c in kept],
        decoded=decoded,
        candidates=len(candidates),
        blurred=int(blurred.sum()),
        duplicates=len(sharp) - len(distinct),
        thinned=len(distinct) - len(kept),
        broken_off=broken_off,
        dropped=sorted(dropped, key=lambda d: d["index"]),
    )
    if len(kept) < params.min_frames:
        detail = f"; {broken_off}" if broken_off else ""
        raise CaptureError(
            "too_few_sharp_frames",
            f"{info.file}: {len(kept)} sharp, distinct frames of {decoded} decoded "
            f"({selection.blurred} blurred, {selection.duplicates} near-duplicates), "
            f"at least {params.min_frames} are needed{detail}",
        )
    on_progress(1.0, f"picked {len(kept)} frames of {decoded}")
    return selection
