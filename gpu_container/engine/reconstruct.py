"""Stage 4: refine the hull against the photographs where silhouettes cannot see (concavities).

The shape is a signed-distance grid (box units, negative inside) initialised from the visual hull's
distance transform; the colour a grid of logits beside it. At the start of each level,
photo-consistency carving (``photo_carving``) opens what the silhouettes could not: rays inside the
silhouettes sweep behind their current surface, and voxels in front of a clearly better-matching
depth (refined between candidates, less a voxel: ``carve_keep_voxels``), voted free by enough rays,
are subtracted from the SDF. Deep sweeps find the cavities, shallow ones place their floors. Then
photo-consistent depth fusion (``photo_fusion``, ``fuse_sweeps``) places the surface to a fraction
of a voxel: rays sweep a short window across their current surface, and those with a clear
photo-consistency minimum vote truncated signed distances into the grid around it, averaged with
the current SDF (this removes the voxel or two of extra material that carving leaves on flat faces,
concave edges and floors). Then both grids are fitted by differentiable volume rendering
(``volume_render``: NeuS's unbiased opacity from the SDF with a scheduled surface width, trilinear
look-ups, samples only in a window around the current surface inside the hull's bounds) against the
training views:

- photometric: L1 between rendered and observed colour, on pixels inside the (eroded) mask only,
  since the background of the photographs is undefined;
- mask: binary cross-entropy between accumulated opacity and the silhouette;
- eikonal: (|grad f| - 1)^2 by central differences at the ray samples, keeps f a distance;
- smoothness: squared second differences of f at the same points (a discrete Laplacian).

Coarse to fine: each level of ``resolutions`` upsamples the previous grids trilinearly (intersected
with the hull at the finer resolution, which never holds less than the object) and runs its own
carving passes and iterations with a fresh optimiser; levels past ``geometry_levels`` fit the colour
only, so the finest shape is the carved and fused one (the mesh stage smooths it without shrinking):
there the smoothness prior, a curvature penalty, pulls harder than the photographs and fills cavities
back in, while fusion moves the surface only where the photographs agree.
Deterministic for a seed on the CPU (a seeded CPU generator draws the rays; no nondeterministic CPU
op is used).

Writes ``work/reconstruct/field.npz`` (``sdf`` (R, R, R) float32, ``color`` (R, R, R, 3) float32 in
[0, 1], ``resolution``) and ``stage.json`` (iterations, final losses, voxels carved per pass,
rays fused and grid samples flipped per fusion pass, held-out mask IoU and PSNR).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from gpu_container.engine import grids, hull
from gpu_container.engine.cameras import batched_pixel_rays
from gpu_container.engine.context import CaptureError, StageContext, Stopwatch, write_stage_record
from gpu_container.engine.photo_carving import (
    CarveSettings,
    ShadowMaps,
    StackedViews,
    photo_findings,
    surface_agrees,
)
from gpu_container.engine.photo_fusion import DepthFusion, FusionSettings, photo_depths
from gpu_container.engine.scene import Scene
from gpu_container.engine.volume_render import FieldLookup, RaySampling, find_surface, ray_box, render_rays

STAGE = "reconstruct"
FIELD_FILE = "field.npz"


@dataclass(frozen=True)
class ReconstructParams:
    resolutions: tuple[int, ...]  # SDF and colour grid points per axis, one entry per level
    iterations: tuple[int, ...]  # optimiser steps per level
    rays_per_batch: int
    # Photo-consistency carving passes at the start of each level: per level, the depth (box units) each
    # pass sweeps behind the current surface. Deep coarse passes open cavities a stretch at a time (a
    # cup's needs all four); shallow fine ones, with the same number of candidates, place the floors
    # finely. Levels past the end of the tuple: none.
    carve_sweeps: tuple[tuple[float, ...], ...] = ((1.0, 1.0, 1.0, 1.0), (0.25, 0.25))
    # The first this many levels fit the SDF and the colour; finer levels fit the colour only. At the
    # finest scale the photometric pull on the SDF is weaker than the smoothness prior's, a curvature
    # penalty that fills cavities (bowl, standard: F@1 % 0.99 after carving, 0.90 after a full fit).
    geometry_levels: int = 1
    window_samples: int = 24  # samples per ray across the window around the surface
    window_half_voxels: float = 4.0  # half width of that window, in voxels of the level
    search_step_voxels: float = 2.0  # spacing of the surface search along each ray, in voxels
    width_start_voxels: float = 1.5  # surface softness (logistic scale) at a level's start, voxels
    width_end_voxels: float = 0.3  # ... and at its end (geometric schedule)
    lr_sdf_voxels: float = 0.03  # Adam step on the SDF grid, in voxels of the level
    lr_colour: float = 0.05  # Adam step on the colour logits
    lr_final_fraction: float = 0.2  # learning rates decay geometrically to this fraction per level
    weight_rgb: float = 1.0
    weight_mask: float = 0.1
    # Estimated masks: a background pixel's mask term is weighted by how sure its view is of it
    # (``hull.CONFIDENCE_FILE``), so a part the masks miss in every view (a grey hoof on a grey
    # table), which the hull keeps there, is not pulled in by the same masks here.
    mask_weight_by_confidence: bool = True
    # ... and carving and fusion also sweep the rays of the background pixels a view is unsure of
    # (below this confidence): there the hull keeps what no mask shows (feet, or the shadowed table
    # between them), and only the photographs can tell which. 0: the silhouettes' rays only.
    sweep_unsure_below: float = 0.5
    weight_eikonal: float = 0.05
    weight_smooth: float = 0.05
    regulariser_points: int = 4096  # ray samples drawn for the eikonal and smoothness terms
    mask_margin_pixels: int = 3  # rays are drawn from the silhouettes dilated by this much
    rgb_erode_pixels: int = 1  # colour is supervised inside the silhouettes eroded by this much
    bounds_margin_voxels: float = 3.0  # rays are sampled inside the hull's box grown by this much
    background: tuple[float, float, float] = (0.5, 0.5, 0.5)  # composited behind partial opacity
    carve_max_side: int = 64  # carving passes look at pixels of a grid at most this many a side (0: off)
    carve_chunk_rays: int = 1024  # rays swept at once (a chunk stays well under a second on a CPU)
    # Nearest views a candidate may be compared with (the best that see it). Six, not four: a deep
    # cavity's floor corner is seen by few views, and the best two of six more often include two that
    # see it (standard: the cup's F@1 % 0.916 -> 0.950, the pocket block's 0.967 -> 0.983; +30 % time).
    carve_neighbours: int = 6
    carve_candidates: int = 32  # depths swept behind the current surface
    carve_patch_pixels: float = 1.0  # spacing of the 3 x 3 patch, in pixels (bilinear look-ups)
    carve_min_gain: float = 0.3  # a deeper depth must cut the colour cost by this fraction
    # Surfaces that already agree this well (cost relative to brightness) are kept: 0.06 is the former
    # absolute 0.03 at mid-grey; 0.03 relative carved pits into Spot (draft F@1 % 0.995 -> 0.988).
    carve_min_cost: float = 0.06
    # Free space stops this many voxels of the level before the better depth. A whole voxel left every
    # cavity's floor and inner wall about a voxel high, which fusion's few votes there did not undo
    # (bowl, draft: F@1 % 0.84 -> 0.90 with 0.3, the SDF fit left out).
    carve_keep_voxels: float = 0.3
    carve_votes: int = 2  # free-space findings that carve a voxel out of the shape ...
    carve_ratio: float = 2.0  # ... when they outnumber the findings of a surface there this many times ...
    # ... and come from at least this many training views. A chance match of one view's rays (a deeper
    # candidate agreeing better in a texture-poor patch) no longer carves a pit into a convex surface:
    # with carved space kept free through the fit (``Fitting.carved_bound``) such pits would stay.
    carve_views: int = 2
    carve_closing: int = 1  # binary closing of the carved voxels (fills the gaps between rays)
    # A candidate's cost: the mean over this many of its best-matching neighbours that see it. Well
    # under ``carve_neighbours``, so the views a rim hides from a cavity's floor drop out per candidate.
    carve_compare_views: int = 2
    # Sweep the rays whose surface already agrees (``CarveSettings.sweep_agreeing``). Off in draft only:
    # there it cut the end-to-end time by a quarter to a third (back to back, Spot 13.3 -> 9.3 s, bowl
    # 15.7 -> 11.3 s, cup 16.8 -> 14.5 s; F@1 % within 0.002, the bracket 0.987 -> 0.979). At standard
    # the surfaces it protects cost the pocket block's NC 0.958 -> 0.948 and Spot's 0.982 -> 0.980.
    carve_sweep_agreeing: bool = True
    # Explicit visibility in carving and fusion (``photo_carving.ShadowMaps``; None: off): a candidate
    # is hidden from a neighbour view when a photo-consistent surface (cost below ``carve_min_cost``)
    # lies more than this many voxels of the level in front of it along the view's ray, so a cavity's
    # rim hides its floor from a grazing view while the hull's false lid over it hides nothing. Off by
    # default: on the bench's concave shapes (draft) it cost 0.003-0.03 F@1 % against the per-candidate
    # choice of the best ``carve_compare_views`` of ``carve_neighbours`` views alone, which already
    # drops the views a rim hides (their colours disagree).
    visibility_tolerance_voxels: float | None = None
    # Photo-consistent depth fusion (``photo_fusion``) after each level's carving passes: per level, the
    # depth (voxels of the level) each pass sweeps behind the current surface. It places the surface to
    # a fraction of a voxel and removes the extra material carving leaves (flat faces that bulge,
    # floors and concave edges a voxel or two high). Levels past the end of the tuple: none.
    fuse_sweeps: tuple[tuple[float, ...], ...] = ((), (6.0, 2.0))
    fuse_front_voxels: float = 2.0  # the sweep starts this far in front of the current surface
    fuse_candidates: int = 25  # depths swept across the window
    fuse_min_contrast: float = 0.3  # a ray's best cost must be this far below its window's median ...
    fuse_min_drop: float = 0.01  # ... and by at least this much (relative to brightness)
    fuse_truncation_front_voxels: float = 3.0  # votes reach this far in front of a ray's depth ...
    fuse_truncation_back_voxels: float = 1.0  # ... and this far behind it (thin walls stay whole)
    fuse_sample_voxels: float = 0.5  # spacing of the voting points along a ray
    # Weight of the current SDF among the votes, and the vote weight below which a grid sample keeps
    # its value. Low, so that the few rays that reach a cavity's floor place it (1.0 and 1.5 left the
    # carved, voxel-quantised floor where it was).
    fuse_prior_weight: float = 0.2
    fuse_min_weight: float = 0.5
    eval_max_side: int = 96  # held-out views are rendered at most this many pixels on a side
    eval_chunk_rays: int = 8192
    progress_seconds: float = 0.5  # at most one progress report per this many seconds

    def __post_init__(self) -> None:
        if not self.resolutions or len(self.iterations) != len(self.resolutions):
            raise ValueError("resolutions and iterations need one entry per level")

    def carve_sweeps_at(self, level: int) -> tuple[float, ...]:
        return self.carve_sweeps[level] if level < len(self.carve_sweeps) else ()

    def fuse_sweeps_at(self, level: int) -> tuple[float, ...]:
        return self.fuse_sweeps[level] if level < len(self.fuse_sweeps) else ()

    def fusion_settings(self, voxel: float, back_voxels: float) -> FusionSettings:
        return FusionSettings(
            candidates=self.fuse_candidates,
            front=self.fuse_front_voxels * voxel,
            back=back_voxels * voxel,
            patch_pixels=self.carve_patch_pixels,
            compare_views=self.carve_compare_views,
            min_contrast=self.fuse_min_contrast,
            min_drop=self.fuse_min_drop,
            truncation_front=self.fuse_truncation_front_voxels * voxel,
            truncation_back=self.fuse_truncation_back_voxels * voxel,
            sample_step=self.fuse_sample_voxels * voxel,
        )


PRESET_PARAMS = {
    "draft": ReconstructParams(
        resolutions=(48, 96),
        iterations=(100, 100),
        rays_per_batch=1024,
        # Two coarse passes: a cavity deeper than one sweep (the cup's) opens in the second, from the
        # surface the first left. Together with six neighbours to choose the best two from, not three
        # (bench, draft): Spot's F@1 % 0.935 -> 0.987, the cup's F@2 % 0.778 -> 0.850, the bowl's NC
        # 0.912 -> 0.938.
        carve_sweeps=((1.0, 1.0), (0.25,)),
        # One fusion pass: the second (2 voxels behind) changed no F-score or NC by more than 0.003 on
        # the bowl, the cup, the channel block and Spot once carving kept what it opened, and cost a
        # fifth of the stage.
        fuse_sweeps=((), (6.0,)),
        geometry_levels=2,
        carve_max_side=64,
        # Patches half a pixel apart: about the same share of the object as standard's one pixel at twice
        # the image size, so a patch straddles a concave edge or a cavity floor's corner less (draft F@1
        # %: cup 0.792 -> 0.813, bowl 0.980 -> 0.986, Spot 0.995 -> 0.998, bracket 0.983 -> 0.987;
        # channel block 0.910 -> 0.893). Standard at half a pixel: cup 0.966 -> 0.967, channel block
        # 0.934 -> 0.911 (NC 0.93 -> 0.92), so it keeps one.
        carve_patch_pixels=0.5,
        carve_sweep_agreeing=False,
    ),
    "standard": ReconstructParams(
        resolutions=(96, 192),
        iterations=(400, 300),
        rays_per_batch=2048,
        carve_max_side=128,
    ),
    "high": ReconstructParams(
        resolutions=(128, 256),
        iterations=(1000, 1500),
        rays_per_batch=8192,
        carve_max_side=192,
    ),
}


def params_for(preset: str) -> ReconstructParams:
    if preset not in PRESET_PARAMS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESET_PARAMS)}")
    return PRESET_PARAMS[preset]


@dataclass
class Field:
    sdf: np.ndarray  # (R, R, R) float32, box units, negative inside
    color: np.ndarray  # (R, R, R, 3) float32 in [0, 1]

    @property
    def resolution(self) -> int:
        return int(self.sdf.shape[0])


class Views:
    """The training photographs on the device, and rays drawn from them."""

    def __init__(
        self,
        scene: Scene,
        views: np.ndarray,
        params: ReconstructParams,
        device: torch.device,
        confidence: np.ndarray | None = None,
    ):
        self.height, self.width = scene.image_size
        self.images = torch.from_numpy(scene.images[views]).to(device)  # (N, H, W, 3) uint8
        masks = torch.from_numpy(scene.masks[views]).to(device=device, dtype=torch.float32) / 255.0
        self.masks = masks  # (N, H, W) float in [0, 1]
        self.rgb_masks = _erode(masks > 0.5, params.rgb_erode_pixels)  # (N, H, W) bool
        # (N, H, W) float: the mask term's weight per pixel (``ReconstructParams.mask_weight_by_confidence``)
        self.mask_weights = None
        self.sweep_masks = self.rgb_masks  # (N, H, W) bool: the pixels carving and fusion sweep
        if confidence is not None:
            sure = torch.from_numpy(confidence[views]).to(device=device, dtype=torch.float32) / 255.0
            sure = torch.where(masks > 0.5, torch.ones_like(sure), sure)
            if params.mask_weight_by_confidence:
                self.mask_weights = sure
            self.sweep_masks = self.rgb_masks | (sure < params.sweep_unsure_below)
        dtype = torch.float32
        self.cam_to_box = torch.from_numpy(scene.cam_to_box[views]).to(device=device, dtype=dtype)
        self.intrinsics = torch.from_numpy(scene.intrinsics[views]).to(device=device, dtype=dtype)
        self.intrinsics_inverse = torch.linalg.inv(self.intrinsics)
        candidates = _dilate(masks > 0.5, params.mask_margin_pixels)
        self.candidates = torch.nonzero(candidates.reshape(-1))[:, 0]  # (C,) flat pixel indices
        self.device = device

    def rays(self, flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """View (M,), origins, directions, observed colour (M, 3), mask value (M,), colour-supervised
        flag, mask weight (M,) (None: every pixel counts alike)."""
        pixels = self.height * self.width
        view = flat // pixels
        row = (flat % pixels) // self.width
        col = flat % self.width
        uv = torch.stack([col, row], dim=1).to(torch.float32) + 0.5
        origins, dirs = batched_pixel_rays(
            self.cam_to_box, self.intrinsics, view, uv, self.intrinsics_inverse
        )
        colour = self.images[view, row, col].to(torch.float32) / 255.0
        weight = None if self.mask_weights is None else self.mask_weights[view, row, col]
        return view, origins, dirs, colour, self.masks[view, row, col], self.rgb_masks[view, row, col], weight

    def draw(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """(count,) flat pixel indices, drawn uniformly from the candidate pixels."""
        picks = torch.randint(len(self.candidates), (count,), generator=generator)
        return self.candidates[picks.to(self.device)]


def _dilate(masks: torch.Tensor, pixels: int) -> torch.Tensor:
    if pixels <= 0:
        return masks
    size = 2 * pixels + 1
    return F.max_pool2d(masks[:, None].float(), size, stride=1, padding=pixels)[:, 0] > 0


def _erode(masks: torch.Tensor, pixels: int) -> torch.Tensor:
    return ~_dilate(~masks, pixels)


class FieldModel:
    """The grids being fitted, with their optimiser.

    One tensor ``field`` (4, R, R, R) in ``grids.to_zyx`` layout holds the SDF (channel 0, box units)
    and the colour logits divided by ``colour_scale`` (channels 1-3), so that one trilinear look-up
    serves both and one Adam step moves the SDF by about ``lr_sdf`` and the logits by ``lr_colour``.
    """

    def __init__(self, sdf: torch.Tensor, colour_logits: torch.Tensor, params: ReconstructParams):
        """``sdf`` (1, R, R, R) and ``colour_logits`` (3, R, R, R), both in ``to_zyx`` layout."""
        self.resolution = int(sdf.shape[-1])
        self.voxel = grids.voxel_size(self.resolution)
        self.lr_sdf = params.lr_sdf_voxels * self.voxel
        self.colour_scale = params.lr_colour / self.lr_sdf
        stacked = torch.cat([sdf, colour_logits / self.colour_scale]).contiguous()
        self.field = stacked.detach().requires_grad_(True)
        fused = {"fused": True} if self.field.device.type in ("cpu", "cuda") else {}
        self.optimiser = torch.optim.Adam([self.field], lr=self.lr_sdf, betas=(0.9, 0.99), **fused)

    @property
    def sdf(self) -> torch.Tensor:
        return self.field[:1]

    @property
    def colour_logits(self) -> torch.Tensor:
        return self.field[1:] * self.colour_scale

    def lookup(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """SDF (P,) and colour (P, 3) in [0, 1] at points (P, 3)."""
        values = grids.sample_zyx(self.field, points)
        return values[:, 0], torch.sigmoid(values[:, 1:] * self.colour_scale)

    def sdf_lookup(self, points: torch.Tensor) -> torch.Tensor:
        return grids.sample_zyx(self.sdf, points)[:, 0]

    def set_progress(self, fraction: float, params: ReconstructParams) -> float:
        """Apply the schedules for a point ``fraction`` in [0, 1] of this level; returns the surface width."""
        for group in self.optimiser.param_groups:
            group["lr"] = self.lr_sdf * params.lr_final_fraction**fraction
        ratio = params.width_end_voxels / params.width_start_voxels
        return params.width_start_voxels * ratio**fraction * self.voxel

    def upsampled(self, resolution: int, params: ReconstructParams) -> FieldModel:
        with torch.no_grad():
            return FieldModel(
                grids.resample(self.sdf, resolution), grids.resample(self.colour_logits, resolution), params
            )


def regulariser_probes(points: torch.Tensor, step: float) -> torch.Tensor:
    """(P * 7, 3): each point (P, 3) and its six neighbours ``step`` away along the axes."""
    offsets = torch.cat([torch.zeros(1, 3), torch.eye(3) * step, -torch.eye(3) * step]).to(points)
    return (points[:, None] + offsets).reshape(-1, 3)


def regularisers(probe_sdf: torch.Tensor, step: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Eikonal and smoothness losses from the SDF (P * 7,) at ``regulariser_probes`` (central differences)."""
    if probe_sdf.numel() == 0:
        zero = probe_sdf.new_zeros(())
        return zero, zero
    values = probe_sdf.reshape(-1, 7)
    centre, plus, minus = values[:, :1], values[:, 1:4], values[:, 4:7]
    gradient = (plus - minus) / (2.0 * step)
    eikonal = ((gradient.norm(dim=1) - 1.0) ** 2).mean()
    second = (plus + minus - 2.0 * centre) / step  # dimensionless curvature per axis
    smooth = (second**2).sum(dim=1).mean()
    return eikonal, smooth


class Bounds:
    """Where rays are sampled: the hull's box grown by a margin (box units)."""

    def __init__(self, inside: np.ndarray, margin: float, device: torch.device):
        lower, upper = grids.bounds_of(inside, margin)
        self.lower = torch.tensor(lower, dtype=torch.float32, device=device)
        self.upper = torch.tensor(upper, dtype=torch.float32, device=device)
        self.diagonal = float(np.linalg.norm(upper - lower))

    def clip(self, origins: torch.Tensor, dirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return ray_box(origins, dirs, self.lower, self.upper)


def _render(
    model: FieldModel,
    bounds: Bounds,
    origins: torch.Tensor,
    dirs: torch.Tensor,
    width: float,
    params: ReconstructParams,
    jitter: torch.Tensor | None,
    lookup: FieldLookup | None = None,
):
    near, far = bounds.clip(origins, dirs)
    sampling = RaySampling(
        search_samples=max(8, math.ceil(bounds.diagonal / (params.search_step_voxels * model.voxel))),
        window_half_width=params.window_half_voxels * model.voxel,
        window_samples=params.window_samples,
    )
    background = torch.tensor(params.background, device=origins.device)
    return render_rays(
        lookup or model.lookup,
        model.sdf_lookup,
        origins,
        dirs,
        near,
        far,
        sampling,
        width,
        background,
        jitter,
    )


class ProgressClock:
    """Progress reports of the stage, at most one per ``interval`` seconds, and the stop check."""

    def __init__(self, ctx: StageContext | None, interval: float):
        self.ctx = ctx
        self.interval = interval
        self.fraction = 0.0  # of the stage's optimiser steps done
        self.last = 0.0

    def tick(self, message: str) -> None:
        """Raise ``StageCancelled`` when the job was cancelled; report ``message`` when it is time."""
        if self.ctx is None:
            return
        self.ctx.check_stop()
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self.ctx.on_progress(self.fraction, message)


@dataclass(frozen=True)
class SweptRays:
    """The rays one carving or fusion pass sweeps, with their current surfaces and the visibility test."""

    flat: torch.Tensor  # (M,) flat pixel indices (``Views.rays``)
    surface: torch.Tensor  # (M,) distance of the current surface (``find_surface``)
    hit: torch.Tensor  # (M,) bool: the ray crosses the current surface
    far: torch.Tensor  # (M,) distance where the ray leaves the bounds
    shadows: ShadowMaps | None  # which views see a candidate (None: every view it projects into)


class Fitting:
    """Everything one optimisation step needs besides the model: views, bounds, carving, random draws."""

    def __init__(
        self,
        scene: Scene,
        occupancy: np.ndarray,
        level: float,
        params: ReconstructParams,
        device,
        seed: int,
        confidence: np.ndarray | None = None,
    ):
        self.params = params
        self.device = device
        self.generator = torch.Generator().manual_seed(seed)
        self.views = Views(scene, scene.training_views, params, device, confidence)
        self.hull_inside = occupancy >= level
        self.carved_voxels: list[int] = []  # per carving pass, for the stage figures
        self.fused_rays: list[int] = []  # per fusion pass: rays that found a depth
        self.fused_flips: list[int] = []  # per fusion pass: grid samples whose sign changed
        self.seconds = {"carve": 0.0, "fuse": 0.0}  # wall seconds spent in each kind of pass
        self.probes = torch.zeros(0, 3, device=device)  # regulariser probe points for the next step
        # The hull's signed distance at its own resolution (to_zyx layout): the shape starts as it and
        # never leaves it (the hull contains the object).
        hull_sdf = torch.from_numpy(grids.signed_distance(self.hull_inside))[None]
        self.hull_sdf = grids.to_zyx(hull_sdf).contiguous().to(device)
        # (1, R, R, R) at the current level, or None before anything is carved: a lower bound on the
        # SDF, the signed distance of the space carving proved free. Each fitting step keeps the SDF at
        # or above it, or the smoothness prior, a curvature penalty, refills the cavities carving opened
        # (bowl, draft: F@1 % 0.92 after carving and fusion, 0.82 after the fit without the bound).
        self.carved_bound: torch.Tensor | None = None
        self.stacked = StackedViews(
            self.views.images, self.views.cam_to_box, self.views.intrinsics, params.carve_neighbours
        )

    def inside_hull(self, points: torch.Tensor) -> torch.Tensor:
        return grids.sample_zyx(self.hull_sdf, points)[:, 0] < 0

    def hull_sdf_at(self, resolution: int) -> torch.Tensor:
        """(1, R, R, R) the hull's signed distance resampled onto a level's grid (to_zyx layout)."""
        return grids.resample(self.hull_sdf, resolution).contiguous()

    def losses(
        self, model: FieldModel, bounds: Bounds, width: float, fit_sdf: bool = True
    ) -> dict[str, torch.Tensor]:
        """The weighted loss terms of one batch of rays (``total`` is their sum).

        Without ``fit_sdf`` the SDF's regularisers are left out (they would only cost time).
        """
        params = self.params
        flat = self.views.draw(params.rays_per_batch, self.generator)
        _, origins, dirs, colour, mask, rgb_mask, mask_weight = self.views.rays(flat)
        jitter = torch.rand(len(flat), generator=self.generator).to(self.device) - 0.5
        # The regularisers probe around last step's samples, in the same look-up as this step's rays:
        # one trilinear pass and one dense gradient instead of two.
        probes = self.probes
        probe_sdf = []

        def lookup(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            sdf, colour = model.lookup(torch.cat([points, probes]))
            probe_sdf.append(sdf[len(points) :])
            return sdf[: len(points)], colour[: len(points)]

        rendered = _render(model, bounds, origins, dirs, width, params, jitter, lookup)
        rgb_error = (rendered.rgb - colour).abs().sum(dim=1)
        terms = {
            "rgb": (rgb_error * rgb_mask).sum() / rgb_mask.sum().clamp(min=1),
            "mask": F.binary_cross_entropy(
                rendered.opacity.clamp(1e-4, 1.0 - 1e-4), mask, weight=mask_weight
            ),
        }
        terms["eikonal"], terms["smooth"] = regularisers(probe_sdf[0], model.voxel)
        samples = rendered.points.reshape(-1, 3).detach()
        chosen = torch.randint(
            len(samples), (params.regulariser_points if fit_sdf else 0,), generator=self.generator
        )
        self.probes = regulariser_probes(samples[chosen.to(self.device)], model.voxel)
        weights = {
            "rgb": params.weight_rgb,
            "mask": params.weight_mask,
            "eikonal": params.weight_eikonal,
            "smooth": params.weight_smooth,
        }
        terms["total"] = sum(weights[name] * value for name, value in terms.items())
        return terms

    def sweep_pixels(self) -> tuple[torch.Tensor, int, tuple[int, int, int]]:
        """(M,) flat indices of the pixels that carving and fusion sweep (a grid of at most
        ``carve_max_side`` a side, inside the eroded silhouettes), the grid's stride in pixels and its
        shape (N, h, w)."""
        views = self.views
        stride = max(1, math.ceil(max(views.height, views.width) / self.params.carve_max_side))
        rows = torch.arange(stride // 2, views.height, stride, device=self.device)
        cols = torch.arange(stride // 2, views.width, stride, device=self.device)
        picked = views.sweep_masks[:, rows][:, :, cols]  # (N, h, w)
        view, row, col = torch.nonzero(picked, as_tuple=True)
        flat = (view * views.height + rows[row]) * views.width + cols[col]
        return flat, stride, tuple(picked.shape)

    @torch.no_grad()
    def swept_rays(
        self, model: FieldModel, bounds: Bounds, reach_voxels: float, clock: ProgressClock
    ) -> SweptRays:
        """The swept rays' current surfaces, and (with ``visibility_tolerance_voxels``) the shadow maps
        that decide which views see a candidate; occluders within ``reach_voxels`` more of a candidate
        do not hide it (the surface a fusion window places).

        Every swept ray finds the current surface; a ray's surface counts as real when its own
        photo-consistency cost there (compared only with the views that see it on the current shape)
        is below ``carve_min_cost``. Only real surfaces hide what lies behind them: the hull's extra
        material over a cavity is not yet known to be free, but neither is it known to be there.
        """
        params = self.params
        flat, stride, shape = self.sweep_pixels()
        search = max(8, math.ceil(bounds.diagonal / (params.search_step_voxels * model.voxel)))
        surfaces, hits, fars = [], [], []
        for start in range(0, len(flat), params.carve_chunk_rays):
            clock.tick(f"finding the surface at {model.resolution}^3: {start / len(flat):.0%} of the rays")
            _, origins, dirs, *_ = self.views.rays(flat[start : start + params.carve_chunk_rays])
            near, far = bounds.clip(origins, dirs)
            surface, hit = find_surface(model.sdf_lookup, origins, dirs, near, far, search)
            surfaces.append(surface)
            hits.append(hit)
            fars.append(far)
        surface, hit, far = torch.cat(surfaces), torch.cat(hits), torch.cat(fars)
        if params.visibility_tolerance_voxels is None:
            return SweptRays(flat, surface, hit, far, None)
        pixels = self.views.height * self.views.width
        view = flat // pixels
        cell = (view, (flat % pixels) // self.views.width // stride, flat % self.views.width // stride)
        distance = torch.full(shape, float("inf"), device=self.device)
        distance[cell] = torch.where(hit, surface, torch.full_like(surface, float("inf")))
        # Directions are unit vectors from the camera centre: a ray's surface distance is the camera's.
        current = ShadowMaps(distance, stride, params.visibility_tolerance_voxels * model.voxel)
        real = torch.zeros_like(hit)
        settings = self.carve_settings(model, depth=0.0)
        for start in range(0, len(flat), params.carve_chunk_rays):
            part = slice(start, start + params.carve_chunk_rays)
            ray_view, origins, dirs, *_ = self.views.rays(flat[part])
            agrees = surface_agrees(
                self.stacked, ray_view, origins, dirs, surface[part], params.carve_min_cost, settings, current
            )
            real[part] = hit[part] & agrees
        confirmed = torch.zeros(shape, dtype=torch.bool, device=self.device)
        confirmed[cell] = real
        tolerance = (params.visibility_tolerance_voxels + reach_voxels) * model.voxel
        return SweptRays(flat, surface, hit, far, current.where_confirmed(confirmed, tolerance))

    @torch.no_grad()
    def fuse(self, model: FieldModel, bounds: Bounds, back_voxels: float, clock: ProgressClock) -> int:
        """One fusion pass over the training views (``photo_fusion``), sweeping from
        ``fuse_front_voxels`` in front of the current surface to ``back_voxels`` behind it; returns the
        number of grid samples whose sign changed."""
        params = self.params
        if params.carve_max_side <= 0:
            return 0
        settings = params.fusion_settings(model.voxel, back_voxels)
        fusion = DepthFusion(model.resolution, self.device)
        # Occluders within the window's reach of a candidate are the surface being placed: not hidden.
        swept = self.swept_rays(model, bounds, back_voxels, clock)
        for start in range(0, len(swept.flat), params.carve_chunk_rays):
            clock.tick(
                f"placing the surface at {model.resolution}^3: {start / len(swept.flat):.0%} of the rays"
            )
            part = slice(start, start + params.carve_chunk_rays)
            ray_view, origins, dirs, *_ = self.views.rays(swept.flat[part])
            surface, hit = swept.surface[part], swept.hit[part]
            depths = photo_depths(
                self.stacked,
                ray_view[hit],
                origins[hit],
                dirs[hit],
                surface[hit],
                model.sdf_lookup,
                self.inside_hull,
                settings,
                swept.shadows,
            )
            fusion.add(depths, settings)
        fused, flipped = fusion.fused(
            model.field[0], params.fuse_prior_weight, params.fuse_min_weight, settings
        )
        model.field[0] = torch.maximum(fused, self.hull_sdf_at(model.resolution)[0])
        self.fused_rays.append(fusion.rays)
        return flipped

    def carve_settings(self, model: FieldModel, depth: float) -> CarveSettings:
        """Carving's settings at ``model``'s level, sweeping ``depth`` box units behind the surface."""
        params = self.params
        return CarveSettings(
            depth_candidates=params.carve_candidates,
            depth=depth,
            patch_pixels=params.carve_patch_pixels,
            min_gain=params.carve_min_gain,
            min_surface_cost=params.carve_min_cost,
            keep_margin=params.carve_keep_voxels * model.voxel,
            compare_views=params.carve_compare_views,
            sweep_agreeing=params.carve_sweep_agreeing,
        )

    @torch.no_grad()
    def carve(self, model: FieldModel, bounds: Bounds, depth: float, clock: ProgressClock) -> int:
        """One carving pass over the training views, sweeping ``depth`` box units behind the current
        surface; returns the number of voxels carved out.

        Rays through a grid of pixels inside every silhouette find their current surface, sweep deeper
        for photo-consistency and vote: free space in front of a clearly better depth, surface at it. A
        voxel with ``carve_votes`` free votes, ``carve_ratio`` times its surface votes, is removed from
        the shape (CSG difference on the SDF: f = max(f, -f_carved)).
        """
        params = self.params
        if params.carve_max_side <= 0:
            return 0
        resolution = model.resolution
        free_votes = torch.zeros(resolution**3, device=self.device)
        surface_votes = torch.zeros(resolution**3, device=self.device)
        swept = self.swept_rays(model, bounds, 0.0, clock)
        settings = self.carve_settings(model, depth)
        num_views = len(self.views.images)
        voting_views = [torch.zeros(0, dtype=torch.long, device=self.device)]  # voxel x num_views + view
        for start in range(0, len(swept.flat), params.carve_chunk_rays):
            clock.tick(f"carving {resolution}^3: {start / len(swept.flat):.0%} of the rays")
            part = slice(start, start + params.carve_chunk_rays)
            ray_view, origins, dirs, *_ = self.views.rays(swept.flat[part])
            surface, hit, far = swept.surface[part], swept.hit[part], swept.far[part]
            free, found, free_view = photo_findings(
                self.stacked,
                ray_view[hit],
                origins[hit],
                dirs[hit],
                surface[hit],
                far[hit],
                self.inside_hull,
                settings,
                swept.shadows,
            )
            free_index = _voxel_index(free, resolution)
            free_votes.index_add_(0, free_index, free.new_ones(len(free)))
            voting_views.append(free_index * num_views + free_view)
            surface_votes.index_add_(0, _voxel_index(found, resolution), found.new_ones(len(found)))
        free_views = torch.zeros(resolution**3, device=self.device)  # distinct views voting a voxel free
        distinct = torch.unique(torch.cat(voting_views)) // num_views
        free_views.index_add_(0, distinct, free_views.new_ones(len(distinct)))
        carved = (
            (free_votes >= params.carve_votes)
            & (free_votes >= params.carve_ratio * surface_votes)
            & (free_views >= params.carve_views)
        )
        carved = carved.reshape((resolution,) * 3).cpu().numpy()  # to_zyx layout, like the field
        if not carved.any():
            return 0
        carved = ndimage.binary_closing(carved, iterations=params.carve_closing)
        # What the carving cut off from the main body (floaters in a cavity) goes as well.
        remaining = (model.sdf[0] < 0).cpu().numpy() & ~carved
        labels, count = ndimage.label(remaining)
        if count > 1:
            sizes = np.bincount(labels.ravel())
            sizes[0] = 0
            carved |= (labels != 0) & (labels != sizes.argmax())
        if carved.all():
            return 0
        carved_sdf = torch.from_numpy(grids.signed_distance(carved)).to(self.device)
        model.field[0] = torch.maximum(model.field[0], -carved_sdf)
        self.carved_bound = (
            -carved_sdf[None] if self.carved_bound is None else torch.maximum(self.carved_bound, -carved_sdf)
        )
        return int(carved.sum())


def _voxel_index(points: torch.Tensor, resolution: int) -> torch.Tensor:
    """(P,) flat indices, in ``to_zyx`` layout, of the grid samples nearest to points (P, 3)."""
    index = ((points + 1.0) * 0.5 * (resolution - 1)).round().long().clamp(0, resolution - 1)
    return (index[:, 2] * resolution + index[:, 1]) * resolution + index[:, 0]


def fit(
    scene: Scene,
    occupancy: np.ndarray,
    level: float,
    params: ReconstructParams,
    device: torch.device,
    seed: int,
    ctx: StageContext | None = None,
    confidence: np.ndarray | None = None,
) -> tuple[FieldModel, dict]:
    """Fit the SDF and colour grids to the scene's training views; ``confidence`` (N, H, W) uint8:
    how sure estimated masks are of their background (``hull.load_confidence``).

    Returns the model and its figures: ``final_losses`` (the last batch's terms) and ``carved_voxels``
    (voxels removed by each carving pass).
    """
    torch.manual_seed(seed)
    fitting = Fitting(scene, occupancy, level, params, device, seed, confidence)
    resolution = params.resolutions[0]
    model = FieldModel(
        fitting.hull_sdf_at(resolution),
        torch.zeros(3, resolution, resolution, resolution, device=device),
        params,
    )
    total = sum(params.iterations)
    done = 0
    terms: dict[str, torch.Tensor] = {}
    clock = ProgressClock(ctx, params.progress_seconds)
    for level_index, (resolution, iterations) in enumerate(
        zip(params.resolutions, params.iterations, strict=True)
    ):
        if level_index > 0:
            model = model.upsampled(resolution, params)
            if fitting.carved_bound is not None:
                fitting.carved_bound = grids.resample(fitting.carved_bound, resolution).contiguous()
            with torch.no_grad():  # the finer hull sharpens what the coarse level blurred
                model.field[0] = torch.maximum(model.field[0], fitting.hull_sdf_at(resolution)[0])
        bounds = Bounds(fitting.hull_inside, params.bounds_margin_voxels * model.voxel, device)
        fitting.probes = fitting.probes[:0]  # probes are spaced for one level's voxels
        started = time.perf_counter()
        for depth in params.carve_sweeps_at(level_index):
            fitting.carved_voxels.append(fitting.carve(model, bounds, depth, clock))
        fitting.seconds["carve"] += time.perf_counter() - started
        started = time.perf_counter()
        for back_voxels in params.fuse_sweeps_at(level_index):
            fitting.fused_flips.append(fitting.fuse(model, bounds, back_voxels, clock))
        fitting.seconds["fuse"] += time.perf_counter() - started
        fit_sdf = level_index < params.geometry_levels
        for step in range(iterations):
            clock.tick(f"fitting {resolution}^3, step {done}/{total}")
            width = model.set_progress(step / max(iterations - 1, 1), params)
            terms = fitting.losses(model, bounds, width, fit_sdf)
            model.optimiser.zero_grad(set_to_none=True)
            terms["total"].backward()
            if not fit_sdf:  # Adam leaves a parameter whose gradients are all zero where it is
                model.field.grad[0] = 0.0
            model.optimiser.step()
            if fit_sdf and fitting.carved_bound is not None:
                with torch.no_grad():
                    model.field[0] = torch.maximum(model.field[0], fitting.carved_bound[0])
            done += 1
            clock.fraction = done / total
    losses = {name: round(float(value.detach()), 6) for name, value in terms.items()}
    return model, {
        "final_losses": losses,
        "carved_voxels": fitting.carved_voxels,
        "fused_rays": fitting.fused_rays,
        "fused_sign_changes": fitting.fused_flips,
        "carve_seconds": round(fitting.seconds["carve"], 3),
        "fuse_seconds": round(fitting.seconds["fuse"], 3),
    }


@torch.no_grad()
def render_view(
    model: FieldModel,
    bounds: Bounds,
    cam_to_box: torch.Tensor,
    intrinsics: torch.Tensor,
    height: int,
    width: int,
    stride: int,
    params: ReconstructParams,
    ctx: StageContext | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Colour (h, w, 3) and opacity (h, w) of one view at every ``stride``-th pixel centre."""
    device = cam_to_box.device
    rows = torch.arange(0, height, stride, device=device)
    cols = torch.arange(0, width, stride, device=device)
    grid_rows, grid_cols = torch.meshgrid(rows, cols, indexing="ij")
    uv = torch.stack([grid_cols.reshape(-1), grid_rows.reshape(-1)], dim=1).to(torch.float32) + 0.5
    view = torch.zeros(len(uv), dtype=torch.long, device=device)
    origins, dirs = batched_pixel_rays(cam_to_box[None], intrinsics[None], view, uv)
    surface_width = params.width_end_voxels * model.voxel
    colours, opacities = [], []
    for start in range(0, len(uv), params.eval_chunk_rays):
        if ctx is not None:
            ctx.check_stop()
        part = slice(start, start + params.eval_chunk_rays)
        rendered = _render(model, bounds, origins[part], dirs[part], surface_width, params, None)
        colours.append(rendered.rgb)
        opacities.append(rendered.opacity)
    shape = (len(rows), len(cols))
    return torch.cat(colours).reshape(*shape, 3), torch.cat(opacities).reshape(shape)


def held_out_figures(
    model: FieldModel,
    scene: Scene,
    hull_inside: np.ndarray,
    params: ReconstructParams,
    device: torch.device,
    ctx: StageContext | None = None,
) -> dict:
    """Mask IoU and PSNR (inside the observed mask) of the fitted field on the held-out views."""
    if len(scene.holdout) == 0:
        return {}
    height, width = scene.image_size
    stride = max(1, math.ceil(max(height, width) / params.eval_max_side))
    bounds = Bounds(hull_inside, params.bounds_margin_voxels * model.voxel, device)
    intersections = unions = 0
    squared_error = pixels = 0.0
    for view in scene.holdout:
        rgb, opacity = render_view(
            model,
            bounds,
            torch.from_numpy(scene.cam_to_box[view]).to(device=device, dtype=torch.float32),
            torch.from_numpy(scene.intrinsics[view]).to(device=device, dtype=torch.float32),
            height,
            width,
            stride,
            params,
            ctx,
        )
        observed_mask = torch.from_numpy(scene.masks[view][::stride, ::stride] > 127).to(device)
        observed = torch.from_numpy(scene.images[view][::stride, ::stride]).to(device).float() / 255.0
        predicted_mask = opacity > 0.5
        intersections += int((predicted_mask & observed_mask).sum())
        unions += int((predicted_mask | observed_mask).sum())
        squared_error += float(((rgb - observed) ** 2)[observed_mask].sum())
        pixels += float(observed_mask.sum()) * 3
    mse = squared_error / max(pixels, 1.0)
    return {
        "holdout_views": len(scene.holdout),
        "holdout_mask_iou": intersections / max(unions, 1),
        "holdout_psnr": -10.0 * math.log10(max(mse, 1e-10)),
        "holdout_stride": stride,
    }


def to_field(model: FieldModel) -> Field:
    with torch.no_grad():
        sdf = grids.to_zyx(model.sdf)[0].cpu().numpy().astype(np.float32)
        colour = torch.sigmoid(grids.to_zyx(model.colour_logits)).permute(1, 2, 3, 0)
        colour = colour.cpu().numpy().astype(np.float32)
    return Field(sdf=sdf, color=colour)


def load(job_dir: Path) -> Field:
    with np.load(job_dir / "work" / STAGE / FIELD_FILE) as data:
        return Field(sdf=data["sdf"], color=data["color"])


def run(ctx: StageContext, params: ReconstructParams | None = None) -> dict:
    """The reconstruct stage; ``params`` default to the preset's."""
    params = params or params_for(ctx.preset)
    watch = Stopwatch()
    scene_folder = ctx.job_dir / "work" / "preprocess"
    hull_file = ctx.job_dir / "work" / hull.STAGE / hull.HULL_FILE
    for needed in (scene_folder / "scene.npz", hull_file):
        if not needed.is_file():
            raise CaptureError("missing_input", f"{needed} not found: run the earlier stages first")
    scene = Scene.load(scene_folder)
    visual_hull = hull.load(ctx.job_dir)
    ctx.on_progress(0.0, "fitting the surface to the photographs")
    confidence = hull.load_confidence(scene_folder)
    model, fit_figures = fit(
        scene, visual_hull.occupancy, visual_hull.level, params, ctx.device, ctx.seed, ctx, confidence
    )
    fit_seconds = watch.seconds
    figures = held_out_figures(model, scene, visual_hull.inside, params, ctx.device, ctx)
    field = to_field(model)
    ctx.check_stop()
    result = {
        "stage": STAGE,
        "seconds": round(watch.seconds, 3),
        "fit_seconds": round(fit_seconds, 3),
        "device": str(ctx.device),
        "resolution": field.resolution,
        "iterations": sum(params.iterations),
        "rays_per_batch": params.rays_per_batch,
        **fit_figures,
        **figures,
        "params": asdict(params),
    }
    folder = ctx.work_dir(STAGE)
    np.savez_compressed(
        folder / FIELD_FILE, sdf=field.sdf, color=field.color, resolution=np.int64(field.resolution)
    )
    write_stage_record(folder, result)
    ctx.on_progress(1.0, "surface fitted")
    return result
