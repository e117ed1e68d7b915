"""Pinhole cameras with OpenGL axes: projection, pixel rays and silhouette look-ups, batched in torch.

Conventions (``engine-spec.md``): a camera looks down its -Z axis, +Y up, +X right; ``cam_to_frame``
maps camera coordinates to the frame the points live in (``box`` for every stage after
preprocess). Pixel (col i, row j) covers [i, i+1) x [j, j+1) and its centre is (i+0.5, j+0.5);
``u = cx + fl_x * x_c / (-z_c)``, ``v = cy - fl_y * y_c / (-z_c)``. The intrinsics matrix is the
usual ``[[fl_x, 0, cx], [0, fl_y, cy], [0, 0, 1]]`` applied to (x_c, -y_c, -z_c), the OpenCV
view of the same camera.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# OpenGL camera axes -> OpenCV camera axes (flip Y and Z); its own inverse.
_GL_TO_CV = (1.0, -1.0, -1.0)


def intrinsics_matrix(fl_x: float, fl_y: float, cx: float, cy: float) -> np.ndarray:
    """(3, 3) float64 pinhole matrix in pixels."""
    return np.array([[fl_x, 0.0, cx], [0.0, fl_y, cy], [0.0, 0.0, 1.0]], dtype=np.float64)


def nearest_views(cam_to_frame: torch.Tensor, count: int) -> torch.Tensor:
    """(N, min(count, N - 1)) indices of each view's nearest other views by direction from the frame's
    origin (the box centre), nearest first."""
    directions = F.normalize(cam_to_frame[:, :3, 3], dim=1)
    cosine = directions @ directions.T
    cosine.fill_diagonal_(-2.0)  # a view is not its own neighbour
    return torch.topk(cosine, min(count, cam_to_frame.shape[0] - 1), dim=1).indices


def _frame_to_camera(cam_to_frame: torch.Tensor) -> torch.Tensor:
    """(N, 4, 4) frame-to-camera matrices (exact inverse, so similarity transforms work too)."""
    return torch.linalg.inv(cam_to_frame)


def project(
    points: torch.Tensor, cam_to_frame: torch.Tensor, intrinsics: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Project points (P, 3) into N cameras.

    Returns ``uv`` (N, P, 2) continuous pixel coordinates and ``depth`` (N, P), the distance in
    front of the camera along its viewing axis (> 0 in front). ``uv`` of points at or behind the
    camera is meaningless; callers mask them with ``depth > 0``.
    """
    frame_to_cam = _frame_to_camera(cam_to_frame.to(points.dtype))  # (N, 4, 4)
    cam = torch.einsum("nij,pj->npi", frame_to_cam[:, :3, :3], points) + frame_to_cam[:, None, :3, 3]
    cam_cv = cam * cam.new_tensor(_GL_TO_CV)  # (N, P, 3), z_cv = depth
    depth = cam_cv[..., 2]
    pixels = torch.einsum("nij,npj->npi", intrinsics.to(points.dtype), cam_cv)  # (N, P, 3)
    safe_depth = torch.where(depth.abs() > 1e-12, pixels[..., 2], torch.ones_like(depth))
    uv = pixels[..., :2] / safe_depth[..., None]
    return uv, depth


def pixel_rays(
    cam_to_frame: torch.Tensor, intrinsics: torch.Tensor, uv: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays through pixel positions ``uv`` (M, 2) of one camera: origins (M, 3), unit directions (M, 3)."""
    uv = uv.to(cam_to_frame.dtype)
    homogeneous = torch.cat([uv, torch.ones_like(uv[:, :1])], dim=1)  # (M, 3)
    dirs_cv = torch.linalg.solve(intrinsics.to(uv.dtype), homogeneous.T).T  # (M, 3), z_cv = 1
    dirs_cam = dirs_cv * dirs_cv.new_tensor(_GL_TO_CV)
    dirs = dirs_cam @ cam_to_frame[:3, :3].T
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    origins = cam_to_frame[:3, 3].expand_as(dirs)
    return origins.contiguous(), dirs


def batched_pixel_rays(
    cam_to_frame: torch.Tensor,
    intrinsics: torch.Tensor,
    view: torch.Tensor,
    uv: torch.Tensor,
    intrinsics_inverse: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays through pixels of many views at once: ``view`` (M,) indices into the (N, ...) cameras.

    ``intrinsics_inverse`` (N, 3, 3) may be passed when it is at hand (hot loops).
    """
    c2f = cam_to_frame[view]  # (M, 4, 4)
    if intrinsics_inverse is None:
        intrinsics_inverse = torch.linalg.inv(intrinsics)
    k_inv = intrinsics_inverse[view]  # (M, 3, 3)
    homogeneous = torch.cat([uv, torch.ones_like(uv[:, :1])], dim=1)
    dirs_cv = torch.einsum("mij,mj->mi", k_inv, homogeneous)
    dirs_cam = dirs_cv * dirs_cv.new_tensor(_GL_TO_CV)
    dirs = torch.einsum("mij,mj->mi", c2f[:, :3, :3], dirs_cam)
    return c2f[:, :3, 3].contiguous(), dirs / dirs.norm(dim=1, keepdim=True)


def _in_image(uv: torch.Tensor, depth: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, P) True where a point lies in front of the camera and inside its image."""
    u, v = uv[..., 0], uv[..., 1]
    return (depth > 0) & (u >= 0) & (u < width) & (v >= 0) & (v < height)


def silhouette_votes(
    points: torch.Tensor, masks: torch.Tensor, cam_to_frame: torch.Tensor, intrinsics: torch.Tensor
) -> torch.Tensor:
    """(P,) int64: for how many of the N views each point is inside the silhouette.

    ``masks`` (N, H, W) bool, looked up at the pixel that contains the projection. A point outside
    an image (or behind its camera) counts as inside that view's silhouette, so a view that does not
    see the whole object does not carve it.
    """
    height, width = masks.shape[1:]
    uv, depth = project(points, cam_to_frame, intrinsics)
    seen = _in_image(uv, depth, height, width)
    cols = uv[..., 0].floor().long().clamp(0, width - 1)
    rows = uv[..., 1].floor().long().clamp(0, height - 1)
    view = torch.arange(masks.shape[0], device=points.device)[:, None]
    inside = masks[view, rows, cols]  # (N, P)
    return (inside | ~seen).sum(dim=0)


def silhouette_coverage(
    points: torch.Tensor, masks: torch.Tensor, cam_to_frame: torch.Tensor, intrinsics: torch.Tensor
) -> torch.Tensor:
    """(N, P) float in [0, 1]: each view's mask sampled bilinearly at each point's projection.

    The soft counterpart of ``silhouette_votes`` (sub-pixel silhouettes for a smooth hull);
    ``masks`` (N, H, W) float in [0, 1]. Points outside an image or behind a camera read 1.
    """
    height, width = masks.shape[1:]
    uv, depth = project(points, cam_to_frame, intrinsics)
    seen = _in_image(uv, depth, height, width)
    # grid_sample with align_corners=False: -1 / +1 are the outer edges of the image.
    scale = uv.new_tensor([2.0 / width, 2.0 / height])
    grid = (uv * scale - 1.0).to(masks.dtype)[:, :, None, :]  # (N, P, 1, 2)
    sampled = F.grid_sample(
        masks[:, None], grid, mode="bilinear", padding_mode="border", align_corners=False
    )  # (N, 1, P, 1)
    sampled = sampled[:, 0, :, 0]
    return torch.where(seen, sampled, torch.ones_like(sampled))
