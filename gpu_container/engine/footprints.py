"""Pixel footprints of grid cells: what a view can prove about a whole cell, not just its corners.

A cell's projection lies inside the bounding rectangle of its 8 corners' projections (a pinhole
camera maps the convex cell to a convex set, the hull of the corners' images, when every corner is
in front of the camera). Summed-area tables count the object or background pixels in such a
rectangle in O(1), so a view can show that no point of a cell falls in its silhouette (the cell is
empty) or that every point does: the preprocess stage's conservative box and the hull's
settled cells both stand on this.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def integral_images(masks: torch.Tensor) -> torch.Tensor:
    """(N, H + 1, W + 1) int32 summed-area tables of bool masks (N, H, W): pixels in a rectangle in O(1)."""
    table = torch.zeros((masks.shape[0], masks.shape[1] + 1, masks.shape[2] + 1), dtype=torch.int32)
    table = table.to(masks.device)
    table[:, 1:, 1:] = masks.to(torch.int32).cumsum(dim=1).cumsum(dim=2)
    return table


@dataclass(frozen=True)
class Footprints:
    """Pixel rectangles [x0, x1) x [y0, y1) bounding the projections of cells, (n views, M cells) each,
    clamped to the image."""

    x0: torch.Tensor
    x1: torch.Tensor
    y0: torch.Tensor
    y1: torch.Tensor
    in_front: torch.Tensor  # bool: every corner in front of the camera
    inside_image: torch.Tensor  # bool: in front, and the whole rectangle inside the image
    overlaps_image: torch.Tensor  # bool: in front, and part of the rectangle inside the image


def footprints(
    u: torch.Tensor, v: torch.Tensor, depth: torch.Tensor, width: int, height: int, grow: int = 0
) -> Footprints:
    """The footprints of cells from their corners' projections ``u, v, depth`` (n, M, 8); ``grow``
    pixels are added on every side (the reach of a bilinear look-up: 1)."""
    u_low, u_high = u.amin(dim=2) - grow, u.amax(dim=2) + grow
    v_low, v_high = v.amin(dim=2) - grow, v.amax(dim=2) + grow
    in_front = depth.amin(dim=2) > 0
    return Footprints(
        x0=u_low.floor().clamp(0, width).long(),
        x1=(u_high.floor() + 1).clamp(0, width).long(),
        y0=v_low.floor().clamp(0, height).long(),
        y1=(v_high.floor() + 1).clamp(0, height).long(),
        in_front=in_front,
        inside_image=in_front & (u_low >= 0) & (u_high < width) & (v_low >= 0) & (v_high < height),
        overlaps_image=in_front & (u_high >= 0) & (u_low < width) & (v_high >= 0) & (v_low < height),
    )


def rectangle_sums(table: torch.Tensor, rect: Footprints) -> torch.Tensor:
    """(n, M) pixels set inside each footprint, from summed-area tables (n, H + 1, W + 1)."""
    n, stride = table.shape[0], table.shape[2]
    flat = table.reshape(n, -1)

    def at(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        return torch.gather(flat, 1, (rows * stride + cols).reshape(n, -1)).reshape(rows.shape)

    return at(rect.y1, rect.x1) - at(rect.y0, rect.x1) - at(rect.y1, rect.x0) + at(rect.y0, rect.x0)
