"""bench/reconstruction.py, bench/real_captures.py, bench/mask_ablation.py and bench/video_ablation.py:
the tables and goal verdicts they print, the mask ablation's mask substitution and the video
ablation's frame bookkeeping (no reconstruction run here)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import torch

from gpu_container.engine.quality import Integrity, Quality

BENCH_DIR = Path(__file__).resolve().parents[3] / "bench"


def load_bench(script: str = "reconstruction"):
    if str(BENCH_DIR) not in sys.path:  # as when the script runs: its folder is on the path (report.py)
        sys.path.insert(0, str(BENCH_DIR))
    spec = importlib.util.spec_from_file_location(f"bench_{script}", BENCH_DIR / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def quality(f1: float) -> Quality:
    taus = (0.005, 0.01, 0.02)
    return Quality(
        chamfer_l1=0.004,
        fscore={0.005: f1 - 0.2, 0.01: f1, 0.02: min(1.0, f1 + 0.02)},
        precision=dict.fromkeys(taus, f1),
        recall=dict.fromkeys(taus, f1),
        normal_consistency=0.95,
    )


def test_goals_are_judged_against_the_issue_targets():
    bench = load_bench()
    stages = {
        "validate": 0.1,
        "preprocess": 2.0,
        "hull": 3.0,
        "reconstruct": 30.0,
        "mesh": 2.0,
        "export": 1.0,
    }
    clean, split = Integrity(True, True, 1), Integrity(True, True, 3)
    rows = [
        bench.Row(
            "spot", "draft", 32, 128, quality(0.93), quality(0.95), {**stages, "total": 14.1, "cpu": 20.0}
        ),
        bench.Row(
            "spot",
            "standard",
            64,
            256,
            quality(0.95),
            quality(0.975),
            {**stages, "total": 80.0, "cpu": 150.0},
            clean,
            1024,
        ),
        bench.Row(
            "wand",
            "standard",
            64,
            256,
            quality(0.85),
            quality(0.96),
            {**stages, "total": 90.0, "cpu": 170.0},
            split,
            0,
            0.92,
        ),
    ]

    lines = bench.goal_lines(rows, torch.device("cpu"))

    assert lines == [
        "draft, spot, F@1% 0.950 >= 0.92: MET",
        "draft, spot, 32 views 128², CPU end to end 14.1 s <= 15 s: MET",
        "standard, spot, F@1% 0.975 >= 0.97, Chamfer-L1 0.0040 <= 0.004, NC 0.950 >= 0.95: MET",
        "standard, spot, one watertight manifold piece (1 piece(s)): MET",
        "standard, wand, F@1% 0.960 >= 0.97, Chamfer-L1 0.0040 <= 0.004, NC 0.950 >= 0.95: NOT MET"
        " (8.0% of the surface is seen by fewer than two training views)",
        "standard, wand, one watertight manifold piece (3 piece(s)): NOT MET",
    ]
    table = bench.format_table(rows)
    assert len(table) == 2 + 2 * len(rows)
    assert "reconstr" in table[0]
    assert table[3].split()[:4] == ["spot", "draft", "32x128²", "full"]
    assert table[5].split()[9:11] == ["y/y/1", "1024²"]
    assert table[7].split()[9:11] == ["y/y/3", "none"]
    assert table[6].split()[9] == "0.920"  # the hull row carries the share two views see


def test_object_poses_are_fixed_per_name_and_turn_the_solid_shapes():
    bench = load_bench()
    orientation, world = bench.object_pose("wand")
    again, world_again = bench.object_pose("wand")
    assert (orientation == again).all()
    assert (world == world_again).all()
    assert not (orientation == bench.object_pose("bracket")[0]).all()
    assert (bench.object_pose("spot")[0] == bench.np.eye(4)).all()  # upright: as the capture shows it
    scale = bench.np.cbrt(bench.np.linalg.det(world[:3, :3]))
    assert bench.WORLD_SCALE_RANGE[0] <= scale <= bench.WORLD_SCALE_RANGE[1]


def test_the_report_names_its_command_commit_device_and_goals(tmp_path: Path):
    load_bench()
    from report import RunRecord

    out = tmp_path / "report.txt"
    record = RunRecord("reconstruction.py", ["--quick"])
    text = record.write(out, "Some benchmark", torch.device("cpu"), ["a note"], ["table row"], ["goal: MET"])

    assert out.read_text() == text
    lines = text.splitlines()
    assert lines[0].startswith("Some benchmark, ")
    assert lines[0].endswith(" UTC")
    assert lines[1] == "command: python bench/reconstruction.py --quick"
    assert lines[2].startswith("commit: ")
    assert lines[2] != "commit: "
    assert lines[3].startswith("device: cpu (")
    assert lines[4].startswith("load average before the run: ")
    assert lines[5:] == ["a note", "", "table row", "", "goals:", "  goal: MET"]


def test_a_real_capture_job_that_failed_is_a_row_that_says_so_and_misses_its_goals():
    bench = load_bench("real_captures")
    nan = (float("nan"), float("nan"))
    seconds = {"preprocess": 12.0, "total": 12.5, "cpu": float("nan")}
    rows = [
        bench.Row("spot", "posed", "standard", 0, 0, nan, nan, 0.0, float("nan"), seconds, "object_clipped"),
        bench.Row("bowl", "posed", "draft", 48, 48, nan, nan, 0.9, 0.004, {**seconds, "cpu": 20.0}),
    ]
    table = bench.format_table(rows)
    assert "FAILED object_clipped after 12.5 s" in table[2]
    assert table[3].startswith("bowl")
    assert "0.900" in table[3]
    assert bench.goal_lines(rows)[0] == "spot, posed, standard: FAILED object_clipped: NOT MET"


def ablation_row(bench, name: str, mode: str, final_f1: float):
    scores = {stage: (final_f1 - 0.05, final_f1, final_f1) for stage in bench.SHAPING}
    scores["mesh"] = (final_f1, final_f1, final_f1)
    return bench.Row(name, "draft", mode, scores, (0.95, 0.98, 0.97) if mode == "estimated" else None)


def test_the_mask_ablation_splits_the_loss_between_the_masks_and_the_estimated_mask_rules():
    bench = load_bench("mask_ablation")
    rows = [
        ablation_row(bench, "spot", "estimated", 0.85),
        ablation_row(bench, "spot", "true, est. path", 0.93),
        ablation_row(bench, "spot", "true, given", 0.96),
        ablation_row(bench, "cup", "estimated", 0.62),  # the other two ways did not run
    ]
    summary = bench.summary_lines(rows)
    assert summary == [
        "spot, draft: F@1 % 0.850 estimated; the masks cost +0.080, the estimated-mask rules with "
        "true masks +0.030 (given: 0.960)"
    ]
    table = bench.format_table(rows)
    assert len(table) == 2 + len(rows)
    assert "0.950/0.980/0.970" in table[2]  # the estimated row carries the masks' figures
    assert table[3].rstrip().endswith("0.930/0.930/0.930")  # the others none


def test_the_ablation_hands_the_estimated_path_the_true_masks_and_then_restores_it(monkeypatch):
    bench = load_bench("mask_ablation")
    from gpu_container.engine import object_masks

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(2, 32, 32, 3), dtype=np.uint8)
    alpha = np.zeros((2, 64, 64), dtype=np.uint8)  # the capture's size: twice the images'
    alpha[:, 16:48, 20:40] = 255
    alpha[1, 16:48, 40] = 128  # a column half covered: a quarter of the pixels at 32, not counted

    def estimated(images, cam_to_world, intrinsics, radial, found, params, ctx, band=(0.0, 1.0)):
        masks = np.full(images.shape[:3], 255, dtype=np.uint8)
        return masks, np.zeros(images.shape[:3], dtype=np.uint8), {"refine_passes": 1}

    monkeypatch.setattr(object_masks, "estimate_masks", estimated)
    with bench.true_masks_in_estimated_path(alpha):
        masks, confidence, figures = object_masks.estimate_masks(
            images, None, None, None, None, object_masks.MaskParams(), None
        )
    assert object_masks.estimate_masks is estimated
    expected = np.zeros((2, 32, 32), dtype=bool)
    expected[:, 8:24, 10:20] = True
    assert np.array_equal(masks > 127, expected)
    assert figures == {"refine_passes": 1}
    # confidence follows the true masks: 255 on them, the colour models' verdict off them
    assert (confidence[expected] == 255).all()
    assert confidence[~expected].min() < 255


def test_the_video_ablation_splits_the_loss_between_viewpoints_compression_and_estimation():
    bench = load_bench("video_ablation")
    nan = float("nan")
    rows = [
        bench.Row("spot", "draft", "posed rig", 48, 0.85, nan, nan),
        bench.Row("spot", "draft", "walk, raw, true cams", 41, 0.77, 0.75, 0.80),
        bench.Row("spot", "draft", "walk, H.264, true cams", 41, 0.75, 0.73, 0.77),
        bench.Row("spot", "draft", "video", 41, 0.74, nan, nan),
        bench.Row("cup", "draft", "posed rig", 48, 0.62, nan, nan),  # the other three did not run
    ]
    assert bench.summary_lines(rows) == [
        "spot, draft: F@1 % 0.850 posed rig; the walk's viewpoints cost -0.080, H.264 -0.020, "
        "the estimated cameras and frames -0.010 (video: 0.740)"
    ]
    table = bench.format_table(rows)
    assert len(table) == 2 + len(rows)
    assert table[3].rstrip().endswith("0.770   0.750   0.800")
    assert table[2].rstrip().endswith("0.850")  # no precision or recall where none was split


def test_the_video_ablation_takes_the_frames_the_video_job_kept(tmp_path):
    bench = load_bench("video_ablation")
    fps = bench.WALK.fps
    frames = [
        {"file_path": f"capture.mp4#t={index / fps:.4f}", "status": status}
        for index, status in ((0, "used"), (3, "dropped"), (5, "used"), (95, "used"))
    ]
    (tmp_path / "output").mkdir()
    (tmp_path / "output" / "cameras.json").write_text(json.dumps({"cameras": "estimated", "frames": frames}))
    assert bench.kept_frames(tmp_path) == [0, 5, 95]


def test_the_video_ablation_decodes_every_frame_the_encoder_wrote(tmp_path):
    bench = load_bench("video_ablation")
    from gpu_container.capture import video

    frames = np.zeros((5, 32, 48, 3), dtype=np.uint8)
    for index in range(5):
        frames[index, :, 8 * index : 8 * index + 8] = 200  # a bar that moves a step a frame
    decoded = bench.decoded_frames(video.encode_mp4(frames, tmp_path / "bar.mp4", fps=6.0))
    assert decoded.shape == frames.shape
    error = np.abs(decoded.astype(int) - frames.astype(int)).mean(axis=(1, 2, 3))
    assert (error < 6).all()  # lossy, but each frame is its own, in order
    assert int(decoded[4, :, 32:40].mean()) > 150
    assert int(decoded[0, :, 32:40].mean()) < 50
