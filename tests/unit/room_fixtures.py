"""Small real-looking captures (the object on a table in a room, RGB only) for the estimation tests.

``table_capture()`` renders Spot on the table from a person's cameras (close-ups included) at the
smallest size structure from motion still registers every view of (32 views of 160²); renderings
are cached per argument set, so the camera, mask and end-to-end tests share them.
"""

from __future__ import annotations

import functools

import numpy as np
from capture_fixtures import fixture_mesh

from gpu_container.capture import room, synthetic

VIEWS = 32
SIZE = 160
FAST_ROOM = room.RoomSettings(room_texels_per_m=160.0, table_texels_per_m=500.0)


def person_rig(views: int = VIEWS, size: int = SIZE) -> room.PersonRig:
    return room.PersonRig(views=views, width=size, height=size, supersample=1)


@functools.cache
def table_capture(obj: str = "spot", with_object: bool = True) -> synthetic.RenderedCapture:
    """The object on the table (or the bare table) seen by ``person_rig()``; alpha = true mask."""
    return room.render_room_capture(
        fixture_mesh(obj), rig=person_rig(), room=FAST_ROOM, with_object=with_object
    )


def intrinsics(capture: synthetic.RenderedCapture) -> np.ndarray:
    """(N, 3, 3) the capture's pinhole intrinsics, one per view."""
    matrix = np.array([[capture.fl_x, 0, capture.cx], [0, capture.fl_y, capture.cy], [0, 0, 1.0]])
    return np.repeat(matrix[None], capture.num_views, axis=0)


def rotation_errors_deg(estimated: np.ndarray, true: np.ndarray) -> np.ndarray:
    """(N,) angle between the rotations of (N, 4, 4) camera matrices, degrees."""
    relative = np.einsum("nji,njk->nik", estimated[:, :3, :3], true[:, :3, :3])
    cosine = (np.trace(relative, axis1=1, axis2=2) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))
