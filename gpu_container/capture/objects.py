"""Procedural test objects (textured, some with real concavities) and the loader for Spot.

Every object is built in its own frame with +Z up and its base near z = 0. Concave objects have
a cavity open only at the top (a bowl, a cup, a block with a blind pocket): every silhouette of
them is the silhouette of the filled shape, so a visual hull cannot see the cavity.

Solid objects (``SOLID_OBJECTS``) are built by CSG (manifold3d) and coloured by a 3D pattern
(``solid_colors``) on a mesh refined to ``SOLID_EDGE`` so that flat faces carry photometric detail:
an elongated thin wand whose bulk sits at one end (off-centre), sharp-edged mechanical parts with
flat faces, bores and concave channels, and a thin plate.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import manifold3d
import numpy as np
import trimesh
from PIL import Image
from trimesh.visual import TextureVisuals

SPOT_MESH_FILE = "spot_triangulated.obj"
SPOT_TEXTURE_FILE = "spot_texture.png"
TEXTURE_SIZE = 512
CHECKER_CELLS = 8
PROFILE_STEP = 0.04  # longest profile segment (object units) before it is subdivided
ROUND_SECTIONS = 96  # angular sections of round revolved objects
SOLID_EDGE = 0.03  # object units: longest edge of the CSG objects' refined meshes (vertex colours)
SOLID_CELL = 0.25  # object units: side of a cell of the solid objects' 3D checker
BORE_SEGMENTS = 48  # sides of the CSG objects' cylinders


def procedural_texture(size: int = TEXTURE_SIZE, cells: int = CHECKER_CELLS) -> Image.Image:
    """A colourful texture with gradients and edges everywhere, so photometric fitting has signal.

    Hue runs along u, brightness along v, a checkerboard and thin grid lines add sharp edges.
    """
    u = (np.arange(size) + 0.5) / size
    uu, vv = np.meshgrid(u, u, indexing="xy")  # (size, size), row = 1 - v
    hue = 2 * np.pi * uu
    rgb = np.stack(
        [0.55 + 0.35 * np.cos(hue), 0.55 + 0.35 * np.cos(hue - 2.1), 0.55 + 0.35 * np.cos(hue + 2.1)], axis=-1
    )
    checker = ((np.floor(uu * cells) + np.floor(vv * cells)) % 2).astype(np.float64)
    rgb *= (0.65 + 0.35 * checker)[..., None]
    rgb *= (0.8 + 0.2 * np.cos(3 * np.pi * vv))[..., None]
    line_width = 0.06
    cell_u = (uu * cells) % 1.0
    cell_v = (vv * cells) % 1.0
    on_line = (np.minimum(cell_u, 1 - cell_u) < line_width / 2) | (
        np.minimum(cell_v, 1 - cell_v) < line_width / 2
    )
    rgb[on_line] *= 0.35
    return Image.fromarray(np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8), mode="RGB")


def _subdivide_polyline(points: np.ndarray, step: float) -> np.ndarray:
    """(P, 2) polyline -> the same polyline with no segment longer than ``step``."""
    out = [points[:1]]
    for start, end in itertools.pairwise(points):
        pieces = max(1, int(np.ceil(np.linalg.norm(end - start) / step)))
        t = (np.arange(1, pieces + 1) / pieces)[:, None]
        out.append(start + t * (end - start))
    return np.concatenate(out)


def revolve_textured(
    profile: np.ndarray, sections: int, texture: Image.Image, angle_offset: float = 0.0
) -> trimesh.Trimesh:
    """Revolve an (r, z) profile about +Z into a closed, UV-mapped mesh with outward normals.

    The profile should start and end on the axis (r = 0). u runs around the axis, v along the
    profile's arc length; the seam and the axis rings keep separate vertices for their UVs.
    ``sections = 4`` with ``angle_offset = pi / 4`` turns r into the half-diagonal of a square.
    """
    profile = np.asarray(profile, dtype=np.float64)  # (P, 2)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(profile, axis=0), axis=1))])
    v_coord = 1.0 - arc / arc[-1]
    angles = angle_offset + 2 * np.pi * np.arange(sections + 1) / sections  # seam duplicated
    ring_count, profile_count = sections + 1, len(profile)
    r, z = profile[:, 0], profile[:, 1]
    vertices = np.stack(
        [
            r[None, :] * np.cos(angles)[:, None],
            r[None, :] * np.sin(angles)[:, None],
            np.broadcast_to(z, (ring_count, profile_count)),
        ],
        axis=-1,
    ).reshape(-1, 3)
    uv = np.stack(
        np.broadcast_arrays((np.arange(ring_count) / sections)[:, None], v_coord[None, :]), axis=-1
    ).reshape(-1, 2)
    index = np.arange(ring_count * profile_count).reshape(ring_count, profile_count)
    a, b = index[:-1, :-1], index[1:, :-1]
    c, d = index[1:, 1:], index[:-1, 1:]
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    mesh.update_faces(mesh.nondegenerate_faces(height=1e-12))
    if mesh.volume < 0:
        mesh.faces = mesh.faces[:, ::-1]
    mesh.visual = TextureVisuals(uv=uv, image=texture)
    return mesh


def _round_rim(outer: tuple[float, float], inner: tuple[float, float], points: int = 9) -> np.ndarray:
    """A half circle over the top from the outer rim point to the inner one (both at one height)."""
    centre_r = 0.5 * (outer[0] + inner[0])
    radius = 0.5 * (outer[0] - inner[0])
    theta = np.linspace(0.0, np.pi, points)[1:-1]
    return np.stack([centre_r + radius * np.cos(theta), outer[1] + radius * np.sin(theta)], axis=-1)


def bowl(radius: float = 1.0, height: float = 0.6, wall: float = 0.08) -> trimesh.Trimesh:
    """A round, textured bowl: elliptic outer and inner walls and a rounded rim."""
    s = np.linspace(0.0, 1.0, 33)
    outer = np.stack([radius * np.sin(s * np.pi / 2), height * (1 - np.cos(s * np.pi / 2))], -1)
    inner_radius = radius - wall
    inner = np.stack(
        [inner_radius * np.sin(s * np.pi / 2), wall + (height - wall) * (1 - np.cos(s * np.pi / 2))], -1
    )
    rim = _round_rim((radius, height), (inner_radius, height))
    profile = np.concatenate([outer, rim, inner[::-1]])
    return revolve_textured(_subdivide_polyline(profile, PROFILE_STEP), ROUND_SECTIONS, procedural_texture())


def cup(radius: float = 0.6, height: float = 1.2, wall: float = 0.08, base: float = 0.15) -> trimesh.Trimesh:
    """A straight-walled, textured cup with a thick base: a deep, narrow cavity."""
    inner = radius - wall
    corners = np.array([[0, 0], [radius, 0], [radius, height]], dtype=np.float64)
    inside = np.array([[inner, height], [inner, base], [0, base]], dtype=np.float64)
    profile = np.concatenate([corners, _round_rim((radius, height), (inner, height)), inside])
    return revolve_textured(_subdivide_polyline(profile, PROFILE_STEP), ROUND_SECTIONS, procedural_texture())


def pocket_block(
    half_side: float = 0.8, height: float = 1.0, pocket_half_side: float = 0.5, floor: float = 0.35
) -> trimesh.Trimesh:
    """A square block with a blind square pocket in its top face (axis-aligned, textured)."""
    diagonal = np.sqrt(2.0)
    profile = np.array(
        [
            [0, 0],
            [half_side * diagonal, 0],
            [half_side * diagonal, height],
            [pocket_half_side * diagonal, height],
            [pocket_half_side * diagonal, floor],
            [0, floor],
        ],
        dtype=np.float64,
    )
    return revolve_textured(
        _subdivide_polyline(profile, PROFILE_STEP), 4, procedural_texture(), angle_offset=np.pi / 4
    )


def textured_sphere(radius: float = 1.0, subdivisions: int = 3) -> trimesh.Trimesh:
    """A convex control object: an icosphere with smooth procedural vertex colours."""
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    unit = mesh.vertices / radius
    rgb = 0.5 + 0.4 * np.stack(
        [np.sin(3 * unit[:, 0]), np.sin(3 * unit[:, 1] + 1), np.cos(3 * unit[:, 2])], -1
    )
    alpha = np.ones((len(unit), 1))
    mesh.visual.vertex_colors = np.clip(np.concatenate([rgb, alpha], -1) * 255 + 0.5, 0, 255).astype(np.uint8)
    return mesh


# --- solid (CSG) objects -------------------------------------------------------------------------


def solid_colors(points: np.ndarray, cell: float = SOLID_CELL) -> np.ndarray:
    """(P, 4) uint8 RGBA of a 3D pattern at ``points (P, 3)``: hue along a diagonal, a 3D checker,
    dark grid lines (the solid counterpart of ``procedural_texture``)."""
    hue = 2 * np.pi * (points @ np.array([0.35, 0.25, 0.15]))
    rgb = np.stack(
        [0.55 + 0.35 * np.cos(hue), 0.55 + 0.35 * np.cos(hue - 2.1), 0.55 + 0.35 * np.cos(hue + 2.1)], axis=-1
    )
    cells = points / cell
    checker = (np.floor(cells).sum(axis=1) % 2).astype(np.float64)
    rgb *= (0.65 + 0.35 * checker)[:, None]
    to_line = np.abs(cells - np.round(cells)).min(axis=1)
    rgb[to_line < 0.04] *= 0.35
    alpha = np.ones((len(points), 1))
    return np.clip(np.concatenate([rgb, alpha], axis=1) * 255 + 0.5, 0, 255).astype(np.uint8)


def _box(size: tuple[float, float, float], low: tuple[float, float, float]) -> manifold3d.Manifold:
    return manifold3d.Manifold.cube(size).translate(low)


def _rod(radius: float, start: tuple[float, float, float], axis: str, length: float) -> manifold3d.Manifold:
    """A cylinder of ``radius`` from ``start`` along +``axis`` ("x", "y" or "z") for ``length``."""
    rod = manifold3d.Manifold.cylinder(length, radius, circular_segments=BORE_SEGMENTS)
    turn = {"x": (0.0, 90.0, 0.0), "y": (-90.0, 0.0, 0.0), "z": (0.0, 0.0, 0.0)}[axis]
    return rod.rotate(turn).translate(start)


def solid_mesh(solid: manifold3d.Manifold) -> trimesh.Trimesh:
    """The manifold refined to ``SOLID_EDGE``, as a watertight trimesh with ``solid_colors``."""
    refined = solid.refine_to_length(SOLID_EDGE).to_mesh()
    vertices = np.asarray(refined.vert_properties, dtype=np.float64)[:, :3]
    mesh = trimesh.Trimesh(vertices, np.asarray(refined.tri_verts, dtype=np.int64), process=False)
    mesh.visual.vertex_colors = solid_colors(vertices)
    return mesh


def wand(length: float = 2.0, radius: float = 0.05, head: float = 0.2) -> trimesh.Trimesh:
    """Elongated and thin (40:1 shaft): a rod with a ball at one end and a cross-guard near it, so
    the bulk sits far from the bounding box's centre."""
    shaft = _rod(radius, (0.0, 0.0, 0.0), "z", length)
    ball = manifold3d.Manifold.sphere(head, BORE_SEGMENTS).translate((0.0, 0.0, length))
    guard = _box((0.5, 0.08, 0.06), (-0.25, -0.04, length - 0.45))
    return solid_mesh(shaft + ball + guard)


def bracket() -> trimesh.Trimesh:
    """A sharp-edged L bracket: flat faces, a concave inner corner, two bores through the base, one
    through the upright and a slot (a concave channel) along the base."""
    base = _box((1.6, 0.8, 0.16), (0.0, 0.0, 0.0))
    upright = _box((0.16, 0.8, 1.0), (0.0, 0.0, 0.0))
    holes = _rod(0.1, (0.7, 0.4, -0.1), "z", 0.4) + _rod(0.1, (1.3, 0.4, -0.1), "z", 0.4)
    upright_hole = _rod(0.12, (-0.1, 0.4, 0.65), "x", 0.4)
    slot = _box((1.3, 0.16, 0.1), (0.3, 0.05, 0.08))
    return solid_mesh(base + upright - holes - upright_hole - slot)


def channel_block() -> trimesh.Trimesh:
    """A block with a U channel milled across its top, a blind bore in one shoulder and a through
    bore along its length (flat faces, sharp edges, concavities the silhouettes partly show)."""
    block = _box((1.4, 0.9, 0.7), (0.0, 0.0, 0.0))
    channel = _box((1.6, 0.3, 0.35), (-0.1, 0.3, 0.36))
    blind = _rod(0.09, (0.35, 0.15, 0.4), "z", 0.4)
    through = _rod(0.1, (-0.1, 0.45, 0.18), "x", 1.6)
    return solid_mesh(block - channel - blind - through)


def thin_plate(thickness: float = 0.04) -> trimesh.Trimesh:
    """A thin part: a plate 1/40 of its length thick, with a round hole and a rectangular window."""
    plate = _box((1.6, 1.0, thickness), (0.0, 0.0, 0.0))
    hole = _rod(0.18, (0.4, 0.5, -0.1), "z", 0.3)
    window = _box((0.5, 0.3, 0.3), (0.9, 0.35, -0.1))
    return solid_mesh(plate - hole - window)


def load_spot(folder: Path) -> trimesh.Trimesh:
    """Keenan Crane's Spot from ``folder`` (read in place), textured, rotated to +Z up."""
    mesh = trimesh.load(Path(folder) / SPOT_MESH_FILE, process=False, force="mesh")
    uv = np.asarray(mesh.visual.uv, dtype=np.float64)
    with Image.open(Path(folder) / SPOT_TEXTURE_FILE) as image:
        texture = image.convert("RGB")
    mesh = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    mesh.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))  # +Y up -> +Z up
    mesh.visual = TextureVisuals(uv=uv, image=texture)
    return mesh


PROCEDURAL_OBJECTS: dict[str, Callable[[], trimesh.Trimesh]] = {
    "bowl": bowl,
    "cup": cup,
    "pocket_block": pocket_block,
    "sphere": textured_sphere,
    "wand": wand,
    "bracket": bracket,
    "channel_block": channel_block,
    "thin_plate": thin_plate,
}
CONCAVE_OBJECTS = ("bowl", "cup", "pocket_block")
SOLID_OBJECTS = ("wand", "bracket", "channel_block", "thin_plate")


def make_object(name: str) -> trimesh.Trimesh:
    """One of ``PROCEDURAL_OBJECTS`` by name."""
    try:
        return PROCEDURAL_OBJECTS[name]()
    except KeyError:
        raise ValueError(f"unknown object {name!r}; choose one of {sorted(PROCEDURAL_OBJECTS)}") from None
