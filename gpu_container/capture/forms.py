"""Write a synthetic capture in any of the four forms of DESIGN.md ("The capture").

- ``lab``: the object alone on the hemisphere, RGBA (``synthetic.write_capture``);
- ``posed``: the object on a table in a room, ``transforms.json`` with poses, JPEGs without masks
  (the shape of nerfstudio's ``ns-process-data`` output);
- ``photos``: the same scene as phone JPEGs with EXIF focal lengths and nothing else;
- ``video``: an H.264 MP4 walk round the table.

Room forms keep their ground truth beside the capture: ``<stem>.truth.json`` (the true cameras in
the transforms.json convention, the capture's world frame, and ``object_to_world``) and
``<stem>.truth.ply`` (the object alone in that frame). The world frame is upright (table top
y = 0, +Y up, the object's centre on the y axis) unless ``world_transform`` says otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import trimesh

from gpu_container.capture import room, synthetic, video

Form = Literal["lab", "posed", "photos", "video"]
FORMS: tuple[Form, ...] = ("lab", "posed", "photos", "video")
FORM_SUFFIX = {"lab": ".zip", "posed": ".zip", "photos": ".zip", "video": ".mp4"}


def write_form(
    form: Form,
    mesh: trimesh.Trimesh,
    path: Path,
    placement: room.Placement | None = None,
    rig: room.PersonRig | None = None,
    seed: int = 0,
    walk: room.WalkSettings | None = None,
    world_transform: np.ndarray | None = None,
    with_object: bool = True,
) -> synthetic.RenderedCapture:
    """Render ``mesh`` and write it to ``path`` as a capture of ``form``; returns the rendering.

    ``lab`` uses the rig's views and size on the hemisphere round the object alone (its own frame,
    or ``world_transform``); the room forms put it on the table by ``placement``.
    ``with_object=False`` (room forms): the same room and cameras with the table bare, a capture in
    which no object can be found (its truth still says where the object would have stood).
    """
    rig = rig or room.PersonRig()
    path = Path(path)
    if form == "lab":
        if not with_object:
            raise ValueError("a lab capture is the object alone: it cannot leave the object out")
        lab_rig = synthetic.RigSettings(
            views=rig.views, width=rig.width, height=rig.height, layout="hemisphere"
        )
        return synthetic.write_capture(mesh, path, lab_rig, seed=seed, world_transform=world_transform)
    if form == "video":
        return video.write_video(
            mesh,
            path,
            placement,
            rig,
            walk,
            seed=seed,
            world_transform=world_transform,
            with_object=with_object,
        )
    capture = room.render_room_capture(
        mesh, placement, rig, seed=seed, world_transform=world_transform, with_object=with_object
    )
    if form == "posed":
        files = synthetic.capture_files(capture, synthetic.POSED_LAYOUT)
        names = [name for name in files if name != synthetic.TRANSFORMS_FILE]
    elif form == "photos":
        files = synthetic.photo_files(capture)
        names = list(files)
    else:
        raise ValueError(f"unknown form {form!r}; choose one of {FORMS}")
    synthetic.write_zip(files, path)
    synthetic.write_truth(capture, path, names)
    return capture
