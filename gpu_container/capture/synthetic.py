"""Synthetic captures: views of a mesh (alone, or in a room) from known cameras, written as captures.

Rendering is embree ray casting (``trimesh.ray.ray_pyembree``; no slow fallback) of a ``Scene``:
part 0 is the object, any further parts are background (a room, a table: ``capture/room.py``).
Colour comes from each part's texture (UV lookup) or its vertex/face colours, fixed-light
Lambertian shading (so a surface point looks the same from every view); alpha is the object's
pixel coverage from ``supersample``^2 sub-pixel rays (the ground-truth mask, also in a room).

Frames: the rig is built around the object in the mesh's own frame (+Z up), then the object and
the cameras are placed in the capture's world frame by ``world_transform`` (any similarity), so
the images do not depend on it while ``transforms.json`` and the ground truth do. Cameras are
camera-to-world with OpenGL axes (look down -Z, +Y up), pixel centres at (i + 0.5, j + 0.5).

Forms written (DESIGN.md, "The capture"): the lab capture (``capture_files``: RGBA or mask files),
the posed capture (``posed_files``: ``transforms.json`` with poses, RGB images, no masks) and the
photo set (``photo_files``: JPEGs with EXIF focal lengths, nothing else; its true cameras go to
``truth_document`` beside the zip). The MP4 walk-around is ``capture/video.py``.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import trimesh
from PIL import Image
from trimesh.ray.ray_pyembree import RayMeshIntersector  # embree only: fails loudly without embreex

from gpu_container.capture import objects

TRANSFORMS_FILE = "transforms.json"
ZIP_DATE_TIME = (2020, 1, 1, 0, 0, 0)  # fixed entry times: the same seed gives the same zip bytes
GOLDEN_ANGLE = np.pi * (3.0 - np.sqrt(5.0))


@dataclass(frozen=True)
class RigSettings:
    """Where the cameras are and what they see."""

    views: int = 32
    width: int = 128
    height: int = 128
    camera_angle_x: float = 0.6911  # radians, as in the NeRF synthetic scenes
    layout: Literal["sphere", "hemisphere"] = "sphere"
    min_elevation_deg: float = -20.0  # hemisphere: lowest camera, degrees above the object's centre
    max_elevation_deg: float = 80.0  # keeps cameras off the pole, where "up" is undefined
    fill: float = 0.85  # fraction of the narrower field of view the object's bounding sphere spans
    supersample: int = 2  # sub-pixel rays per side; alpha is the covered fraction


@dataclass(frozen=True)
class ShadingSettings:
    """Fixed lights in the object's frame: view-independent (Lambertian) appearance."""

    ambient: float = 0.45
    key_light: tuple[float, float, float] = (0.4, -0.5, 0.8)
    key_strength: float = 0.5
    fill_light: tuple[float, float, float] = (-0.6, 0.5, -0.2)
    fill_strength: float = 0.2
    crease_angle_deg: float = 35.0  # beyond this, face normals instead of smooth ones (sharp edges)
    shadows: bool = True  # the key light is blocked by the scene's shadow casters (room scenes)
    shadow_offset: float = 1e-4  # shadow rays start this far off the surface (scene units)


@dataclass(frozen=True)
class ZipLayout:
    """How the capture is written: the variants that readers of the format must accept."""

    image_folder: str = "images"
    path_prefix: str = "./"
    extension_in_path: bool = True  # False: "./images/r_000" like the NeRF synthetic scenes
    intrinsics: Literal["angle", "pixels", "both"] = "angle"
    image_format: Literal["png", "jpg"] = "png"
    separate_masks: bool = False  # RGB images plus masks/<name>.png referenced by mask_path
    jpeg_quality: int = 95
    masks: bool = True  # False: RGB images and no mask_path (a posed capture: masks to be found)
    poses: bool = True  # False: frames without transform_matrix (intrinsics only: cameras to be estimated)
    frame_name: str = "r_{index:03d}"
    extra_intrinsics: tuple[tuple[str, object], ...] = ()  # e.g. (("camera_model", "OPENCV"), ("k1", 0.0))


@dataclass
class RenderedCapture:
    rgba: np.ndarray  # (N, H, W, 4) uint8, alpha = object coverage; RGB 0 where nothing was hit
    cam_to_world: np.ndarray  # (N, 4, 4) float64, OpenGL axes
    fl_x: float
    fl_y: float
    cx: float
    cy: float
    camera_angle_x: float
    mesh_world: trimesh.Trimesh  # the ground truth in the capture's world frame
    object_to_world: np.ndarray | None = None  # (4, 4) the mesh's own frame to the world (room scenes)

    @property
    def num_views(self) -> int:
        return int(self.rgba.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return int(self.rgba.shape[1]), int(self.rgba.shape[2])


def similarity_parts(transform: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(scale, rotation (3,3), translation (3,)) of a 4x4 similarity; ValueError if it is not one."""
    transform = np.asarray(transform, dtype=np.float64)
    linear = transform[:3, :3]
    scale = float(np.cbrt(np.linalg.det(linear)))
    if transform.shape != (4, 4) or scale <= 0 or not np.allclose(transform[3], [0, 0, 0, 1]):
        raise ValueError("world_transform must be a 4x4 similarity with positive scale")
    rotation = linear / scale
    if not np.allclose(rotation.T @ rotation, np.eye(3), atol=1e-6):
        raise ValueError("world_transform must be rotation * uniform scale + translation")
    return scale, rotation, transform[:3, 3].copy()


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """(4, 4) camera-to-frame, OpenGL axes, camera at ``eye`` looking at ``target``."""
    forward = (target - eye) / np.linalg.norm(target - eye)
    z_axis = -forward
    x_axis = np.cross(up, z_axis)
    if np.linalg.norm(x_axis) < 1e-6:  # looking along "up": any perpendicular will do
        x_axis = np.cross([0.0, 1.0, 0.0], z_axis)
    x_axis /= np.linalg.norm(x_axis)
    y_axis = np.cross(z_axis, x_axis)
    matrix = np.eye(4)
    matrix[:3, 0], matrix[:3, 1], matrix[:3, 2], matrix[:3, 3] = x_axis, y_axis, z_axis, eye
    return matrix


def rig_directions(rig: RigSettings, rng: np.random.Generator) -> np.ndarray:
    """(N, 3) unit directions from the object's centre to the cameras: a Fibonacci spiral.

    ``sphere`` covers heights z in [-sin(max), sin(max)], ``hemisphere`` [sin(min), sin(max)]; the
    spiral's start angle is random per seed.
    """
    top = np.sin(np.radians(rig.max_elevation_deg))
    bottom = -top if rig.layout == "sphere" else np.sin(np.radians(rig.min_elevation_deg))
    index = np.arange(rig.views)
    z = top - (index + 0.5) / rig.views * (top - bottom)
    phi = rng.uniform(0, 2 * np.pi) + GOLDEN_ANGLE * index
    ring = np.sqrt(1 - z**2)
    return np.stack([ring * np.cos(phi), ring * np.sin(phi), z], axis=-1)


def rig_cameras(mesh: trimesh.Trimesh, rig: RigSettings, seed: int) -> tuple[np.ndarray, float, float]:
    """(N, 4, 4) camera-to-object matrices, fl_x, fl_y for a rig that frames ``mesh``."""
    centre = 0.5 * (mesh.bounds[0] + mesh.bounds[1])
    radius = float(np.linalg.norm(mesh.vertices - centre, axis=1).max())
    fl_x = 0.5 * rig.width / np.tan(0.5 * rig.camera_angle_x)
    fl_y = fl_x  # square pixels
    half_fov = np.arctan(0.5 * min(rig.width, rig.height) / fl_x)
    distance = radius / np.sin(half_fov * rig.fill)
    directions = rig_directions(rig, np.random.default_rng(seed))
    up = np.array([0.0, 0.0, 1.0])
    cameras = np.stack([look_at(centre + distance * d, centre, up) for d in directions])
    return cameras, float(fl_x), float(fl_y)


def camera_ray_directions(
    fl: tuple[float, float], centre: tuple[float, float], size: tuple[int, int], ss: int
) -> np.ndarray:
    """(H*W*ss*ss, 3) unit ray directions in camera axes, ordered row, column, sub-row, sub-column."""
    height, width = size
    offsets = (np.arange(ss) + 0.5) / ss
    u = (np.arange(width)[:, None] + offsets[None, :]).reshape(-1)  # (W*ss,)
    v = (np.arange(height)[:, None] + offsets[None, :]).reshape(-1)  # (H*ss,)
    uu, vv = np.meshgrid(u, v, indexing="xy")  # (H*ss, W*ss)
    dirs = np.stack([(uu - centre[0]) / fl[0], -(vv - centre[1]) / fl[1], -np.ones_like(uu)], axis=-1)
    dirs = dirs.reshape(height, ss, width, ss, 3).transpose(0, 2, 1, 3, 4).reshape(-1, 3)
    return dirs / np.linalg.norm(dirs, axis=1, keepdims=True)


def _texture_lookup(texels: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """(M, 3) float [0,1] colours from (Ht, Wt, 3) float texels, bilinear, wrapping; uv origin bottom-left."""
    tex_h, tex_w = texels.shape[:2]
    x = np.mod(uv[:, 0], 1.0) * tex_w - 0.5
    y = (1.0 - np.mod(uv[:, 1], 1.0)) * tex_h - 0.5
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x1, y1 = (x0 + 1) % tex_w, (y0 + 1) % tex_h
    x0, y0 = x0 % tex_w, y0 % tex_h
    top = texels[y0, x0] * (1 - fx) + texels[y0, x1] * fx
    bottom = texels[y1, x0] * (1 - fx) + texels[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def texture_texels(mesh: trimesh.Trimesh) -> np.ndarray | None:
    """(Ht, Wt, 3) float [0,1] texels of a UV-textured mesh, ``None`` for colour-only meshes."""
    visual = mesh.visual
    if visual.kind != "texture" or visual.uv is None:
        return None
    material = visual.material
    image = getattr(material, "image", None) or getattr(material, "baseColorTexture", None)
    if image is None:
        return None
    return np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0


def surface_colour(
    mesh: trimesh.Trimesh, face_ids: np.ndarray, barycentric: np.ndarray, texels: np.ndarray | None = None
) -> np.ndarray:
    """(M, 3) float [0,1] albedo at hit points: texture, else vertex colours, else face colours.

    ``texels``: the mesh's texture from ``texture_texels`` when the caller keeps it between views.
    """
    visual = mesh.visual
    if texels is None:
        texels = texture_texels(mesh)
    if texels is not None:
        uv = np.einsum("mk,mkc->mc", barycentric, np.asarray(visual.uv)[mesh.faces[face_ids]])
        return _texture_lookup(texels, uv)
    if visual.kind == "texture":
        visual = visual.to_color()
    if visual.kind == "vertex":
        colours = np.asarray(visual.vertex_colors[:, :3], dtype=np.float64) / 255.0
        return np.einsum("mk,mkc->mc", barycentric, colours[mesh.faces[face_ids]])
    return np.asarray(visual.face_colors[face_ids, :3], dtype=np.float64) / 255.0


def shading_normals(
    mesh: trimesh.Trimesh, face_ids: np.ndarray, barycentric: np.ndarray, crease_angle_deg: float
) -> np.ndarray:
    """(M, 3) unit normals: smooth where they stay within the crease angle of the face's normal."""
    face_normals = mesh.face_normals[face_ids]
    smooth = np.einsum("mk,mkc->mc", barycentric, mesh.vertex_normals[mesh.faces[face_ids]])
    smooth /= np.maximum(np.linalg.norm(smooth, axis=1, keepdims=True), 1e-12)
    agree = np.einsum("mc,mc->m", smooth, face_normals) > np.cos(np.radians(crease_angle_deg))
    return np.where(agree[:, None], smooth, face_normals)


def facing_normals(normals: np.ndarray, ray_dirs: np.ndarray) -> np.ndarray:
    """(M, 3) normals flipped to face the ray, so open meshes shade from both sides."""
    return np.where((np.einsum("mc,mc->m", normals, ray_dirs) > 0)[:, None], -normals, normals)


def _unit(vector: tuple[float, float, float]) -> np.ndarray:
    return np.asarray(vector, dtype=np.float64) / np.linalg.norm(vector)


def _shade(facing: np.ndarray, shading: ShadingSettings, key_lit: np.ndarray | None = None) -> np.ndarray:
    """(M,) light factors at ``facing`` normals; ``key_lit`` is False where the key light is blocked."""
    key = shading.key_strength * np.clip(facing @ _unit(shading.key_light), 0.0, None)
    if key_lit is not None:
        key = np.where(key_lit, key, 0.0)
    return (
        shading.ambient + key + shading.fill_strength * np.clip(facing @ _unit(shading.fill_light), 0.0, None)
    )


class Scene:
    """Meshes ray cast together, all in one frame: ``parts[0]`` is the object, the rest background.

    One embree intersector serves the union of the parts; a hit's face id tells its part, and each
    part keeps its own colours (textures are converted to float texels once, not per view). The
    first ``shadow_casters`` parts (the object and the furniture, not the room's shell, which
    would shade everything) block the key light: a second intersector over them casts shadows.
    """

    def __init__(self, parts: list[trimesh.Trimesh], shadow_casters: int = 0) -> None:
        self.parts = parts
        self.face_offsets = np.cumsum([0] + [len(part.faces) for part in parts])  # (P + 1,)
        vertex_offsets = np.cumsum([0] + [len(part.vertices) for part in parts])
        self.union = trimesh.Trimesh(
            np.concatenate([part.vertices for part in parts]),
            np.concatenate(
                [part.faces + offset for part, offset in zip(parts, vertex_offsets, strict=False)]
            ),
            process=False,
        )
        self.texels = [texture_texels(part) for part in parts]
        self.intersector = RayMeshIntersector(self.union)
        casters = self.face_offsets[shadow_casters]
        self.shadow_intersector = (
            RayMeshIntersector(
                trimesh.Trimesh(self.union.vertices, self.union.faces[:casters], process=False)
            )
            if shadow_casters
            else None
        )

    @property
    def background(self) -> bool:
        return len(self.parts) > 1


def render_view(
    scene: Scene,
    cam_to_object: np.ndarray,
    dirs_cam: np.ndarray,
    size: tuple[int, int],
    supersample: int,
    shading: ShadingSettings,
) -> np.ndarray:
    """(H, W, 4) uint8 RGBA of one view; ``dirs_cam`` from ``camera_ray_directions``.

    Alpha is the object's (part 0's) coverage. RGB averages every sub-pixel ray that hit a part:
    alone, the object's colour (0 where nothing was hit); in a room, the room shows around it.
    """
    height, width = size
    dirs = dirs_cam @ cam_to_object[:3, :3].T  # still unit: the rotation is rigid
    origins = np.broadcast_to(cam_to_object[:3, 3], dirs.shape)
    face_ids, ray_ids, locations = scene.intersector.intersects_id(
        origins, dirs, multiple_hits=False, return_locations=True
    )
    colour = np.zeros((len(dirs), 3))
    hit = np.zeros(len(dirs), dtype=bool)
    on_object = np.zeros(len(dirs), dtype=bool)
    if len(face_ids):
        barycentric = trimesh.triangles.points_to_barycentric(scene.union.triangles[face_ids], locations)
        barycentric = np.clip(barycentric, 0.0, 1.0)
        barycentric /= barycentric.sum(axis=1, keepdims=True)
        part_of_hit = np.searchsorted(scene.face_offsets, face_ids, side="right") - 1
        albedo = np.zeros((len(face_ids), 3))
        for index, part in enumerate(scene.parts):
            here = part_of_hit == index
            if here.any():
                local = face_ids[here] - scene.face_offsets[index]
                albedo[here] = surface_colour(part, local, barycentric[here], scene.texels[index])
        normals = shading_normals(scene.union, face_ids, barycentric, shading.crease_angle_deg)
        facing = facing_normals(normals, dirs[ray_ids])
        key_lit = None
        if shading.shadows and scene.shadow_intersector is not None:
            towards = np.broadcast_to(_unit(shading.key_light), facing.shape)
            start = locations + shading.shadow_offset * facing
            key_lit = ~scene.shadow_intersector.intersects_any(start, towards)
        colour[ray_ids] = np.clip(albedo * _shade(facing, shading, key_lit)[:, None], 0.0, 1.0)
        hit[ray_ids] = True
        on_object[ray_ids[part_of_hit == 0]] = True
    samples = supersample * supersample
    colour_sum = colour.reshape(height, width, samples, 3).sum(axis=2)
    hits = hit.reshape(height, width, samples).sum(axis=2)
    rgb = colour_sum / np.maximum(hits, 1)[..., None]
    alpha = on_object.reshape(height, width, samples).sum(axis=2) / samples
    rgba = np.concatenate([rgb, alpha[..., None]], axis=-1)
    return np.clip(rgba * 255 + 0.5, 0, 255).astype(np.uint8)


def place_cameras(
    cam_to_object: np.ndarray, world_transform: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4, 4) camera-to-world of camera-to-object matrices moved by a similarity, and that similarity."""
    transform = np.eye(4) if world_transform is None else np.asarray(world_transform, dtype=np.float64)
    scale, rotation, translation = similarity_parts(transform)
    cam_to_world = np.repeat(np.eye(4)[None], len(cam_to_object), axis=0)
    cam_to_world[:, :3, :3] = rotation @ cam_to_object[:, :3, :3]
    cam_to_world[:, :3, 3] = scale * cam_to_object[:, :3, 3] @ rotation.T + translation
    return cam_to_world, transform


def render_scene(
    scene: Scene,
    cam_to_object: np.ndarray,
    fl: float,
    size: tuple[int, int],
    supersample: int,
    shading: ShadingSettings,
    on_view: Callable[[int], None] = lambda index: None,
) -> np.ndarray:
    """(N, H, W, 4) uint8 views of ``scene`` from (N, 4, 4) cameras in its frame (square pixels)."""
    height, width = size
    dirs_cam = camera_ray_directions((fl, fl), (width / 2, height / 2), size, supersample)
    views = np.empty((len(cam_to_object), height, width, 4), dtype=np.uint8)
    for index, cam in enumerate(cam_to_object):
        views[index] = render_view(scene, cam, dirs_cam, size, supersample, shading)
        on_view(index)
    return views


def render_capture(
    mesh: trimesh.Trimesh,
    rig: RigSettings | None = None,
    seed: int = 0,
    world_transform: np.ndarray | None = None,
    shading: ShadingSettings | None = None,
) -> RenderedCapture:
    """Render ``rig.views`` views of ``mesh`` (in its own frame) and place them by ``world_transform``."""
    rig = rig or RigSettings()
    cam_to_object, fl_x, fl_y = rig_cameras(mesh, rig, seed)
    size = (rig.height, rig.width)
    rgba = render_scene(
        Scene([mesh]), cam_to_object, fl_x, size, rig.supersample, shading or ShadingSettings()
    )
    cam_to_world, transform = place_cameras(cam_to_object, world_transform)
    mesh_world = mesh.copy()
    mesh_world.apply_transform(transform)
    return RenderedCapture(
        rgba=rgba,
        cam_to_world=cam_to_world,
        fl_x=fl_x,
        fl_y=fl_y,
        cx=rig.width / 2,
        cy=rig.height / 2,
        camera_angle_x=rig.camera_angle_x,
        mesh_world=mesh_world,
    )


def _encode(image: Image.Image, layout: ZipLayout) -> bytes:
    buffer = io.BytesIO()
    if layout.image_format == "jpg":
        image.convert("RGB").save(buffer, format="JPEG", quality=layout.jpeg_quality)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def capture_files(capture: RenderedCapture, layout: ZipLayout | None = None) -> dict[str, bytes]:
    """The capture's files, ``{path inside the zip: bytes}``, transforms.json first.

    A lab capture by default (masks as alpha or mask files); ``layout.masks=False`` writes a posed
    capture (RGB only), ``layout.poses=False`` a photo set whose ``transforms.json`` holds only
    intrinsics and file names.
    """
    layout = layout or ZipLayout()
    if layout.image_format == "jpg" and layout.masks and not layout.separate_masks:
        raise ValueError("JPEG has no alpha channel: use separate_masks=True")
    height, width = capture.size
    transforms: dict = {}
    if layout.intrinsics in ("angle", "both"):
        transforms["camera_angle_x"] = capture.camera_angle_x
    if layout.intrinsics in ("pixels", "both"):
        transforms.update(
            fl_x=capture.fl_x, fl_y=capture.fl_y, cx=capture.cx, cy=capture.cy, w=width, h=height
        )
    transforms.update(dict(layout.extra_intrinsics))
    frames, files = [], {}
    extension = "." + layout.image_format
    for index in range(capture.num_views):
        name = layout.frame_name.format(index=index)
        stem = f"{layout.image_folder}/{name}"
        frame = {"file_path": layout.path_prefix + stem + (extension if layout.extension_in_path else "")}
        if layout.poses:
            frame["transform_matrix"] = capture.cam_to_world[index].tolist()
        rgba = capture.rgba[index]
        if not layout.masks:
            files[stem + extension] = _encode(Image.fromarray(rgba[..., :3], mode="RGB"), layout)
        elif layout.separate_masks:
            mask_name = f"masks/{name}.png"
            files[mask_name] = _encode(Image.fromarray(rgba[..., 3], mode="L"), ZipLayout())
            frame["mask_path"] = layout.path_prefix + mask_name
            files[stem + extension] = _encode(Image.fromarray(rgba[..., :3], mode="RGB"), layout)
        else:
            files[stem + extension] = _encode(Image.fromarray(rgba, mode="RGBA"), layout)
        frames.append(frame)
    transforms["frames"] = frames
    return {TRANSFORMS_FILE: json.dumps(transforms, indent=2).encode(), **files}


POSED_LAYOUT = ZipLayout(  # what nerfstudio's ns-process-data writes: pixel intrinsics, OPENCV, JPEGs
    path_prefix="",
    intrinsics="pixels",
    image_format="jpg",
    masks=False,
    frame_name="frame_{index:05d}",
    extra_intrinsics=(("camera_model", "OPENCV"), ("k1", 0.0), ("k2", 0.0), ("p1", 0.0), ("p2", 0.0)),
)
PHOTO_NAME = "IMG_{index:04d}.JPG"
PHONE_MAKE = "ReconFlow"
PHONE_MODEL = "synthetic phone"
EXIF_IFD = 0x8769
EXIF_TAGS = {"make": 0x010F, "model": 0x0110, "focal_length": 0x920A, "focal_length_35mm": 0xA405}
SENSOR_DIAGONAL_MM = 7.7  # a phone's main camera: the focal length in mm follows from it
FILM_DIAGONAL_MM = float(np.hypot(36.0, 24.0))  # the 35 mm equivalent is taken along the diagonal


def photo_exif(fl: float, size: tuple[int, int]) -> Image.Exif:
    """EXIF of a phone photo whose focal length is ``fl`` pixels at ``size`` (height, width).

    ``FocalLengthIn35mmFilm`` is the diagonal equivalent, ``FocalLength`` that of a phone sensor.
    """
    diagonal_px = float(np.hypot(*size))
    exif = Image.Exif()
    exif[EXIF_TAGS["make"]] = PHONE_MAKE
    exif[EXIF_TAGS["model"]] = PHONE_MODEL
    ifd = exif.get_ifd(EXIF_IFD)
    ifd[EXIF_TAGS["focal_length"]] = round(fl * SENSOR_DIAGONAL_MM / diagonal_px, 3)
    ifd[EXIF_TAGS["focal_length_35mm"]] = round(fl * FILM_DIAGONAL_MM / diagonal_px)
    return exif


def photo_names(count: int) -> list[str]:
    return [PHOTO_NAME.format(index=index + 1) for index in range(count)]


def photo_files(capture: RenderedCapture, jpeg_quality: int = 92, exif: bool = True) -> dict[str, bytes]:
    """A photo set: phone-named JPEGs (``IMG_0001.JPG``), RGB only, with EXIF focal lengths; nothing else."""
    files = {}
    for name, rgba in zip(photo_names(capture.num_views), capture.rgba, strict=True):
        buffer = io.BytesIO()
        options = {"exif": photo_exif(capture.fl_x, capture.size).tobytes()} if exif else {}
        Image.fromarray(rgba[..., :3], mode="RGB").save(
            buffer, format="JPEG", quality=jpeg_quality, **options
        )
        files[name] = buffer.getvalue()
    return files


def truth_document(capture: RenderedCapture, file_paths: list[str], times: list[float] | None = None) -> dict:
    """The true cameras of a capture in the transforms.json convention (world frame), for scoring.

    ``times``: each frame's time in seconds (a video: frames are matched to the true path by it).
    ``object_to_world`` places the object's own mesh; ``mesh_world`` is written beside it.
    """
    height, width = capture.size
    frames = []
    for index, file_path in enumerate(file_paths):
        frame = {"file_path": file_path, "transform_matrix": capture.cam_to_world[index].tolist()}
        if times is not None:
            frame["time"] = times[index]
        frames.append(frame)
    document = {
        "camera_angle_x": capture.camera_angle_x,
        **{
            "fl_x": capture.fl_x,
            "fl_y": capture.fl_y,
            "cx": capture.cx,
            "cy": capture.cy,
            "w": width,
            "h": height,
        },
        "frames": frames,
    }
    if capture.object_to_world is not None:
        document["object_to_world"] = capture.object_to_world.tolist()
    return document


TRUTH_SUFFIX = ".truth.json"
TRUTH_MESH_SUFFIX = ".truth.ply"


def truth_paths(path: Path) -> tuple[Path, Path]:
    """(cameras JSON, object mesh PLY) kept beside a capture ``path`` for scoring: ``<stem>.truth.*``."""
    path = Path(path)
    return path.with_name(path.stem + TRUTH_SUFFIX), path.with_name(path.stem + TRUTH_MESH_SUFFIX)


def write_truth(
    capture: RenderedCapture, path: Path, file_paths: list[str], times: list[float] | None = None
) -> Path:
    """Write the true cameras and the object mesh (world frame) beside the capture at ``path``."""
    cameras_path, mesh_path = truth_paths(path)
    cameras_path.write_text(json.dumps(truth_document(capture, file_paths, times), indent=1))
    capture.mesh_world.export(mesh_path)
    return cameras_path


def write_zip(files: dict[str, bytes], path: Path) -> Path:
    """Write ``{name: bytes}`` as a deflated zip with fixed entry times (byte-for-byte reproducible)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return path


def write_capture(
    mesh: trimesh.Trimesh,
    path: Path,
    rig: RigSettings | None = None,
    seed: int = 0,
    world_transform: np.ndarray | None = None,
    layout: ZipLayout | None = None,
    shading: ShadingSettings | None = None,
) -> RenderedCapture:
    """Render ``mesh`` and write the capture zip to ``path``; returns the rendering (with ground truth)."""
    capture = render_capture(mesh, rig, seed=seed, world_transform=world_transform, shading=shading)
    write_zip(capture_files(capture, layout), path)
    return capture


SAMPLE_OBJECT = "bowl"
SAMPLE_WORLD_TRANSFORM = np.array(
    [  # a 30 cm bowl, turned 30 degrees about Z, standing 0.5 m off the world origin
        [0.15 * np.cos(np.pi / 6), -0.15 * np.sin(np.pi / 6), 0.0, 0.5],
        [0.15 * np.sin(np.pi / 6), 0.15 * np.cos(np.pi / 6), 0.0, -0.2],
        [0.0, 0.0, 0.15, 0.1],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def write_sample_capture(path: Path, views: int = 48, size: int = 256, seed: int = 0) -> RenderedCapture:
    """The project's sample capture: a textured bowl (a cavity no silhouette shows), upper hemisphere."""
    rig = RigSettings(views=views, width=size, height=size, layout="hemisphere")
    return write_capture(
        objects.make_object(SAMPLE_OBJECT), path, rig=rig, seed=seed, world_transform=SAMPLE_WORLD_TRANSFORM
    )
