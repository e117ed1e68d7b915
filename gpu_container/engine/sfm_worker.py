"""The child process that runs pycolmap for ``camera_estimation`` (so a cancel can end it at once).

``python -m gpu_container.engine.sfm_worker request.json`` reads the request that
``camera_estimation`` wrote, runs SIFT extraction, matching and either incremental mapping
(``mode = "map"``: cameras unknown) or triangulation from the given poses (``mode = "triangulate"``),
and writes the result (``request["result_file"]``) beside the request. It imports numpy and pycolmap
only (no torch), so it starts quickly. Progress goes to stdout as JSON lines ``{"step", "done",
"total"}``; glog's own lines go to stderr, which the parent reads (for the extraction count) and
never echoes.

Poses in the request and the result are COLMAP's: ``cam_from_world`` (3, 4), OpenCV camera axes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pycolmap


def say(step: str, done: int = 0, total: int = 0) -> None:
    print(json.dumps({"step": step, "done": done, "total": total}), flush=True)


def _extraction(request: dict) -> pycolmap.FeatureExtractionOptions:
    options = pycolmap.FeatureExtractionOptions()
    options.max_image_size = request["max_image_size"]
    options.num_threads = request["num_threads"]
    options.sift.max_num_features = request["max_num_features"]
    options.sift.first_octave = request["first_octave"]
    options.sift.peak_threshold = request["peak_threshold"]
    return options


def extract(request: dict, database: Path, image_dir: Path) -> None:
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = request["camera_model"]
    if request["camera_params"]:
        reader.camera_params = ",".join(f"{value:.9g}" for value in request["camera_params"])
    mode = pycolmap.CameraMode.SINGLE if request["shared_camera"] else pycolmap.CameraMode.PER_IMAGE
    say("features", 0, len(request["names"]))
    pycolmap.extract_features(
        database,
        image_dir,
        image_names=request["names"],
        camera_mode=mode,
        reader_options=reader,
        extraction_options=_extraction(request),
        device=pycolmap.Device.cpu,
    )


def _verification(request: dict) -> pycolmap.TwoViewGeometryOptions:
    """Geometric verification with a seeded RANSAC: by default (seed -1) each matching thread draws
    from its own unseeded generator (``set_random_seed`` seeds the calling thread's only), so the
    verified matches, and all that follows, changed from run to run."""
    options = pycolmap.TwoViewGeometryOptions()
    options.ransac.random_seed = request["seed"]
    return options


def match(request: dict, database: Path) -> None:
    options = pycolmap.FeatureMatchingOptions()
    options.num_threads = request["num_threads"]
    verification = _verification(request)
    say("matching")
    if request["sequential"]:
        pairing = pycolmap.SequentialPairingOptions()
        pairing.overlap = request["sequential_overlap"]
        pairing.quadratic_overlap = True
        pycolmap.match_sequential(
            database,
            matching_options=options,
            pairing_options=pairing,
            verification_options=verification,
            device=pycolmap.Device.cpu,
        )
        # a walk round the object ends where it began: match the last frames with the first too
        names, overlap = request["names"], request["sequential_overlap"]
        pairs = [(late, early) for late in names[-overlap:] for early in names[:overlap] if late != early]
        if pairs:
            pair_file = database.parent / "loop_pairs.txt"
            pair_file.write_text("".join(f"{late} {early}\n" for late, early in pairs))
            pycolmap.match_image_pairs(
                database,
                matching_options=options,
                pairing_options=pycolmap.ImportedPairingOptions(match_list_path=str(pair_file)),
                verification_options=verification,
                device=pycolmap.Device.cpu,
            )
    else:
        pycolmap.match_exhaustive(
            database, matching_options=options, verification_options=verification, device=pycolmap.Device.cpu
        )


def _mapper_options(request: dict, refine_intrinsics: bool) -> pycolmap.IncrementalPipelineOptions:
    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads = request["num_threads"]
    options.random_seed = request["seed"]
    options.mapper.random_seed = request["seed"]
    options.triangulation.random_seed = request["seed"]
    options.multiple_models = True
    options.min_model_size = request["min_model_size"]
    options.min_num_matches = request["min_num_matches"]
    options.mapper.init_min_num_inliers = request["init_min_num_inliers"]
    options.mapper.abs_pose_min_num_inliers = request["abs_pose_min_num_inliers"]
    options.ba_refine_focal_length = refine_intrinsics
    options.ba_refine_extra_params = refine_intrinsics
    options.mapper.abs_pose_refine_focal_length = refine_intrinsics
    options.mapper.abs_pose_refine_extra_params = refine_intrinsics
    return options


def incremental(request: dict, database: Path, image_dir: Path, out: Path) -> pycolmap.Reconstruction | None:
    total = len(request["names"])
    registered = [0]  # views registered so far (across models: the count only grows)

    def initial_pair() -> None:
        registered[0] = min(total, registered[0] + 2)
        say("registered", registered[0], total)

    def next_image() -> None:
        registered[0] = min(total, registered[0] + 1)
        say("registered", registered[0], total)

    say("registered", 0, total)
    models = pycolmap.incremental_mapping(
        database,
        image_dir,
        out,
        _mapper_options(request, request["refine_intrinsics"]),
        initial_image_pair_callback=initial_pair,
        next_image_callback=next_image,
    )
    if not models:
        return None
    return max(models.values(), key=lambda model: model.num_reg_images())


def triangulate(request: dict, database: Path, image_dir: Path, out: Path) -> pycolmap.Reconstruction:
    """A reconstruction of the given poses (and the database's cameras), then its triangulated points."""
    db = pycolmap.Database.open(database)
    try:
        cameras = db.read_all_cameras()
        images = db.read_all_images()
    finally:
        db.close()
    poses = dict(zip(request["names"], request["cam_from_world"], strict=True))
    pinhole = dict(zip(request["names"], request["pinhole"], strict=True))  # fx, fy, cx, cy per view
    by_camera = {image.camera_id: pinhole[image.name] for image in images}
    model = pycolmap.Reconstruction()
    for camera in cameras:
        camera.params = by_camera[camera.camera_id]  # PINHOLE: exactly the given intrinsics
        model.add_camera_with_trivial_rig(camera)
    for image in images:
        pose = pycolmap.Rigid3d(np.asarray(poses[image.name], dtype=np.float64))
        model.add_image_with_trivial_frame(
            pycolmap.Image(name=image.name, camera_id=image.camera_id, image_id=image.image_id), pose
        )
    say("triangulating")
    return pycolmap.triangulate_points(
        model, database, image_dir, out, clear_points=True, options=_mapper_options(request, False)
    )


def write_result(model: pycolmap.Reconstruction | None, path: Path) -> None:
    names, poses, cameras = [], [], []
    xyz, colour, track_point, track_image, track_xy = [], [], [], [], []
    if model is not None:
        image_index = {}
        for image_id in sorted(model.reg_image_ids()):
            image = model.image(image_id)
            camera = image.camera
            image_index[image_id] = len(names)
            names.append(image.name)
            poses.append(image.cam_from_world().matrix())
            k1 = camera.params[3] if camera.model_name == "SIMPLE_RADIAL" else 0.0
            fx, fy = (camera.focal_length_x, camera.focal_length_y)
            cameras.append([fx, fy, camera.principal_point_x, camera.principal_point_y, k1])
        for point_index, point in enumerate(model.points3D.values()):
            xyz.append(point.xyz)
            colour.append(point.color)
            for element in point.track.elements:
                if element.image_id in image_index:
                    track_point.append(point_index)
                    track_image.append(image_index[element.image_id])
                    track_xy.append(model.image(element.image_id).points2D[element.point2D_idx].xy)
    np.savez(
        path,
        names=np.array(names, dtype=str),
        cam_from_world=np.array(poses, dtype=np.float64).reshape(-1, 3, 4),
        cameras=np.array(cameras, dtype=np.float64).reshape(-1, 5),
        points=np.array(xyz, dtype=np.float64).reshape(-1, 3),
        colours=np.array(colour, dtype=np.uint8).reshape(-1, 3),
        track_point=np.array(track_point, dtype=np.int64),
        track_image=np.array(track_image, dtype=np.int64),
        track_xy=np.array(track_xy, dtype=np.float64).reshape(-1, 2),
        mean_reprojection_error=np.float64(model.compute_mean_reprojection_error() if model else np.nan),
    )


def main(request_path: str) -> int:
    request = json.loads(Path(request_path).read_text())
    folder = Path(request_path).parent
    pycolmap.logging.minloglevel = request["log_level"]
    pycolmap.set_random_seed(request["seed"])
    database, image_dir = folder / "database.db", Path(request["image_dir"])
    models = folder / "models"
    models.mkdir(exist_ok=True)
    extract(request, database, image_dir)
    match(request, database)
    if request["mode"] == "triangulate":
        model = triangulate(request, database, image_dir, models)
    else:
        model = incremental(request, database, image_dir, models)
    write_result(model, folder / request["result_file"])
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
