"""Masks when the capture has none: the object found from the geometry the views share, no learned weights.

1. The support plane: sequential RANSAC over the triangulated points finds the large planes (table,
   floor, walls); the support is the one below the point the cameras look at, with (nearly) every
   camera on the same side as that point, that holds the most points near it. Walls and the
   object's own faces fail the side test; the floor lies far below.
2. The object: the points standing above the plane (higher than the support's own scatter reaches:
   how deep its points scatter below it says how high they scatter above) within a cylinder round
   the look-at axis, linked into connected groups (``cKDTree`` pairs within a link radius, grown
   until the largest group holds most of the points: features cluster on textured corners and
   leave plain parts bare); the group with the most points near the axis. Too few points:
   ``CaptureError("object_not_found")``.
3. Per view: every object point projects inside the object's silhouette (occluded or not), so the
   projections seed it, and their convex hull, with the points dropped onto the plane (an object
   stands on its support: legs and bases too plain for features to match lie in between), grown,
   bounds it. The support check marks the pixels that show the plane itself (their colour matches
   where other views see the same point of the plane; shadows on the table too) as background.
   OpenCV GrabCut splits the rest on colour (definite background beyond the grown hull only: a
   silhouette running off the image stays open at the border, as a close-up must).
4. Cross-check: the masks carve a k-of-n visual hull above the plane (``hull.soft_vote``; a fifth of
   the views may disagree, and a view's exclusion that one of its neighbours repeats carves), whose
   rendering (embree) seeds a second GrabCut; the last hull's rendering confirms: a view's mask is
   kept where it lies within a few pixels of it, so the table under the object and stray pixels that
   other views do not confirm drop out (the rendering is not added: on the cross-check's coarse grid
   it stands a pixel or two proud of every outline).
   Masks can be grown by ``final_grow_px`` (none by default: the hull's neighbour rule keeps what a
   lone view misses, and a grown outline stands proud in every view).
5. Confidence: how sure each final mask is of its background (``background_confidence``: GrabCut's
   colour models of the object and of what surrounds it rate each background pixel), for the hull
   stage, which lets a sure view carve alone. Masks are found at
   ``min_work_size`` or finer and area-resampled to the stage's size (soft edges).

Masks returned are (N, H, W) uint8 (255 object) at the images' size. Cameras: OpenGL
camera-to-world, pinhole intrinsics; a radial term (SIMPLE_RADIAL ``k1``) is applied in the
projections where given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import ConvexHull, QhullError, cKDTree

# Modules, not names: preprocess imports this module (through estimated_capture), and hull, mesh
# and preprocess import one another; their attributes are looked up at call time.
from gpu_container.engine import hull as hull_stage
from gpu_container.engine import mesh as mesh_stage
from gpu_container.engine import plane_sweep
from gpu_container.engine import preprocess as preprocess_stage
from gpu_container.engine.context import CaptureError, StageContext
from gpu_container.engine.render import PinholeCamera, RayCaster

OFF_IMAGE = -1e4  # colour read beyond another view's image: matches nothing


@dataclass(frozen=True)
class MaskParams:
    ransac_iterations: int = 400
    plane_tolerance: float = (
        0.006  # inlier distance, a fraction of the cameras' median distance to the look-at point
    )
    max_planes: int = 5  # sequential RANSAC: planes looked for
    min_plane_points: int = 40  # a plane needs this many inliers
    camera_side_fraction: float = 0.9  # cameras that must be on the look-at point's side of the support
    min_height: float = (
        0.012  # object points stand this far above the plane (fraction of the camera distance) ...
    )
    # ... or as far as the support's own scatter reaches: the points triangulated on the table spread
    # about its plane (blurred video frames: a few times the posed captures' spread), and those that
    # land above it would join the object. What lies below the plane near the axis can only be that
    # scatter, so the ``noise_quantile`` of its depth (below ``noise_depth`` of the camera distance:
    # the floor lies deeper) is how high the scatter reaches above.
    noise_quantile: float = 0.98
    noise_depth: float = 0.1
    search_radius: float = 0.6  # cylinder round the look-at axis searched, fraction of the camera distance
    link_factor: float = 4.0  # link radius: this times the candidates' median nearest-neighbour spacing
    min_link: float = 0.02  # ... and at least this (fraction of the camera distance)
    # Features cluster where an object's texture has corners (a painted grid's crossings) and leave its
    # plain parts bare, so a link radius set by the median spacing can split an object into dozens of
    # groups (a bowl on the table: 207 points on it, the largest group 30). The radius grows by
    # ``link_growth`` a step, up to ``max_link``, until the main group holds ``main_group_share`` of the
    # points standing near the axis (the object is most of what stands where the cameras look), and
    # on until a step adds at most ``settle_gain`` of its points: the share is reached where the
    # object's islands are just joining (a bowl: 72 points at 0.05 of the camera distance, 280 at
    # 0.06, 306 at 0.07, then 309), where a few per cent of radius decide whether a fifth of it is in.
    main_group_share: float = 0.5
    link_growth: float = 1.15
    settle_gain: float = 0.05
    max_link: float = 0.12  # fraction of the camera distance
    min_object_points: int = 25  # fewer points above the plane near the axis: object_not_found
    outlier_quantile: float = (
        0.98  # object points beyond this quantile of distance from their centre are dropped
    )
    # GrabCut's region reaches down to the support plane under the object points (legs, a base)
    support_column: bool = True
    # Support check: a pixel whose ray meets the support plane and whose colour other views see at
    # that point of the plane (textured, matching) is the table, shadows included: definite background.
    support_check_views: int = 4  # other views compared, their directions nearest ...
    support_check_angle_deg: float = 30.0  # ... this angle from the view's own (parallax off the plane)
    support_check_tolerance: float = 6.0  # mean absolute colour difference (0-255) of a match
    support_check_texture: float = 6.0  # a pixel's local grey standard deviation must exceed this
    support_check_window_px: int = 5  # window of both
    # ... and where the plane matches better than any of these heights above it (multiples of
    # ``min_height``) does: just above its base an object's pixel is seen through the plane a little
    # behind it, where the other views see nearly the same point of the object (small parallax) and
    # its colour matches; at its own height above the plane it matches better. A pixel of the table
    # (a shadow too) matches on the plane and its texture shifts off it. Without this test the object's
    # lowest band was marked as table, hard background, and GrabCut's background model then took the
    # whole band (the first masks' recall on the posed room captures, draft: a bowl 0.83 -> 0.96, a
    # block 0.89 -> 0.91, a cup 0.92 -> 0.95, Spot 0.966 -> 0.971; asking the plane to match 10 %
    # better moved F@1 % by -0.02..+0.004 on Spot, the cup and the block). Empty: the plane alone decides.
    support_check_heights: tuple[float, ...] = (0.5, 1.0, 2.0)
    hull_grow: float = 0.12  # per view, the points' 2D hull is grown by this fraction of its size
    grabcut_iterations: int = 6
    seed_radius_px: int = 1  # definite-object disk round each projected point
    carve_resolution: int = 64  # grid points per axis of the cross-check's hull
    carve_tolerance_fraction: float = 0.2  # views allowed to exclude a hull point (k-of-n)
    # ... and a view's exclusion carves alone where one of its this many nearest views repeats it
    # (``hull.HullParams.neighbour_views``: the k-of-n vote alone keeps a shell round the object)
    carve_neighbour_views: int = 2
    carve_margin: float = 0.25  # the carve cube's half side over the object points' half extent
    confirm_grow_px: int = 2  # a mask pixel is kept within this distance of the hull's rendering
    refine_passes: int = 1  # GrabCut again from the hull's rendering (object core, band, background)
    refine_band_px: int = 5  # half width of the uncertain band round the rendering's outline
    # The final masks are grown by this many pixels (0: as found). With the hull stage's neighbour rule
    # a lone mask's miss no longer carves, and a grown outline, repeated by every view, stands proud
    # of the object all round: on the posed room capture of Spot at 256² (standard) one pixel cost
    # F@1 % 0.801 -> 0.712.
    final_grow_px: int = 0
    # Masks are found at a long side of at least this many pixels (never above the images'), then
    # area-resampled to the stage's size: at a coarse size a GrabCut pixel is a large share of the
    # outline, and the resampled masks keep sub-pixel coverage for the hull's bilinear look-ups.
    min_work_size: int = 256
    # What stands off the support plane (``plane_sweep``), opt-in: after the first GrabCut, the
    # region's pixels it left out are swept; those that stand off the plane (a dark foot beside its
    # shadow) seed the object in the cross-check's GrabCut, those on it are background. Off by
    # default: on the posed room capture of Spot (draft) it recovers part of the legs' lowest fifth
    # (recall of the masks there 0.61 -> 0.77) but GrabCut, seeded with the hooves' dark colours,
    # also takes the shadowed table between the legs, which only the front and back views see, so
    # the hull keeps it (F@1 % 0.811 -> 0.780; +1.3 s for the masks at a load of 4).
    sweep: plane_sweep.SweepParams | None = None
    # How sure each view is of its background (``background_confidence``, for the hull stage): a pixel
    # outside the mask is sure where its colour is this many times (natural log) likelier under the
    # background's colour model than under the object's (a ramp from 0); 0: no confidence (the hull's
    # neighbour rule everywhere).
    confidence_log_ratio: float = 8.0
    # The colour models are fitted round the mask: its bounding box grown by this fraction of its size
    # (at least ``confidence_min_margin_px``); beyond, far from the object, the background is sure.
    confidence_margin: float = 0.15
    confidence_min_margin_px: int = 8
    seed: int = 0


PRESET_PARAMS = {
    "draft": MaskParams(carve_resolution=48),  # found at 256², area-resampled to 128²
    "standard": MaskParams(),
    "high": MaskParams(carve_resolution=96),
}


def params_for(preset: str) -> MaskParams:
    if preset not in PRESET_PARAMS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESET_PARAMS)}")
    return PRESET_PARAMS[preset]


@dataclass
class Plane:
    normal: np.ndarray  # (3,) unit, towards the cameras
    offset: float  # plane: normal . x + offset = 0

    def height(self, points: np.ndarray) -> np.ndarray:
        """(P,) signed distance above the plane."""
        return points @ self.normal + self.offset


@dataclass
class FoundObject:
    plane: Plane | None
    points: np.ndarray  # (K, 3) the object's points
    index: np.ndarray  # (K,) their indices in the input points
    look_at: np.ndarray  # (3,)
    scale: float  # the cameras' median distance to the look-at point
    figures: dict

    def transformed(self, transform: np.ndarray) -> FoundObject:
        """The same object in another frame; ``transform`` (4, 4) rigid, new <- old."""
        rotation, shift = transform[:3, :3], transform[:3, 3]
        plane = None
        if self.plane is not None:
            normal = rotation @ self.plane.normal
            plane = Plane(normal, float(self.plane.offset - normal @ shift))
        move = lambda points: points @ rotation.T + shift  # noqa: E731
        return FoundObject(
            plane, move(self.points), self.index, move(self.look_at[None])[0], self.scale, self.figures
        )


# --- geometry ----------------------------------------------------------------------------------


def ransac_planes(
    points: np.ndarray, tolerance: float, params: MaskParams
) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """Up to ``max_planes`` planes (normal, offset, inlier mask), largest first, found one after another."""
    rng = np.random.default_rng(params.seed)
    remaining = np.ones(len(points), dtype=bool)
    planes = []
    for _ in range(params.max_planes):
        candidates = np.flatnonzero(remaining)
        if len(candidates) < params.min_plane_points:
            break
        triples = candidates[rng.integers(0, len(candidates), size=(params.ransac_iterations, 3))]
        a, b, c = points[triples[:, 0]], points[triples[:, 1]], points[triples[:, 2]]
        normals = np.cross(b - a, c - a)
        length = np.linalg.norm(normals, axis=1)
        valid = length > 1e-12
        normals, a = normals[valid] / length[valid, None], a[valid]
        offsets = -np.einsum("ij,ij->i", normals, a)
        distances = np.abs(points[candidates] @ normals.T + offsets)  # (C, I)
        counts = (distances < tolerance).sum(axis=0)
        best = int(np.argmax(counts))
        if counts[best] < params.min_plane_points:
            break
        normal, offset = normals[best], offsets[best]
        inliers = np.zeros(len(points), dtype=bool)
        inliers[candidates[distances[:, best] < tolerance]] = True
        # least-squares refit on the inliers
        centre = points[inliers].mean(axis=0)
        _, _, vt = np.linalg.svd(points[inliers] - centre, full_matrices=False)
        normal = vt[2] if vt[2] @ normal >= 0 else -vt[2]
        offset = -float(normal @ centre)
        inliers = remaining & (np.abs(points @ normal + offset) < tolerance)
        planes.append((normal, offset, inliers))
        remaining &= ~inliers
    return planes


def support_plane(
    planes: list[tuple[np.ndarray, float, np.ndarray]],
    points: np.ndarray,
    cam_to_world: np.ndarray,
    look_at: np.ndarray,
    scale: float,
    params: MaskParams,
) -> Plane | None:
    """The plane under ``look_at``, with the cameras on its side, that holds the most ``points`` within
    ``search_radius`` of it; ``None`` if no plane qualifies.

    Most points near where the cameras look, not the nearest plane below: after the table's inliers
    are taken, sequential RANSAC also finds thin slabs just above it (the table's points beyond the
    tolerance with the object's lowest ones), and the nearest of those would cut the object (a block
    lost its lower half, a bowl its floor). The floor under the table lies beyond the radius.
    """
    centres = cam_to_world[:, :3, 3]
    near = np.linalg.norm(points - look_at, axis=1) < params.search_radius * scale
    best: Plane | None = None
    best_key = (-1, 0.0)
    for normal, offset, inliers in planes:
        side = np.sign(look_at @ normal + offset)
        if side == 0:
            continue
        plane = Plane(normal * side, float(offset * side))
        above = np.mean(plane.height(centres) > 0)
        key = (int((inliers & near).sum()), -float(plane.height(look_at[None])[0]))
        if above >= params.camera_side_fraction and key > best_key:
            best, best_key = plane, key
    return best


def find_object(
    points: np.ndarray, cam_to_world: np.ndarray, params: MaskParams, look_at: np.ndarray | None = None
) -> FoundObject:
    """The support plane and the points of the object standing on it near where the cameras look."""
    look_at = preprocess_stage.look_at_point(cam_to_world) if look_at is None else look_at
    scale = float(np.median(np.linalg.norm(cam_to_world[:, :3, 3] - look_at, axis=1)))
    planes = ransac_planes(points, params.plane_tolerance * scale, params) if len(points) else []
    plane = support_plane(planes, points, cam_to_world, look_at, scale, params)
    if plane is not None:
        height = plane.height(points)
        axis_foot = look_at - plane.height(look_at[None])[0] * plane.normal
        offsets = points - axis_foot
        radial = np.linalg.norm(offsets - np.outer(offsets @ plane.normal, plane.normal), axis=1)
        near = radial < params.search_radius * scale
        lowest = max(params.min_height * scale, _scatter_height(height[near], scale, params))
        candidate = (height > lowest) & near
        candidate &= height < float(np.median(plane.height(cam_to_world[:, :3, 3])))
    else:  # no support in view (a plain backdrop): the points round the look-at point
        radial = np.linalg.norm(points - look_at, axis=1)
        candidate = radial < params.search_radius * scale
    index = np.flatnonzero(candidate)
    figures = {"points": len(points), "planes_found": len(planes), "support_plane": plane is not None}
    if plane is not None:
        figures["min_object_height"] = lowest / scale
    if len(index) < params.min_object_points:
        raise CaptureError(
            "object_not_found",
            f"{len(index)} reconstructed points stand above the support near where the cameras look "
            f"(at least {params.min_object_points} are needed): no object in view?",
        )
    group = _main_group(points[index], radial[index], scale, params)
    index = index[group]
    centre = np.median(points[index], axis=0)
    spread = np.linalg.norm(points[index] - centre, axis=1)
    index = index[spread <= np.quantile(spread, params.outlier_quantile)]
    if len(index) < params.min_object_points:
        raise CaptureError(
            "object_not_found",
            f"the points near where the cameras look form no object ({len(index)} connected points, "
            f"at least {params.min_object_points} are needed)",
        )
    figures["object_points"] = len(index)
    return FoundObject(plane, points[index], index, look_at, scale, figures)


def _scatter_height(height: np.ndarray, scale: float, params: MaskParams) -> float:
    """How far the support's scatter reaches above its plane (``MaskParams`` "noise"), from how far
    it reaches below: the quantile of the depths of the points just under the plane (0 without any)."""
    below = -height[(height < 0) & (height > -params.noise_depth * scale)]
    return float(np.quantile(below, params.noise_quantile)) if len(below) else 0.0


def _main_group(points: np.ndarray, radial: np.ndarray, scale: float, params: MaskParams) -> np.ndarray:
    """(K,) bool: the connected group of ``points`` with most members (ties: nearest the axis), at the
    link radius of the ladder (``MaskParams`` "link") where it holds most of them and has settled."""
    tree = cKDTree(points)
    spacing, _ = tree.query(points, k=2)
    link = max(params.link_factor * float(np.median(spacing[:, 1])), params.min_link * scale)
    group = _largest_group(tree, radial, link)
    first_shared = None  # the group where the share was first reached: kept if it never settles
    widest = params.max_link * scale
    while link * params.link_growth <= widest:
        wider = _largest_group(tree, radial, link * params.link_growth)
        if group.sum() >= params.main_group_share * len(points):
            if wider.sum() <= (1.0 + params.settle_gain) * group.sum():
                return group
            first_shared = group if first_shared is None else first_shared
        link *= params.link_growth
        group = wider
    return group if first_shared is None else first_shared


def _largest_group(tree: cKDTree, radial: np.ndarray, link: float) -> np.ndarray:
    """(K,) bool: the largest group of the tree's points linked within ``link`` (ties: nearest the axis)."""
    pairs = tree.query_pairs(link, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(tree.n,) * 2)
    _, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels)
    nearest = np.full(len(sizes), np.inf)
    np.minimum.at(nearest, labels, radial)
    best = max(range(len(sizes)), key=lambda label: (sizes[label], -nearest[label]))
    return labels == best


def upright_transform(found: FoundObject) -> np.ndarray:
    """(4, 4) rigid upright <- SfM: support plane y = 0, its normal +Y, the object's centre on the y axis."""
    if found.plane is None:
        raise CaptureError(
            "object_not_found", "no support surface under the object: the upright frame is undefined"
        )
    up = found.plane.normal
    x_axis = np.eye(3)[0] - up[0] * up
    if np.linalg.norm(x_axis) < 1e-6:
        x_axis = np.eye(3)[2] - up[2] * up
    x_axis /= np.linalg.norm(x_axis)
    z_axis = np.cross(x_axis, up)
    rotation = np.stack([x_axis, up, z_axis])  # rows: the new axes in SfM coordinates
    turned = found.points @ rotation.T
    centre = 0.5 * (turned.min(axis=0) + turned.max(axis=0))  # the bounding box's, in the new axes
    transform = np.eye(4)
    transform[:3, :3] = rotation
    transform[:3, 3] = [-centre[0], found.plane.offset, -centre[2]]  # height above the plane = new y
    return transform


# --- masks -------------------------------------------------------------------------------------


def project(points: np.ndarray, cam_to_world: np.ndarray, intrinsics: np.ndarray, radial: float = 0.0):
    """Pixels (P, 2) and depths (P,) of ``points`` in one camera (OpenGL axes), with a radial ``k1``."""
    world_to_cam = np.linalg.inv(cam_to_world)
    in_camera = points @ world_to_cam[:3, :3].T + world_to_cam[:3, 3]
    depth = -in_camera[:, 2]
    x = in_camera[:, 0] / np.where(np.abs(depth) > 1e-12, depth, 1e-12)
    y = -in_camera[:, 1] / np.where(np.abs(depth) > 1e-12, depth, 1e-12)
    factor = 1.0 + radial * (x * x + y * y)
    uv = np.stack(
        [intrinsics[0, 0] * x * factor + intrinsics[0, 2], intrinsics[1, 1] * y * factor + intrinsics[1, 2]],
        1,
    )
    return uv, depth


def search_polygons(
    uv: np.ndarray, uv_support: np.ndarray | None, params: MaskParams, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray] | None:
    """The object's region in one view: the convex hull (V, 2) of the points' projections ``uv`` and
    of ``uv_support`` (their feet), and that hull grown by ``hull_grow``; None with too few in view."""
    height, width = size
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
    if inside.sum() < 3:
        return None
    region = uv if uv_support is None else np.concatenate([uv, uv_support])
    try:
        hull = region[ConvexHull(region).vertices]
    except QhullError:
        return None
    centre = hull.mean(axis=0)
    return hull, centre + (hull - centre) * (1.0 + 2.0 * params.hull_grow)


def search_region(polygons: tuple[np.ndarray, np.ndarray] | None, size: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: inside the grown polygon of ``search_polygons`` (nothing when it is None)."""
    region = np.zeros(size, dtype=np.uint8)
    if polygons is not None:
        cv2.fillPoly(region, [np.round(polygons[1] * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return region > 0


def grabcut_mask(
    image: np.ndarray,
    uv: np.ndarray,
    params: MaskParams,
    uv_support: np.ndarray | None = None,
    background: np.ndarray | None = None,
) -> np.ndarray:
    """(H, W) bool object mask of one view from the object points' projections ``uv`` (P, 2).

    ``uv_support`` (Q, 2): the projections of the same points dropped onto the support plane. An
    object stands on its support, so the region between its points and the plane may hold it (legs,
    a base: surfaces too plain for features to be matched on); it widens the region GrabCut decides
    on, but seeds nothing. ``background`` (H, W) bool: pixels known to be background (the table).
    """
    height, width = image.shape[:2]
    polygons = search_polygons(uv, uv_support, params, (height, width))
    if polygons is None:
        return np.zeros((height, width), dtype=bool)
    hull, grown = polygons
    size = float(np.max(hull.max(axis=0) - hull.min(axis=0)))
    labels = np.full((height, width), cv2.GC_BGD, dtype=np.uint8)
    cv2.fillPoly(labels, [np.round(grown * 16).astype(np.int32)], cv2.GC_PR_BGD, lineType=cv2.LINE_8, shift=4)
    cv2.fillPoly(labels, [np.round(hull * 16).astype(np.int32)], cv2.GC_PR_FGD, lineType=cv2.LINE_8, shift=4)
    if background is not None:
        labels[background] = cv2.GC_BGD
    labels[seed_pixels(uv, (height, width), params.seed_radius_px)] = cv2.GC_FGD
    # GrabCut over the grown hull's box only (with a margin of definite background round it)
    margin = max(4, int(0.1 * size))
    x0, y0 = np.maximum(np.floor(grown.min(axis=0)).astype(int) - margin, 0)
    x1, y1 = np.minimum(np.ceil(grown.max(axis=0)).astype(int) + margin, [width, height])
    roi = labels[y0:y1, x0:x1].copy()
    if not (roi == cv2.GC_FGD).any() or not np.isin(roi, (cv2.GC_BGD, cv2.GC_PR_BGD)).any():
        return np.isin(labels, (cv2.GC_FGD, cv2.GC_PR_FGD))
    background, foreground = np.zeros((1, 65)), np.zeros((1, 65))
    crop = np.ascontiguousarray(image[y0:y1, x0:x1, ::-1])  # OpenCV wants BGR
    cv2.setRNGSeed(params.seed)
    cv2.grabCut(crop, roi, None, background, foreground, params.grabcut_iterations, cv2.GC_INIT_WITH_MASK)
    mask = np.zeros((height, width), dtype=bool)
    mask[y0:y1, x0:x1] = np.isin(roi, (cv2.GC_FGD, cv2.GC_PR_FGD))
    return _largest_parts(mask)


def _largest_parts(mask: np.ndarray, keep_fraction: float = 0.05) -> np.ndarray:
    """``mask`` with its connected parts under ``keep_fraction`` of the largest removed (holes are kept)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return mask
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero(areas >= keep_fraction * areas.max()) + 1
    return np.isin(labels, keep)


def hull_renderings(
    masks: np.ndarray,
    cam_to_world: np.ndarray,
    intrinsics: np.ndarray,
    found: FoundObject,
    params: MaskParams,
    ctx: StageContext,
) -> np.ndarray | None:
    """(N, H, W) bool: the k-of-n hull the masks carve above the support, rendered into every view.

    ``None`` when the masks share no volume.
    """
    height, width = masks.shape[1:]
    low, high = found.points.min(axis=0), found.points.max(axis=0)
    centre = 0.5 * (low + high)
    half = 0.5 * float(np.max(high - low)) * (1.0 + 2.0 * params.carve_margin)
    cam_to_box = cam_to_world.copy()
    cam_to_box[:, :3, 3] = (cam_to_world[:, :3, 3] - centre) / half
    resolution = params.carve_resolution
    axis = np.linspace(-1.0, 1.0, resolution)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    hull_params = hull_stage.HullParams(
        resolution=resolution,
        coarse_resolution=resolution,
        tolerance_views=math.floor(params.carve_tolerance_fraction * len(masks)),
        neighbour_views=params.carve_neighbour_views,
    )
    occupancy = hull_stage.soft_vote(
        torch.from_numpy(grid.astype(np.float32)),
        torch.from_numpy(masks.astype(np.float32)),
        torch.from_numpy(cam_to_box.astype(np.float32)),
        torch.from_numpy(intrinsics.astype(np.float32)),
        hull_params,
        ctx,
    ).numpy()
    if found.plane is not None:  # nothing of the object lies below its support
        below = found.plane.height(centre + half * grid) < -params.plane_tolerance * found.scale
        occupancy[below] = 0.0
    volume = occupancy.reshape((resolution,) * 3)
    if volume.max() < 0.5 or volume.min() >= 0.5:
        return None
    vertices, faces = mesh_stage.extract_surface(0.5 - volume.astype(np.float32))
    caster = RayCaster(vertices, faces)
    out = np.zeros(masks.shape, dtype=bool)
    for view in range(len(masks)):
        ctx.check_stop()
        camera = PinholeCamera(cam_to_box[view], intrinsics[view], height, width)
        origins, directions = camera.pixel_rays()
        out[view] = caster.cast(origins, directions).hit.reshape(height, width)
    return out


def _grown(mask: np.ndarray, pixels: int) -> np.ndarray:
    kernel = np.ones((2 * pixels + 1,) * 2, dtype=np.uint8)
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


def _shrunk(mask: np.ndarray, pixels: int) -> np.ndarray:
    kernel = np.ones((2 * pixels + 1,) * 2, dtype=np.uint8)
    return cv2.erode(mask.astype(np.uint8), kernel, borderType=cv2.BORDER_REPLICATE) > 0


def seed_pixels(uv: np.ndarray, size: tuple[int, int], radius: int) -> np.ndarray:
    """(H, W) bool: disks of ``radius`` round the projections ``uv`` (P, 2) that fall in the image."""
    seeds = np.zeros(size, dtype=np.uint8)
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < size[1]) & (uv[:, 1] >= 0) & (uv[:, 1] < size[0])
    for u, v in uv[inside].astype(np.int32):
        cv2.circle(seeds, (int(u), int(v)), radius, 1, -1)
    return seeds > 0


def grabcut_refined(
    image: np.ndarray,
    rendered: np.ndarray,
    params: MaskParams,
    background: np.ndarray | None = None,
    seeds: np.ndarray | None = None,
) -> np.ndarray:
    """(H, W) bool: GrabCut seeded by a hull rendering (its core object, beyond a band background);
    ``background``: pixels known to be background whatever the rendering says; ``seeds``: pixels
    known to be object (the object points: thin parts have no core in the rendering)."""
    labels = np.full(rendered.shape, cv2.GC_BGD, dtype=np.uint8)
    labels[_grown(rendered, params.refine_band_px)] = cv2.GC_PR_BGD
    labels[rendered] = cv2.GC_PR_FGD
    labels[_shrunk(rendered, params.refine_band_px)] = cv2.GC_FGD
    if background is not None:
        labels[background] = cv2.GC_BGD
    if seeds is not None:
        labels[seeds] = cv2.GC_FGD
    if not (labels == cv2.GC_FGD).any() or not (labels == cv2.GC_BGD).any():
        return rendered
    rows, cols = np.nonzero(labels != cv2.GC_BGD)
    margin = params.refine_band_px * 2
    y0, x0 = max(rows.min() - margin, 0), max(cols.min() - margin, 0)
    y1, x1 = min(rows.max() + margin + 1, rendered.shape[0]), min(cols.max() + margin + 1, rendered.shape[1])
    roi = labels[y0:y1, x0:x1].copy()
    crop = np.ascontiguousarray(image[y0:y1, x0:x1, ::-1])
    cv2.setRNGSeed(params.seed)
    background, foreground = np.zeros((1, 65)), np.zeros((1, 65))
    cv2.grabCut(crop, roi, None, background, foreground, params.grabcut_iterations, cv2.GC_INIT_WITH_MASK)
    mask = np.zeros(rendered.shape, dtype=bool)
    mask[y0:y1, x0:x1] = np.isin(roi, (cv2.GC_FGD, cv2.GC_PR_FGD))
    return _largest_parts(mask)


def _support_pixels(
    cam_to_world: np.ndarray, intrinsics: np.ndarray, plane: Plane, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Where every pixel centre's ray meets ``plane``: points (H, W, 3) and whether it does, ahead (H, W)."""
    height, width = size
    rows, cols = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    in_camera = np.stack(
        [
            (cols - intrinsics[0, 2]) / intrinsics[0, 0],
            -(rows - intrinsics[1, 2]) / intrinsics[1, 1],
            -np.ones_like(cols),
        ],
        axis=-1,
    )
    directions = in_camera @ cam_to_world[:3, :3].T
    origin = cam_to_world[:3, 3]
    along = directions @ plane.normal
    distance = -plane.height(origin[None])[0] / np.where(np.abs(along) > 1e-12, along, 1e-12)
    return origin + distance[..., None] * directions, distance > 0


def _local_mean(image: np.ndarray, window: int) -> np.ndarray:
    return cv2.blur(image, (window, window), borderType=cv2.BORDER_REPLICATE)


def support_background(
    images: np.ndarray,
    cam_to_world: np.ndarray,
    intrinsics: np.ndarray,
    found: FoundObject,
    params: MaskParams,
) -> np.ndarray:
    """(N, H, W) bool: pixels that show the support plane itself (``MaskParams`` "support check").

    Each view is compared with a few others through the plane: a pixel's ray meets the plane at a
    point, the other view's colour there is looked up, and where it matches (in a textured window)
    for at least one of them, and better than at any of ``support_check_heights`` above the plane,
    the pixel shows the plane. The object stands off the plane, so its pixels land elsewhere in other
    views and do not match (plain parts of it could by chance, hence the texture condition), or, just
    above its base, match better at their own height; shadows on the table are on the plane and match
    like the rest of it.
    """
    count, height, width = images.shape[:3]
    out = np.zeros((count, height, width), dtype=bool)
    if found.plane is None or count < 2:
        return out
    window = params.support_check_window_px
    smooth = np.stack([cv2.GaussianBlur(image.astype(np.float32), (0, 0), 1.0) for image in images])
    directions = cam_to_world[:, :3, 3] - found.look_at
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    angles = np.degrees(np.arccos(np.clip(directions @ directions.T, -1.0, 1.0)))
    raised = [
        Plane(found.plane.normal, found.plane.offset - factor * params.min_height * found.scale)
        for factor in params.support_check_heights
    ]
    for view in range(count):
        grey = cv2.cvtColor(images[view], cv2.COLOR_RGB2GRAY).astype(np.float32)
        variance = _local_mean(grey * grey, window) - _local_mean(grey, window) ** 2
        textured = np.sqrt(np.maximum(variance, 0.0)) > params.support_check_texture
        closeness = np.abs(angles[view] - params.support_check_angle_deg)
        closeness[view] = np.inf
        others = np.argsort(closeness)[: params.support_check_views]
        through = partial(_plane_difference, smooth, cam_to_world, intrinsics, view, others, window)
        on_plane, ahead = through(found.plane)
        off_plane = np.full((height, width), np.inf, dtype=np.float32)
        for plane in raised:
            off_plane = np.minimum(off_plane, through(plane)[0])
        out[view] = ahead & textured & (on_plane < params.support_check_tolerance) & (on_plane < off_plane)
    return out


def _plane_difference(
    smooth: np.ndarray,
    cam_to_world: np.ndarray,
    intrinsics: np.ndarray,
    view: int,
    others: np.ndarray,
    window: int,
    plane: Plane,
) -> tuple[np.ndarray, np.ndarray]:
    """How well ``view``'s pixels match the ``others`` (indices) through ``plane``: the least mean
    absolute colour difference (H, W) over a ``window`` (inf where no other view sees the point), and
    whether each pixel's ray meets the plane ahead (H, W). ``smooth``: (N, H, W, 3) float32 images."""
    height, width = smooth.shape[1:3]
    points, ahead = _support_pixels(cam_to_world[view], intrinsics[view], plane, (height, width))
    best = np.full((height, width), np.inf, dtype=np.float32)
    for other in others:
        uv, depth = project(points.reshape(-1, 3), cam_to_world[other], intrinsics[other])
        map_x = (uv[:, 0] - 0.5).reshape(height, width).astype(np.float32)  # OpenCV: centre at 0
        map_y = (uv[:, 1] - 0.5).reshape(height, width).astype(np.float32)
        seen = cv2.remap(
            smooth[other],
            map_x,
            map_y,
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=OFF_IMAGE,
        )
        difference = _local_mean(np.abs(seen - smooth[view]).mean(axis=-1), window)
        difference[depth.reshape(height, width) <= 0] = np.inf
        best = np.minimum(best, difference)
    return best, ahead


GMM_COMPONENTS = 5  # OpenCV GrabCut's colour models: 5 full-covariance Gaussians in 65 numbers


def colour_log_density(model: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """(P,) log density of ``colours`` (P, 3) under a GrabCut colour model (1, 65): the weights,
    the means (3 each) and the covariances (9 each) of its components, in that order."""
    values = model.reshape(-1).astype(np.float64)
    count = GMM_COMPONENTS
    weights = values[:count]
    means = values[count : 4 * count].reshape(count, 3)
    covariances = values[4 * count :].reshape(count, 3, 3) + 1e-2 * np.eye(3)  # as GrabCut regularises
    terms = np.full((len(colours), count), -np.inf)
    for component in np.flatnonzero(weights > 0):
        inverse = np.linalg.inv(covariances[component])
        _, log_det = np.linalg.slogdet(covariances[component])
        offset = colours - means[component]
        distance = np.einsum("pi,ij,pj->p", offset, inverse, offset)
        terms[:, component] = np.log(weights[component]) - 0.5 * (
            distance + log_det + 3 * math.log(2 * math.pi)
        )
    peak = terms.max(axis=1, keepdims=True)
    return peak[:, 0] + np.log(np.exp(terms - peak).sum(axis=1))


def background_confidence(image: np.ndarray, mask: np.ndarray, params: MaskParams) -> np.ndarray:
    """(H, W) float32 in [0, 1]: how sure one view's mask (H, W) bool is of its background.

    Object and background colour models (GrabCut's Gaussian mixtures, fitted to the mask round the
    object) rate each background pixel: where its colour is far likelier under the background's the
    view is sure (a correct outline then carves as strictly as a given mask), where it could be the
    object's it is not (a missed horn of the table's colour, a shadowed flank). Everything beyond the
    models' region is sure; inside the mask the value is 1 (it claims no background there). Holes in
    the mask are not sure (more often a mask error than a hole through the object; the hull's
    neighbour rule still carves those its neighbours repeat), nor is anything of an empty mask. The
    support check's table pixels are not taken as sure: on Spot a thousand of them lie on the object
    (textured patches that match by chance), and each carved a hole.
    """
    height, width = mask.shape
    rows, cols = np.nonzero(mask)
    if len(rows) == 0:
        return np.zeros((height, width), dtype=np.float32)
    confidence = np.ones((height, width), dtype=np.float32)
    size = max(rows.max() - rows.min(), cols.max() - cols.min()) + 1
    margin = max(params.confidence_min_margin_px, int(params.confidence_margin * size))
    y0, x0 = max(rows.min() - margin, 0), max(cols.min() - margin, 0)
    y1, x1 = min(rows.max() + margin + 1, height), min(cols.max() + margin + 1, width)
    inside = mask[y0:y1, x0:x1]
    if inside.sum() < GMM_COMPONENTS or (~inside).sum() < GMM_COMPONENTS:
        sure = np.zeros(inside.shape, dtype=np.float32)  # no background (or object) to model
    else:
        labels = np.where(inside, cv2.GC_FGD, cv2.GC_BGD).astype(np.uint8)
        crop = np.ascontiguousarray(image[y0:y1, x0:x1, ::-1])  # OpenCV wants BGR
        background, foreground = np.zeros((1, 65)), np.zeros((1, 65))
        cv2.setRNGSeed(params.seed)
        # no iterations: GrabCut only fits its colour models to the labels
        cv2.grabCut(crop, labels, None, background, foreground, 0, cv2.GC_INIT_WITH_MASK)
        colours = crop.reshape(-1, 3).astype(np.float64)
        ratio = colour_log_density(background, colours) - colour_log_density(foreground, colours)
        sure = np.clip(ratio / params.confidence_log_ratio, 0.0, 1.0).reshape(inside.shape)
    confidence[y0:y1, x0:x1] = np.where(inside, 1.0, sure)
    confidence[_holes(mask)] = 0.0
    return confidence


def _holes(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool: background pixels of ``mask`` that no path of background joins to the image border."""
    padded = np.pad(~mask, 1, constant_values=True).astype(np.uint8)
    _, labels = cv2.connectedComponents(padded, connectivity=4)
    return (labels != labels[0, 0])[1:-1, 1:-1] & ~mask


def max_radial_shift(radial: np.ndarray, intrinsics: np.ndarray, size: tuple[int, int]) -> float:
    """Pixels the radial terms move an image corner by: the error of treating the cameras as pinholes."""
    height, width = size
    corner = np.hypot(
        np.maximum(intrinsics[:, 0, 2], width - intrinsics[:, 0, 2]) / intrinsics[:, 0, 0],
        np.maximum(intrinsics[:, 1, 2], height - intrinsics[:, 1, 2]) / intrinsics[:, 1, 1],
    )
    return float(np.max(np.abs(radial) * corner**3 * intrinsics[:, 0, 0]))


def estimate_masks(
    images: np.ndarray,
    cam_to_world: np.ndarray,
    intrinsics: np.ndarray,
    radial: np.ndarray,
    found: FoundObject,
    params: MaskParams,
    ctx: StageContext,
    band: tuple[float, float] = (0.0, 1.0),
) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """(N, H, W) uint8 masks (255 object) of ``images`` (N, H, W, 3) for the object ``found``, how
    sure each is of its background (N, H, W) uint8 (``background_confidence``; None when
    ``confidence_log_ratio`` is 0), and figures."""
    low, high = band
    masks = np.zeros(images.shape[:3], dtype=bool)
    pinhole = max_radial_shift(radial, intrinsics, images.shape[1:3]) <= params.confirm_grow_px
    table = support_background(images, cam_to_world, intrinsics, found, params) if pinhole else None
    seeds = np.zeros(images.shape[:3], dtype=bool)
    regions = np.zeros(images.shape[:3], dtype=bool)
    sweeping = table is not None and params.sweep is not None and found.plane is not None
    first_share = 0.6 if sweeping else 0.8  # of the band: the first GrabCut, then the sweep
    for view in range(len(images)):
        ctx.check_stop()
        uv, depth = project(found.points, cam_to_world[view], intrinsics[view], float(radial[view]))
        support = None
        if found.plane is not None and params.support_column:
            feet = found.points - np.outer(found.plane.height(found.points), found.plane.normal)
            uv_feet, depth_feet = project(feet, cam_to_world[view], intrinsics[view], float(radial[view]))
            support = uv_feet[depth_feet > 0]
        masks[view] = grabcut_mask(
            images[view], uv[depth > 0], params, support, None if table is None else table[view]
        )
        if sweeping:  # the sweep looks only inside the object's region
            regions[view] = search_region(
                search_polygons(uv[depth > 0], support, params, images.shape[1:3]), images.shape[1:3]
            )
        seeds[view] = seed_pixels(uv[depth > 0], images.shape[1:3], params.seed_radius_px)
        ctx.on_progress(
            low + (high - low) * first_share * (view + 1) / len(images), f"masks {view + 1} of {len(images)}"
        )
    figures: dict = {"refine_passes": 0}
    if sweeping:
        sweep_ctx = ctx.within(low + (high - low) * first_share, low + (high - low) * 0.8)
        verdict = plane_sweep.standing_pixels(
            images, cam_to_world, intrinsics, found, regions & ~masks & ~table, params.sweep, sweep_ctx
        )
        figures["standing_pixels"] = int((verdict == plane_sweep.STANDING).sum())
        seeds |= verdict == plane_sweep.STANDING  # what stands off the plane seeds the object ...
        table |= verdict == plane_sweep.ON_PLANE  # ... and what lies on it is background
    if pinhole:
        for refine in range(params.refine_passes + 1):
            rendered = hull_renderings(masks, cam_to_world, intrinsics, found, params, ctx)
            if rendered is None:
                break
            if refine == params.refine_passes:  # the last hull confirms: a view's own outline is
                # kept where it lies within a few pixels of the hull's rendering (the rendering itself
                # is not added: a k-of-n hull on a coarse grid stands a pixel or two proud of every
                # outline, and the strict hull stage would keep that rim as extra material)
                near = np.stack([_grown(view, params.confirm_grow_px) for view in rendered])
                consistent = masks & near
                total = max(int(masks.sum()), 1)
                figures["cross_check_kept_fraction"] = float((masks & near).sum() / total)
                masks = np.stack([_grown(view, params.final_grow_px) for view in consistent])
                break
            masks = np.stack(
                [
                    grabcut_refined(image, view, params, known, seed)
                    for image, view, known, seed in zip(images, rendered, table, seeds, strict=True)
                ]
            )
            figures["refine_passes"] = refine + 1
            ctx.on_progress(low + (high - low) * (0.8 + 0.1 * (refine + 1)), "masks cross-checked")
    confidence = None
    if params.confidence_log_ratio > 0:
        confidence = np.zeros(masks.shape, dtype=np.uint8)
        for view in range(len(masks)):
            ctx.check_stop()
            sure = background_confidence(images[view], masks[view], params)
            confidence[view] = np.round(255.0 * sure).astype(np.uint8)
            ctx.on_progress(
                low + (high - low) * (0.9 + 0.1 * (view + 1) / len(masks)),
                f"mask confidence {view + 1} of {len(masks)}",
            )
        background = confidence[~masks]
        figures["sure_background_fraction"] = float((background > 127).mean()) if background.size else 0.0
    ctx.on_progress(high, "masks done")
    empty = int((masks.sum(axis=(1, 2)) == 0).sum())
    figures.update(
        {"mask_views": len(masks), "empty_masks": empty, "mean_mask_fraction": float(masks.mean())}
    )
    return (masks.astype(np.uint8) * 255), confidence, figures
