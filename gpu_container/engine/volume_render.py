"""Differentiable volume rendering of a signed-distance grid (NeuS's unbiased discrete opacity).

Along a ray with samples t_0 < ... < t_{S-1} and SDF values f_i, the opacity of section i is
``alpha_i = clamp((Phi(f_i) - Phi(f_{i+1})) / Phi(f_i), 0, 1)`` with ``Phi(f) = sigmoid(f / width)``:
a ray entering the surface (f from + to -) becomes opaque exactly where f crosses zero, however
coarse the sampling, and ``width`` (box units) sets how soft the surface is while it is learnt.
Samples go where the surface is: a cheap search along the ray finds the first crossing of the
current SDF (or its closest approach) inside the ray's bounds and a window around it is sampled
finely, so the work per ray is fixed and no sample is wasted on empty space.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

EPSILON = 1e-6

SdfLookup = Callable[[torch.Tensor], torch.Tensor]  # points (P, 3) -> SDF (P,)
FieldLookup = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]  # -> SDF (P,), colour (P, 3)


@dataclass
class Rendered:
    rgb: torch.Tensor  # (M, 3) composited on the background colour
    opacity: torch.Tensor  # (M,) accumulated opacity in [0, 1]
    points: torch.Tensor  # (M, S, 3) the samples, for regularisers
    depth: torch.Tensor  # (M,) expected distance along the ray (opaque part)
    surface: torch.Tensor  # (M,) distance of the surface found by the search (no gradient)


def ray_box(
    origins: torch.Tensor, dirs: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry and exit distances (M,) of rays through an axis-aligned box; exit <= entry when they miss."""
    safe = torch.where(dirs.abs() < EPSILON, torch.full_like(dirs, EPSILON), dirs)
    t_low = (lower - origins) / safe
    t_high = (upper - origins) / safe
    near = torch.minimum(t_low, t_high).amax(dim=1).clamp(min=0.0)
    far = torch.maximum(t_low, t_high).amin(dim=1)
    return near, far


def find_surface(
    sdf_lookup: SdfLookup,
    origins: torch.Tensor,
    dirs: torch.Tensor,
    near: torch.Tensor,
    far: torch.Tensor,
    search_samples: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(M,) distance of the first + to - crossing of the SDF along each ray, else of its minimum,
    and (M,) whether there was a crossing."""
    steps = torch.linspace(0.0, 1.0, search_samples, device=origins.device, dtype=origins.dtype)
    length = (far - near).clamp(min=0.0)
    t = near[:, None] + length[:, None] * steps  # (M, S)
    points = origins[:, None] + t[..., None] * dirs[:, None]
    values = sdf_lookup(points.reshape(-1, 3)).reshape(t.shape)
    crossing = (values[:, :-1] > 0) & (values[:, 1:] <= 0)  # (M, S-1)
    has_crossing = crossing.any(dim=1)
    first = crossing.to(torch.uint8).argmax(dim=1, keepdim=True)  # index of the first crossing
    f0 = values.gather(1, first)[:, 0]
    f1 = values.gather(1, first + 1)[:, 0]
    t0 = t.gather(1, first)[:, 0]
    t1 = t.gather(1, first + 1)[:, 0]
    t_cross = t0 + (t1 - t0) * f0 / (f0 - f1).clamp(min=EPSILON)
    t_min = t.gather(1, values.argmin(dim=1, keepdim=True))[:, 0]
    return torch.where(has_crossing, t_cross, t_min), has_crossing


def window_samples(
    centre: torch.Tensor, half_width: float, num_samples: int, jitter: torch.Tensor | None
) -> torch.Tensor:
    """(M, S) sorted sample distances across [centre - half_width, centre + half_width]."""
    steps = torch.linspace(-1.0, 1.0, num_samples, device=centre.device, dtype=centre.dtype)
    t = centre[:, None] + half_width * steps
    if jitter is not None:  # stratified: shift the whole comb by up to one spacing
        t = t + jitter[:, None] * (2.0 * half_width / (num_samples - 1))
    return t


def composite(
    sdf_values: torch.Tensor, colours: torch.Tensor, t: torch.Tensor, width: float, background: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Colour (M, 3), opacity (M,) and depth (M,) of rays from SDF (M, S) and colour (M, S, 3) samples."""
    phi = torch.sigmoid(sdf_values / width)
    alpha = ((phi[:, :-1] - phi[:, 1:]) / (phi[:, :-1] + EPSILON)).clamp(0.0, 1.0)  # (M, S-1)
    transmittance = torch.cumprod(
        torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha[:, :-1] + EPSILON], dim=1), dim=1
    )
    weights = alpha * transmittance
    opacity = weights.sum(dim=1)
    section_colour = 0.5 * (colours[:, :-1] + colours[:, 1:])
    rgb = (weights[..., None] * section_colour).sum(dim=1) + (1.0 - opacity[:, None]) * background
    section_t = 0.5 * (t[:, :-1] + t[:, 1:])
    depth = (weights * section_t).sum(dim=1) / opacity.clamp(min=EPSILON)
    return rgb, opacity, depth


@dataclass(frozen=True)
class RaySampling:
    search_samples: int  # evenly spaced SDF look-ups along [near, far] to find the surface
    window_half_width: float  # box units either side of the surface found
    window_samples: int  # samples across that window


def render_rays(
    lookup: FieldLookup,
    sdf_lookup: SdfLookup,
    origins: torch.Tensor,
    dirs: torch.Tensor,
    near: torch.Tensor,
    far: torch.Tensor,
    sampling: RaySampling,
    width: float,
    background: torch.Tensor,
    jitter: torch.Tensor | None = None,
) -> Rendered:
    """Render rays (M,) given look-ups of the field at points (P, 3): SDF (P,) and colour (P, 3)."""
    with torch.no_grad():
        centre, _ = find_surface(sdf_lookup, origins, dirs, near, far, sampling.search_samples)
    t = window_samples(centre, sampling.window_half_width, sampling.window_samples, jitter)  # (M, S)
    points = origins[:, None] + t[..., None] * dirs[:, None]  # (M, S, 3)
    sdf_values, colours = lookup(points.reshape(-1, 3))
    sdf_values = sdf_values.reshape(t.shape)
    colours = colours.reshape(*t.shape, 3)
    # Rays that miss the bounds see nothing.
    hits_bounds = (far > near)[:, None]
    sdf_values = torch.where(hits_bounds, sdf_values, torch.ones_like(sdf_values))
    rgb, opacity, depth = composite(sdf_values, colours, t, width, background)
    return Rendered(rgb=rgb, opacity=opacity, points=points, depth=depth, surface=centre)
