"""The preprocessed scene that the hull, reconstruct, mesh and export stages share.

Frames: ``world`` is the frame of ``transforms.json``; ``box`` is the normalised frame in which
the object fits inside the cube [-1, 1]^3. Cameras are camera-to-box matrices with OpenGL axes
(the camera looks down -Z, +Y up, +X right); pixel (u, v) has its origin at the top-left corner
of the image, v growing downwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCENE_FILE = "scene.npz"


@dataclass
class Scene:
    images: np.ndarray  # (N, H, W, 3) uint8, sRGB, background where mask is 0 is undefined
    masks: np.ndarray  # (N, H, W) uint8, 255 = object, 0 = background
    intrinsics: np.ndarray  # (N, 3, 3) float64, pixels of the resized images
    cam_to_box: np.ndarray  # (N, 4, 4) float64, camera-to-box, OpenGL axes
    box_to_world: np.ndarray  # (4, 4) float64 similarity transform back to the capture's frame
    holdout: np.ndarray  # (K,) int64 indices of views kept out of fitting, for report figures
    names: list[str]  # (N,) frame file paths as given in transforms.json

    @property
    def num_views(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of every image."""
        return int(self.images.shape[1]), int(self.images.shape[2])

    @property
    def training_views(self) -> np.ndarray:
        """Indices of the views used for fitting (all but the held-out ones)."""
        keep = np.ones(self.num_views, dtype=bool)
        keep[self.holdout] = False
        return np.flatnonzero(keep)

    def pixels_per_unit(self) -> float:
        """Pixels per box unit at the box centre in the median training view: the scale at which the
        images resolve the object (the hull's grid and the texture's density follow it)."""
        views = self.training_views
        cameras = self.cam_to_box[views]
        depth = np.einsum("ni,ni->n", cameras[:, :3, 2], cameras[:, :3, 3])  # the centre along each axis
        focal = 0.5 * (self.intrinsics[views, 0, 0] + self.intrinsics[views, 1, 1])
        return float(np.median(focal / np.maximum(depth, 1e-9)))

    def save(self, folder: Path) -> Path:
        path = folder / SCENE_FILE
        np.savez_compressed(
            path,
            images=self.images,
            masks=self.masks,
            intrinsics=self.intrinsics,
            cam_to_box=self.cam_to_box,
            box_to_world=self.box_to_world,
            holdout=self.holdout,
            names=np.array(self.names),
        )
        return path

    @classmethod
    def load(cls, folder: Path) -> Scene:
        with np.load(folder / SCENE_FILE) as data:
            return cls(
                images=data["images"],
                masks=data["masks"],
                intrinsics=data["intrinsics"],
                cam_to_box=data["cam_to_box"],
                box_to_world=data["box_to_world"],
                holdout=data["holdout"],
                names=[str(name) for name in data["names"]],
            )


def grid_coordinates(resolution: int) -> np.ndarray:
    """(R,) box coordinates of the grid samples along each axis: ``linspace(-1, 1, R)``.

    Every volume in the engine (hull occupancy, SDF, colour) is indexed ``[i, j, k]`` for the
    point ``(x_i, y_j, z_k)`` with these coordinates, so marching cubes with
    ``spacing = 2 / (R - 1)`` and an offset of -1 lands in box coordinates.
    """
    return np.linspace(-1.0, 1.0, resolution)
