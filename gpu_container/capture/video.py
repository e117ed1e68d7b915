"""Synthetic walk-around videos: the room scene along a smooth path, encoded as H.264 MP4 (PyAV).

Frames are rendered along ``room.walkaround_path``; a few are smeared with a motion-blur kernel
(a shaky hand), so a frame picker has blurred frames to drop. The true camera of every frame,
with its time in seconds, is kept beside the video for scoring (``synthetic.write_truth``).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import trimesh

from gpu_container.capture import room, synthetic


@dataclass(frozen=True)
class VideoSettings:
    """How the walk-around is encoded and which frames shake."""

    codec: str = "libx264"
    pixel_format: str = "yuv420p"
    crf: int = 20  # H.264 quality (lower: better, bigger)
    blurred_every: int = 7  # every n-th frame is smeared by motion blur (0: none)
    blur_length_px: float = 0.04  # length of the smear, as a fraction of the image width
    gop: int = 30  # frames between key frames


def motion_blur(rgb: np.ndarray, length: float, angle_deg: float) -> np.ndarray:
    """(H, W, 3) uint8 smeared along a line of ``length`` pixels at ``angle_deg`` (camera shake)."""
    size = max(3, int(np.ceil(length)) | 1)
    kernel = np.zeros((size, size), dtype=np.float32)
    centre = size // 2
    direction = np.array([np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))])
    for step in np.linspace(-0.5 * length, 0.5 * length, 4 * size):
        x, y = np.rint(centre + step * direction).astype(int)
        kernel[y, x] = 1.0
    return cv2.filter2D(rgb, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)


def encode_mp4(frames: np.ndarray, path: Path, fps: float, settings: VideoSettings | None = None) -> Path:
    """Write (F, H, W, 3) uint8 RGB frames as an H.264 MP4 at ``fps`` (even sizes: yuv420p needs them)."""
    settings = settings or VideoSettings()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames.shape[1:3]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(settings.codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = width, height
        stream.pix_fmt = settings.pixel_format
        stream.options = {"crf": str(settings.crf), "g": str(settings.gop)}
        for rgb in frames:
            for packet in stream.encode(
                av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            ):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def render_walkaround(
    mesh: trimesh.Trimesh,
    placement: room.Placement | None = None,
    rig: room.PersonRig | None = None,
    walk: room.WalkSettings | None = None,
    room_settings: room.RoomSettings | None = None,
    seed: int = 0,
    world_transform: np.ndarray | None = None,
    settings: VideoSettings | None = None,
    with_object: bool = True,
) -> synthetic.RenderedCapture:
    """Every frame of a walk round ``mesh`` on the table, blurred ones already smeared (RGB; alpha kept).

    ``with_object=False``: the same walk round the bare table (a capture with no object in it).
    """
    rig, walk, settings = rig or room.PersonRig(), walk or room.WalkSettings(), settings or VideoSettings()
    built = room.build_scene(mesh, placement, room_settings, seed, with_object)
    cameras = room.walkaround_path(built.object_bounds, rig, walk, np.random.default_rng([seed, 3]))
    capture = room.render_room_capture(
        mesh, placement, rig, room_settings, seed, world_transform, cameras=cameras, scene=built
    )
    rng = np.random.default_rng([seed, 4])
    if settings.blurred_every > 0:
        for index in range(settings.blurred_every - 1, capture.num_views, settings.blurred_every):
            length = settings.blur_length_px * rig.width
            capture.rgba[index, ..., :3] = motion_blur(
                capture.rgba[index, ..., :3], length, rng.uniform(0, 180)
            )
    return capture


def blurred_frames(count: int, settings: VideoSettings | None = None) -> list[int]:
    """Indices of the frames ``render_walkaround`` smears."""
    settings = settings or VideoSettings()
    return (
        list(range(settings.blurred_every - 1, count, settings.blurred_every))
        if settings.blurred_every
        else []
    )


def write_video(
    mesh: trimesh.Trimesh,
    path: Path,
    placement: room.Placement | None = None,
    rig: room.PersonRig | None = None,
    walk: room.WalkSettings | None = None,
    seed: int = 0,
    world_transform: np.ndarray | None = None,
    settings: VideoSettings | None = None,
    with_object: bool = True,
) -> synthetic.RenderedCapture:
    """Render and encode the walk-around to ``path`` (MP4) and its truth beside it (``<stem>.truth.*``)."""
    walk = walk or room.WalkSettings()
    capture = render_walkaround(
        mesh,
        placement,
        rig,
        walk,
        seed=seed,
        world_transform=world_transform,
        settings=settings,
        with_object=with_object,
    )
    encode_mp4(capture.rgba[..., :3], path, walk.fps, settings)
    times = [index / walk.fps for index in range(capture.num_views)]
    synthetic.write_truth(capture, path, [f"frame_{index:05d}" for index in range(capture.num_views)], times)
    return capture
