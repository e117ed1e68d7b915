"""Real-looking scenes for synthetic captures: the object on a table inside a room, seen by a person.

The scene frame is metric and +Z up: the floor is z = 0, the table's centre stands on the z axis,
its top at ``RoomSettings.table_height``. Every surface (floor, walls, ceiling, table top, edges
and legs) carries its own non-repeating procedural texture (noise at several scales plus random
patches and strokes), so feature detectors such as SIFT find distinct corners everywhere, as in a
real room. The object is scaled to a size in metres and set down on the table (``Placement``).

Cameras are those of a person walking round the table with a phone (``PersonRig``): two rings at
standing heights, with jitter in distance, height, azimuth, aim and roll, and some close-ups in
which the object runs off the frame; or a smooth walk-around path for a video (``walkaround_path``).

The capture's world frame defaults to the upright frame DESIGN.md gives results of estimated
cameras: the table top is y = 0, +Y up, the object's centre on the y axis (``upright_transform``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh
from PIL import Image, ImageDraw
from trimesh.visual import TextureVisuals

from gpu_container.capture import synthetic


@dataclass(frozen=True)
class RoomSettings:
    """The room and its table, metres; texture densities in texels per metre."""

    width: float = 4.0  # along x
    depth: float = 5.0  # along y
    height: float = 2.6
    table_width: float = 1.2
    table_depth: float = 0.8
    table_height: float = 0.75  # the top surface above the floor
    table_thickness: float = 0.04
    leg_side: float = 0.05
    room_texels_per_m: float = 320.0
    table_texels_per_m: float = 1100.0
    max_texture_side: int = 2048
    patches_per_m2: float = 40.0  # posters, tiles, papers, stains: shapes with corners on every surface
    strokes_per_m2: float = 30.0
    patch_size_m: tuple[float, float] = (0.008, 0.3)  # sides log-uniform between these


@dataclass(frozen=True)
class Placement:
    """Where the object stands: its size, its offset from the table's centre and its turn."""

    size: float = 0.25  # the longest side of the object's bounding box, metres
    offset: tuple[float, float] = (0.0, 0.0)  # (x, y) from the table's centre, metres
    yaw_deg: float = 0.0


@dataclass(frozen=True)
class PersonRig:
    """Photos a person takes walking round the table (heights above the floor, metres)."""

    views: int = 48
    width: int = 256
    height: int = 256
    camera_angle_x: float = 1.0  # radians: a phone's wide lens (~57 degrees)
    ring_heights: tuple[float, ...] = (1.05, 1.5)  # one ring of views per height
    height_jitter: float = 0.05
    fill: float = 0.75  # fraction of the narrower field of view the object's bounding sphere spans
    distance_jitter: float = 0.12  # relative, uniform +-
    azimuth_jitter_deg: float = 4.0
    aim_jitter: float = 0.15  # the aim point strays this fraction of the bounding radius
    roll_jitter_deg: float = 3.0
    closeup_every: int = 6  # every n-th view is a close-up (0: none)
    closeup_fill: float = 2.0  # the bounding sphere spans this much of the view: it runs off the frame
    supersample: int = 2


@dataclass(frozen=True)
class WalkSettings:
    """A smooth walk round the table for a video: one turn, height and distance breathing slowly."""

    seconds: float = 12.0
    fps: float = 15.0
    turns: float = 1.0
    height_cycles: float = 1.5  # up and down between the rig's lowest and highest ring
    distance_cycles: float = 2.0
    distance_swing: float = 0.12  # relative
    closeup_at: float = 0.6  # fraction of the walk where the person leans in (a close-up); < 0: none
    closeup_width: float = 0.05  # fraction of the walk the lean lasts (Gaussian sigma)
    aim_wobble: float = 0.1  # fraction of the bounding radius, slow sines
    roll_wobble_deg: float = 2.0

    @property
    def frames(self) -> int:
        return max(1, round(self.seconds * self.fps))


# --- textures -----------------------------------------------------------------------------------


def _near(base: np.ndarray, rng: np.random.Generator, spread: float) -> tuple[int, int, int]:
    """A random colour near ``base`` (brighter or darker, slightly tinted) as 0-255 integers."""
    colour = np.asarray(base) * rng.uniform(1 - spread, 1 + 0.6 * spread) + rng.normal(0, 0.25 * spread, 3)
    return tuple(int(c) for c in np.clip(colour * 255, 0, 255))


def noise_texture(
    shape: tuple[int, int],
    rng: np.random.Generator,
    base: tuple[float, float, float],
    contrast: float = 0.25,
    stretch: float = 1.0,
    patches: int = 0,
    strokes: int = 0,
    patch_px: tuple[float, float] = (4.0, 120.0),
) -> Image.Image:
    """A (height, width) RGB texture that never repeats: octaves of smooth noise, patches and strokes.

    ``stretch`` > 1 elongates the noise along u (wood grain). Patches (rectangles, discs) of sides
    log-uniform in ``patch_px`` and strokes (lines) in colours near ``base`` give corners and
    blobs at many scales, which is what feature detectors need.
    """
    height, width = shape
    base_rgb = np.asarray(base, dtype=np.float64)
    rgb = np.broadcast_to(base_rgb, (height, width, 3)).copy()
    for cell in (96, 32, 12, 4):
        if cell > max(height, width):
            continue
        grid = rng.standard_normal((max(2, int(height / cell)), max(2, int(width / (cell * stretch)))))
        tint = rng.normal(1.0, 0.1, 3)
        smooth = np.asarray(
            Image.fromarray(grid.astype(np.float32), mode="F").resize(
                (width, height), Image.Resampling.BICUBIC
            )
        )
        rgb += contrast * (cell / 96) ** 0.2 * smooth[..., None] * tint * 0.5
    image = Image.fromarray(np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8), mode="RGB")
    draw = ImageDraw.Draw(image)
    low, high = np.log(patch_px[0]), np.log(max(patch_px[1], patch_px[0] + 1))
    for _ in range(patches):
        w, h = np.exp(rng.uniform(low, high)), np.exp(rng.uniform(low, high))
        x, y = rng.uniform(-w / 2, width - w / 2), rng.uniform(-h / 2, height - h / 2)
        shape_of = draw.rectangle if rng.random() < 0.6 else draw.ellipse
        shape_of([x, y, x + w, y + h], fill=_near(base_rgb, rng, 0.45))
    for _ in range(strokes):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        length, angle = np.exp(rng.uniform(low, high)) * 2, rng.uniform(0, np.pi)
        end = (x + length * np.cos(angle), y + length * np.sin(angle))
        draw.line([(x, y), end], fill=_near(base_rgb, rng, 0.6), width=int(rng.integers(1, 4)))
    return image


def textured_quad(
    corner: np.ndarray, edge_u: np.ndarray, edge_v: np.ndarray, texture: Image.Image
) -> trimesh.Trimesh:
    """A rectangle ``corner + s * edge_u + t * edge_v`` (s, t in [0, 1]) with its texture spread once."""
    corner, edge_u, edge_v = (np.asarray(a, dtype=np.float64) for a in (corner, edge_u, edge_v))
    vertices = np.stack([corner, corner + edge_u, corner + edge_u + edge_v, corner + edge_v])
    uv = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    mesh = trimesh.Trimesh(vertices, [[0, 1, 2], [0, 2, 3]], process=False)
    mesh.visual = TextureVisuals(uv=uv, image=texture)
    return mesh


def _texture_shape(edge_u: np.ndarray, edge_v: np.ndarray, density: float, cap: int) -> tuple[int, int]:
    return (
        int(np.clip(np.linalg.norm(edge_v) * density, 8, cap)),
        int(np.clip(np.linalg.norm(edge_u) * density, 8, cap)),
    )


def _surface(
    corner, edge_u, edge_v, rng: np.random.Generator, room: RoomSettings, density: float, **texture
) -> trimesh.Trimesh:
    edge_u, edge_v = np.asarray(edge_u, dtype=np.float64), np.asarray(edge_v, dtype=np.float64)
    area = np.linalg.norm(edge_u) * np.linalg.norm(edge_v)
    shape = _texture_shape(edge_u, edge_v, density, room.max_texture_side)
    texels_per_m = shape[1] / np.linalg.norm(edge_u)  # the cap may lower the density asked for
    image = noise_texture(
        shape,
        rng,
        patches=round(room.patches_per_m2 * area * texture.pop("detail", 1.0)),
        strokes=round(room.strokes_per_m2 * area * texture.pop("strokes", 1.0)),
        patch_px=(room.patch_size_m[0] * texels_per_m, room.patch_size_m[1] * texels_per_m),
        **texture,
    )
    return textured_quad(corner, edge_u, edge_v, image)


def _box_faces(
    low: np.ndarray, high: np.ndarray, rng: np.random.Generator, room: RoomSettings, density: float, **texture
) -> list[trimesh.Trimesh]:
    """The six faces of an axis-aligned box, each its own textured quad."""
    (x0, y0, z0), (x1, y1, z1) = low, high
    dx, dy, dz = np.array([x1 - x0, 0, 0]), np.array([0, y1 - y0, 0]), np.array([0, 0, z1 - z0])
    faces = [
        ((x0, y0, z1), dx, dy),
        ((x0, y0, z0), dx, dy),
        ((x0, y0, z0), dx, dz),
        ((x0, y1, z0), dx, dz),
        ((x0, y0, z0), dy, dz),
        ((x1, y0, z0), dy, dz),
    ]
    return [_surface(np.array(c), u, v, rng, room, density, **dict(texture)) for c, u, v in faces]


SHELL_PARTS = 6  # floor, ceiling and four walls: the last parts of ``room_parts``


def room_parts(room: RoomSettings, rng: np.random.Generator) -> list[trimesh.Trimesh]:
    """A table with four legs, then floor, ceiling and four walls, all textured (scene frame, +Z up)."""
    half_w, half_d, top = room.width / 2, room.depth / 2, room.height
    density = room.room_texels_per_m
    shell = [
        _surface(
            (-half_w, -half_d, 0),
            (room.width, 0, 0),
            (0, room.depth, 0),
            rng,
            room,
            density,
            base=(0.45, 0.33, 0.22),
            contrast=0.22,
            stretch=4.0,
        ),  # wooden floor
        _surface(
            (-half_w, -half_d, top),
            (room.width, 0, 0),
            (0, room.depth, 0),
            rng,
            room,
            density,
            base=(0.85, 0.85, 0.82),
            contrast=0.1,
            detail=0.3,
        ),  # ceiling
    ]
    walls = [
        ((-half_w, -half_d, 0), (room.width, 0, 0), (0.75, 0.72, 0.65)),
        ((-half_w, half_d, 0), (room.width, 0, 0), (0.62, 0.7, 0.74)),
        ((-half_w, -half_d, 0), (0, room.depth, 0), (0.78, 0.66, 0.6)),
        ((half_w, -half_d, 0), (0, room.depth, 0), (0.66, 0.72, 0.6)),
    ]
    for corner, edge_u, base in walls:
        shell.append(
            _surface(corner, edge_u, (0, 0, top), rng, room, density, base=base, contrast=0.22, detail=2.0)
        )
    table_half = np.array([room.table_width / 2, room.table_depth / 2])
    board_low = np.array([-table_half[0], -table_half[1], room.table_height - room.table_thickness])
    board_high = np.array([table_half[0], table_half[1], room.table_height])
    furniture = _box_faces(
        board_low,
        board_high,
        rng,
        room,
        room.table_texels_per_m,
        base=(0.55, 0.4, 0.28),
        contrast=0.18,
        stretch=5.0,
        detail=1.5,
        strokes=2.0,
    )
    inset = room.leg_side
    for sx in (-1, 1):
        for sy in (-1, 1):
            centre = np.array([sx * (table_half[0] - inset), sy * (table_half[1] - inset)])
            low = np.array([*(centre - room.leg_side / 2), 0.0])
            high = np.array([*(centre + room.leg_side / 2), board_low[2]])
            furniture += _box_faces(
                low,
                high,
                rng,
                room,
                room.room_texels_per_m * 2,
                base=(0.35, 0.25, 0.18),
                contrast=0.2,
                detail=0.0,
                strokes=0.0,
            )
    return [*furniture, *shell]


# --- the object on the table --------------------------------------------------------------------


def object_on_table(mesh: trimesh.Trimesh, placement: Placement, room: RoomSettings) -> np.ndarray:
    """(4, 4) similarity from the object's own frame (+Z up) to the scene: sized, turned, on the table.

    ValueError when the object would stand (partly) off the table top or reach the ceiling.
    """
    extent = mesh.bounds[1] - mesh.bounds[0]
    scale = placement.size / float(extent.max())
    turn = trimesh.transformations.rotation_matrix(np.radians(placement.yaw_deg), [0, 0, 1])
    centre = 0.5 * (mesh.bounds[0] + mesh.bounds[1])
    to_origin = trimesh.transformations.translation_matrix([-centre[0], -centre[1], -mesh.bounds[0, 2]])
    scaled = np.diag([scale, scale, scale, 1.0])
    onto_table = trimesh.transformations.translation_matrix([*placement.offset, room.table_height])
    transform = onto_table @ scaled @ turn @ to_origin
    low, high = placed_bounds(mesh, transform)
    table = np.array([room.table_width / 2, room.table_depth / 2])
    if (np.abs(low[:2]) > table).any() or (np.abs(high[:2]) > table).any() or high[2] >= room.height:
        raise ValueError(
            f"a {placement.size} m object at {placement.offset} does not fit on the "
            f"{room.table_width} x {room.table_depth} m table"
        )
    return transform


def upright_transform(object_centre: np.ndarray, table_height: float) -> np.ndarray:
    """(4, 4) scene (+Z up) -> upright world (+Y up, table top y = 0, object centre on the y axis)."""
    z_up_to_y_up = np.array([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]])
    shift = trimesh.transformations.translation_matrix([-object_centre[0], -object_centre[1], -table_height])
    return z_up_to_y_up @ shift


# --- cameras ------------------------------------------------------------------------------------


def _rolled(camera: np.ndarray, roll_deg: float) -> np.ndarray:
    """The camera turned by ``roll_deg`` about its viewing axis."""
    roll = trimesh.transformations.rotation_matrix(np.radians(roll_deg), [0, 0, 1])
    return camera @ roll


def _camera(eye: np.ndarray, target: np.ndarray, roll_deg: float) -> np.ndarray:
    return _rolled(synthetic.look_at(eye, target, np.array([0.0, 0.0, 1.0])), roll_deg)


def _half_fov(width: int, height: int, camera_angle_x: float) -> float:
    fl = 0.5 * width / np.tan(0.5 * camera_angle_x)
    return float(np.arctan(0.5 * min(width, height) / fl))


def bounding_sphere(bounds: np.ndarray) -> tuple[np.ndarray, float]:
    """(centre (3,), radius) of the sphere round an axis-aligned box."""
    centre = 0.5 * (bounds[0] + bounds[1])
    return centre, float(0.5 * np.linalg.norm(bounds[1] - bounds[0]))


def person_cameras(bounds: np.ndarray, rig: PersonRig, rng: np.random.Generator) -> np.ndarray:
    """(N, 4, 4) camera-to-scene matrices of photos taken round an object with scene ``bounds``.

    Views are split over the rings (``ring_heights``), spread evenly in azimuth with jitter; every
    ``closeup_every``-th view leans in so the bounding sphere spans ``closeup_fill`` of the view,
    aimed at a random point of the object's upper half.
    """
    centre, radius = bounding_sphere(bounds)
    half_fov = _half_fov(rig.width, rig.height, rig.camera_angle_x)
    distance = radius / np.sin(half_fov * rig.fill)
    closeup_distance = radius / np.sin(min(half_fov * rig.closeup_fill, 0.5 * np.pi))
    rings = len(rig.ring_heights)
    start = rng.uniform(0, 2 * np.pi)
    cameras = []
    for index in range(rig.views):
        ring, slot = index % rings, index // rings
        per_ring = -(-(rig.views - ring) // rings)
        azimuth = (
            start
            + 2 * np.pi * (slot + 0.5 * ring / rings) / per_ring
            + np.radians(rng.uniform(-1, 1) * rig.azimuth_jitter_deg)
        )
        closeup = rig.closeup_every > 0 and index % rig.closeup_every == rig.closeup_every - 1
        target = centre + rng.uniform(-1, 1, 3) * rig.aim_jitter * radius
        if closeup:
            target = centre + np.array([*rng.uniform(-0.4, 0.4, 2), rng.uniform(0.0, 0.45)]) * radius
        reach = (closeup_distance if closeup else distance) * (1 + rng.uniform(-1, 1) * rig.distance_jitter)
        rise = rig.ring_heights[ring] - centre[2]
        elevation = np.arctan2(rise, distance)  # the ring's angle, kept when leaning in
        eye = target + reach * np.array(
            [np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)]
        )
        eye[2] += rng.uniform(-1, 1) * rig.height_jitter
        cameras.append(_camera(eye, target, rng.uniform(-1, 1) * rig.roll_jitter_deg))
    return np.stack(cameras)


def walkaround_path(
    bounds: np.ndarray, rig: PersonRig, walk: WalkSettings, rng: np.random.Generator
) -> np.ndarray:
    """(F, 4, 4) camera-to-scene matrices of a smooth walk round the object, one per video frame."""
    centre, radius = bounding_sphere(bounds)
    half_fov = _half_fov(rig.width, rig.height, rig.camera_angle_x)
    distance = radius / np.sin(half_fov * rig.fill)
    closeup_distance = radius / np.sin(min(half_fov * rig.closeup_fill, 0.5 * np.pi))
    t = np.arange(walk.frames) / max(walk.frames - 1, 1)  # (F,) 0..1 along the walk
    phases = rng.uniform(0, 2 * np.pi, 6)
    azimuth = phases[0] + 2 * np.pi * walk.turns * t + 0.05 * np.sin(2 * np.pi * 3 * t + phases[1])
    low, high = min(rig.ring_heights), max(rig.ring_heights)
    heights = 0.5 * (low + high) + 0.5 * (high - low) * np.sin(2 * np.pi * walk.height_cycles * t + phases[2])
    reach = distance * (1 + walk.distance_swing * np.sin(2 * np.pi * walk.distance_cycles * t + phases[3]))
    if walk.closeup_at >= 0:
        lean = np.exp(-0.5 * ((t - walk.closeup_at) / walk.closeup_width) ** 2)
        reach = reach * (1 - lean) + closeup_distance * lean
    aim = (
        walk.aim_wobble
        * radius
        * np.stack([np.sin(2 * np.pi * (k + 2) * t + phases[4] + k) for k in range(3)], axis=-1)
    )
    roll = walk.roll_wobble_deg * np.sin(2 * np.pi * 2 * t + phases[5])
    cameras = []
    for index in range(walk.frames):
        target = centre + aim[index]
        elevation = np.arctan2(heights[index] - centre[2], distance)
        direction = np.array(
            [
                np.cos(elevation) * np.cos(azimuth[index]),
                np.cos(elevation) * np.sin(azimuth[index]),
                np.sin(elevation),
            ]
        )
        cameras.append(_camera(target + reach[index] * direction, target, roll[index]))
    return np.stack(cameras)


# --- rendering ----------------------------------------------------------------------------------


@dataclass
class RoomScene:
    """A built scene: the object placed on the table among the room's parts (scene frame, +Z up)."""

    scene: synthetic.Scene
    object_to_scene: np.ndarray  # (4, 4) similarity from the mesh's own frame
    object_bounds: np.ndarray  # (2, 3) in the scene frame
    room: RoomSettings

    def default_world(self) -> np.ndarray:
        """The upright world frame (``upright_transform``) of this scene."""
        return upright_transform(
            0.5 * (self.object_bounds[0] + self.object_bounds[1]), self.room.table_height
        )


def build_scene(
    mesh: trimesh.Trimesh,
    placement: Placement | None = None,
    room: RoomSettings | None = None,
    seed: int = 0,
    with_object: bool = True,
) -> RoomScene:
    """The object on the table in a textured room; ``with_object=False``: the same room, table bare.

    The room's textures depend on ``seed`` alone, so the same seed gives the same room.
    """
    placement, room = placement or Placement(), room or RoomSettings()
    object_to_scene = object_on_table(mesh, placement, room)
    placed = mesh.copy()
    placed.apply_transform(object_to_scene)
    background = room_parts(room, np.random.default_rng([seed, 1]))
    if not with_object:  # part 0 must be the object: an empty stand-in that no ray can hit
        placed = trimesh.Trimesh(np.zeros((3, 3)), [[0, 1, 2]], process=False)
    return RoomScene(
        synthetic.Scene([placed, *background], shadow_casters=len(background) - SHELL_PARTS + 1),
        object_to_scene,
        placed_bounds(mesh, object_to_scene),
        room,
    )


def placed_bounds(mesh: trimesh.Trimesh, object_to_scene: np.ndarray) -> np.ndarray:
    """(2, 3) axis-aligned bounds of ``mesh`` once moved by ``object_to_scene``."""
    points = trimesh.transform_points(mesh.vertices, object_to_scene)
    return np.stack([points.min(axis=0), points.max(axis=0)])


def render_room_capture(
    mesh: trimesh.Trimesh,
    placement: Placement | None = None,
    rig: PersonRig | None = None,
    room: RoomSettings | None = None,
    seed: int = 0,
    world_transform: np.ndarray | None = None,
    shading: synthetic.ShadingSettings | None = None,
    cameras: np.ndarray | None = None,
    with_object: bool = True,
    scene: RoomScene | None = None,
) -> synthetic.RenderedCapture:
    """Photos of ``mesh`` on a table in a room by ``rig`` (or from ``cameras``, camera-to-scene).

    ``world_transform`` maps the scene to the capture's world (default: upright, ``upright_transform``);
    ``mesh_world`` is the object alone there (the ground truth), alpha its coverage in each view.
    ``scene``: one built already by ``build_scene`` with the same arguments (it is not rebuilt).
    """
    rig = rig or PersonRig()
    built = scene or build_scene(mesh, placement, room, seed, with_object)
    if cameras is None:
        cameras = person_cameras(built.object_bounds, rig, np.random.default_rng([seed, 2]))
    fl = 0.5 * rig.width / np.tan(0.5 * rig.camera_angle_x)
    rgba = synthetic.render_scene(
        built.scene,
        cameras,
        fl,
        (rig.height, rig.width),
        rig.supersample,
        shading or synthetic.ShadingSettings(),
    )
    world = (
        built.default_world() if world_transform is None else np.asarray(world_transform, dtype=np.float64)
    )
    cam_to_world, world = synthetic.place_cameras(cameras, world)
    mesh_world = mesh.copy()
    mesh_world.apply_transform(world @ built.object_to_scene)
    return synthetic.RenderedCapture(
        rgba=rgba,
        cam_to_world=cam_to_world,
        fl_x=fl,
        fl_y=fl,
        cx=rig.width / 2,
        cy=rig.height / 2,
        camera_angle_x=rig.camera_angle_x,
        mesh_world=mesh_world,
        object_to_world=world @ built.object_to_scene,
    )
