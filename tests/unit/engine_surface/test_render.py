"""The embree renderer agrees with the engine's camera convention."""

from __future__ import annotations

import numpy as np
import torch
import trimesh

from gpu_container.engine import cameras
from gpu_container.engine.render import (
    PinholeCamera,
    RayCaster,
    render,
    sample_bilinear,
    shaded_rgba,
    texture_lookup,
    vertex_color_lookup,
)

from .analytic_scenes import intrinsics, look_at


def scaled_camera() -> PinholeCamera:
    """A camera whose camera-to-frame block carries a scale, as after a similarity into the box."""
    cam_to_frame = look_at(np.array([2.0, -2.5, 1.0]))
    cam_to_frame[:3, :3] *= 0.7
    return PinholeCamera(cam_to_frame, intrinsics(40, fov_degrees=50.0), 40, 40)


def test_projection_agrees_with_the_engine_cameras():
    camera = scaled_camera()
    points = np.random.default_rng(0).uniform(-0.8, 0.8, size=(50, 3))

    uv, depth = camera.project(points)

    expected_uv, expected_depth = cameras.project(
        torch.from_numpy(points),
        torch.from_numpy(camera.cam_to_frame)[None],
        torch.from_numpy(camera.intrinsics)[None],
    )
    np.testing.assert_allclose(uv, expected_uv[0].numpy(), atol=1e-9)
    np.testing.assert_array_equal(depth > 0, expected_depth[0].numpy() > 0)


def test_pixel_rays_pass_through_their_pixel_centres():
    camera = scaled_camera()

    origins, directions = camera.pixel_rays()

    uv, depth = camera.project(origins + 1.5 * directions)
    rows, cols = np.divmod(np.arange(camera.height * camera.width), camera.width)
    np.testing.assert_allclose(uv, np.stack([cols + 0.5, rows + 0.5], axis=1), atol=1e-9)
    assert (depth > 0).all()


def test_render_covers_the_object_with_its_colors_and_depth():
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    camera = PinholeCamera(look_at(np.array([0.0, 0.0, 3.0])), intrinsics(32), 32, 32)

    colors = vertex_color_lookup(sphere.faces, np.tile([0.2, 0.4, 0.6], (len(sphere.vertices), 1)))

    view = render(RayCaster(sphere.vertices, sphere.faces), colors, camera)

    assert view.mask[16, 16]
    assert not view.mask[0, 0]
    np.testing.assert_allclose(
        view.color[view.mask], np.tile([0.2, 0.4, 0.6], (view.mask.sum(), 1)), atol=1e-6
    )
    assert abs(view.depth[16, 16] - 2.5) < 0.01  # the nearest point of the sphere
    assert np.isinf(view.depth[0, 0])
    rgba = shaded_rgba(view, ambient=0.3)
    assert rgba[16, 16, 3] == 255
    assert rgba[0, 0, 3] == 0
    assert rgba[16, 16, 2] > rgba[view.mask][:, 2].min()  # lit head-on, darker towards the rim


def test_texture_lookup_reads_the_texel_under_the_uv():
    texture = np.zeros((4, 4, 3), dtype=np.uint8)
    texture[0, 3] = [255, 0, 0]  # top-right texel: u near 1, v near 1 (v = 0 is the bottom row)
    face_uv = np.array([[[0.875, 0.875], [0.875, 0.875], [0.875, 0.875]]])

    color = texture_lookup(face_uv, texture)(np.array([0]), np.array([[1.0, 0.0, 0.0]]))

    np.testing.assert_allclose(color, [[1.0, 0.0, 0.0]])


def test_bilinear_sampling_interpolates_between_pixel_centres():
    image = np.array([[[0.0], [10.0]], [[20.0], [30.0]]])

    samples = sample_bilinear(image, np.array([[0.5, 0.5], [1.0, 1.0], [1.5, 0.5], [-3.0, 9.0]]))

    np.testing.assert_allclose(samples[:, 0], [0.0, 15.0, 10.0, 20.0])
