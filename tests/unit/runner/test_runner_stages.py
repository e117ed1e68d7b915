"""The stage runner's behaviour around a stage: I/O with S3, progress, stop, failure, success.

Stand-in stage functions are used here because these tests are about the runner; the real engine
stages run through it in test_runner_engine.py.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import pytest
from stop_bounds import STOPPED_MID_RUN_S, UNSTOPPED_WORK_S

from gpu_container.engine.context import CaptureError, StageContext
from gpu_container.runner import STAGE_READS, ExitCode
from jobstate import layout
from jobstate.jobs import CANCELLING, FAILED, RUNNING, SUCCEEDED
from jobstate.stages import stage_named

from .conftest import OWNER, FakeClock, keys_under, put_capture


def writes_files(stage: str, names: dict[str, bytes], steps: int = 5):
    """A stage that reports ``steps`` progress fractions and writes ``names`` into its work folder."""

    def run(ctx: StageContext) -> dict:
        for step in range(steps + 1):
            ctx.check_stop()
            ctx.on_progress(step / steps, f"step {step}")
        folder = ctx.work_dir(stage)
        for name, data in names.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
        return {"stage": stage}

    return run


def test_outputs_land_under_the_work_prefix_and_progress_only_rises(make_runner, store, s3, bucket, job_id):
    put_capture(s3, bucket, job_id, b"zip bytes")
    files = {"manifest.json": b"{}", "stage.json": b'{"seconds": 0.1}'}
    runner = make_runner({"validate": writes_files("validate", files)}, clock=FakeClock())

    code = runner.run("validate", job_id)

    assert code == ExitCode.OK
    prefix = layout.work_prefix(job_id, "validate")
    assert keys_under(s3, bucket, prefix) == [prefix + "manifest.json", prefix + "stage.json"]
    written = [progress for progress, _, ok in store.progress_writes if ok]
    assert written == sorted(written)
    assert written[0] == stage_named("validate").progress_start
    assert written[-1] == stage_named("validate").progress_end
    job = store.get(job_id, consistent=True)
    assert (job.status, job.stage, job.progress) == (RUNNING, "validate", 10.0)


def test_work_objects_carry_the_area_tag_the_lifecycle_rule_expires(make_runner, s3, bucket, job_id):
    put_capture(s3, bucket, job_id, b"zip bytes")
    runner = make_runner({"validate": writes_files("validate", {"manifest.json": b"{}"})})

    assert runner.run("validate", job_id) == ExitCode.OK
    tags = s3.get_object_tagging(Bucket=bucket, Key=layout.work_key(job_id, "validate", "manifest.json"))
    assert tags["TagSet"] == [{"Key": layout.AREA_TAG_KEY, "Value": "work"}]


def test_the_stage_gets_only_the_prefixes_it_reads(make_runner, s3, bucket, job_id):
    for key in (
        layout.input_key(job_id, "capture.zip"),
        layout.work_key(job_id, "validate", "manifest.json"),
        layout.work_key(job_id, "preprocess", "scene.npz"),
        layout.work_key(job_id, "preprocess", "stage.json"),
    ):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    seen: list[str] = []

    def hull(ctx: StageContext) -> dict:
        seen.extend(
            sorted(p.relative_to(ctx.job_dir).as_posix() for p in ctx.job_dir.rglob("*") if p.is_file())
        )
        return {}

    assert make_runner({"hull": hull}).run("hull", job_id) == ExitCode.OK
    assert [source.stage for source in STAGE_READS["hull"]] == ["preprocess"]
    assert seen == ["work/preprocess/scene.npz", "work/preprocess/stage.json"]


def test_should_stop_reads_the_table_at_most_twice_a_second(make_runner, store, job_id):
    clock = FakeClock()

    def tight_loop(ctx: StageContext) -> dict:
        for _ in range(2000):  # 20 s of fake time, a call every 10 ms
            ctx.check_stop()
            clock.advance(0.01)
        return {}

    assert make_runner({"hull": tight_loop}, clock=clock).run("hull", job_id) == ExitCode.OK
    # One reading per 0.5 s of the loop, plus the fresh one before publishing.
    assert 40 <= store.stop_checks <= 42


def test_a_confirmed_cancel_stops_the_stage_mid_run_and_nothing_is_uploaded(
    make_runner, store, s3, bucket, job_id
):
    confirmed_at: list[float] = []

    def cancel_from_the_api() -> None:
        request = store.request_cancel(job_id, OWNER)
        store.confirm_cancel(job_id, OWNER, request.token)
        confirmed_at.append(time.monotonic())

    def long_stage(ctx: StageContext) -> dict:
        (ctx.work_dir("reconstruct") / "partial.npz").write_bytes(b"half a field")
        canceller = threading.Timer(0.3, cancel_from_the_api)
        canceller.start()
        deadline = time.monotonic() + UNSTOPPED_WORK_S
        while time.monotonic() < deadline:
            ctx.check_stop()
            ctx.on_progress(0.5, "optimising")
            time.sleep(0.01)
        canceller.join()
        return {}

    started = time.monotonic()
    code = make_runner({"reconstruct": long_stage}).run("reconstruct", job_id)
    stopped_at = time.monotonic()

    assert code == ExitCode.STOPPED
    assert confirmed_at, "the cancel was never confirmed"
    assert stopped_at - confirmed_at[0] < STOPPED_MID_RUN_S
    assert stopped_at - started < STOPPED_MID_RUN_S
    assert keys_under(s3, bucket, layout.job_prefix(job_id)) == []
    job = store.get(job_id, consistent=True)
    assert job.status == CANCELLING
    assert job.error is None


@pytest.fixture
def sigint_raises():
    """SIGINT raises KeyboardInterrupt in the main thread for the test, as in a terminal: a process
    started in the background by a non-interactive shell (CI's runner, ``nohup``) inherits SIGINT
    ignored, and Python then installs no handler."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_cancel_during_a_call_that_polls_nothing_ends_the_process_mid_call(
    make_runner, store, s3, bucket, job_id, sigint_raises
):
    """Set-up or a long library call: the engine checks nothing, the stop watcher ends the stage."""
    ended: list[tuple[int, float]] = []
    main = threading.main_thread().ident

    def end_process(code: int) -> None:  # os._exit in the container; here: stop the main thread
        ended.append((code, time.monotonic()))
        threading.Thread(target=lambda: _interrupt(main)).start()

    def busy_in_a_library_call(ctx: StageContext) -> dict:
        (ctx.work_dir("reconstruct") / "partial.npz").write_bytes(b"half a field")
        request = store.request_cancel(job_id, OWNER)
        store.confirm_cancel(job_id, OWNER, request.token)
        confirmed_at.append(time.monotonic())
        time.sleep(UNSTOPPED_WORK_S)  # no should_stop in here
        return {}

    confirmed_at: list[float] = []
    runner = make_runner({"reconstruct": busy_in_a_library_call}, exit_process=end_process)
    with pytest.raises(KeyboardInterrupt):  # what end_process does to the stage's main thread
        runner.run("reconstruct", job_id)

    assert [code for code, _ in ended] == [ExitCode.STOPPED]
    assert ended[0][1] - confirmed_at[0] < STOPPED_MID_RUN_S
    assert keys_under(s3, bucket, layout.job_prefix(job_id)) == []
    assert store.get(job_id, consistent=True).status == CANCELLING


def _interrupt(thread_id: int | None) -> None:
    """SIGINT to this process: the main thread's sleep ends in KeyboardInterrupt at once."""
    assert thread_id == threading.main_thread().ident
    signal.pthread_kill(thread_id, signal.SIGINT)


def test_a_cancel_as_the_stage_ends_keeps_its_results_unpublished(make_runner, store, s3, bucket, job_id):
    def finishes_then_cancel(ctx: StageContext) -> dict:
        (ctx.work_dir("mesh") / "mesh.ply").write_bytes(b"ply")
        request = store.request_cancel(job_id, OWNER)
        store.confirm_cancel(job_id, OWNER, request.token)
        return {}

    code = make_runner({"mesh": finishes_then_cancel}).run("mesh", job_id)

    assert code == ExitCode.STOPPED
    assert keys_under(s3, bucket, layout.job_prefix(job_id)) == []


def test_a_bad_capture_exits_2_with_its_code_on_the_job(make_runner, store, job_id):
    def validate(ctx: StageContext) -> dict:
        raise CaptureError("too_few_views", "transforms.json: 2 frames, at least 8 needed")

    code = make_runner({"validate": validate}).run("validate", job_id)

    assert code == ExitCode.BAD_CAPTURE == 2
    job = store.get(job_id, consistent=True)
    assert job.status == FAILED
    assert job.error == {"code": "too_few_views", "message": "transforms.json: 2 frames, at least 8 needed"}


def test_a_crash_exits_1_with_the_stage_and_error_on_the_job(make_runner, store, s3, bucket, job_id):
    def hull(ctx: StageContext) -> dict:
        (ctx.work_dir("hull") / "hull.npz").write_bytes(b"half")
        raise RuntimeError("CUDA out of memory")

    code = make_runner({"hull": hull}).run("hull", job_id)

    assert code == ExitCode.FAILED == 1
    job = store.get(job_id, consistent=True)
    assert job.status == FAILED
    assert job.error == {"code": "stage_failed", "message": "hull: RuntimeError: CUDA out of memory"}
    assert keys_under(s3, bucket, layout.job_prefix(job_id)) == []


def test_export_publishes_the_outputs_and_the_job_succeeds_with_their_keys(
    make_runner, store, s3, bucket, job_id
):
    def export(ctx: StageContext) -> dict:
        for name in ("model.glb", "model.obj", "report.json"):
            (ctx.output_dir / name).write_bytes(b"out")
        (ctx.work_dir("export") / "stage.json").write_text(json.dumps({"seconds": 0.1}))
        ctx.on_progress(1.0, "done")
        return {}

    code = make_runner({"export": export}).run("export", job_id)

    assert code == ExitCode.OK
    job = store.get(job_id, consistent=True)
    assert (job.status, job.progress) == (SUCCEEDED, 100.0)
    expected = {name: layout.output_key(job_id, name) for name in ("model.glb", "model.obj", "report.json")}
    assert job.result == expected
    assert keys_under(s3, bucket, layout.output_prefix(job_id)) == sorted(expected.values())
    assert keys_under(s3, bucket, layout.work_prefix(job_id, "export")) == [
        layout.work_key(job_id, "export", "stage.json")
    ]


def test_a_job_being_cancelled_at_start_exits_3_without_work(make_runner, store, s3, bucket, job_id):
    put_capture(s3, bucket, job_id, b"zip bytes")
    request = store.request_cancel(job_id, OWNER)
    store.confirm_cancel(job_id, OWNER, request.token)
    called: list[Path] = []

    code = make_runner({"validate": lambda ctx: called.append(ctx.job_dir) or {}}).run("validate", job_id)

    assert code == ExitCode.STOPPED == 3
    assert called == []
    assert store.get(job_id, consistent=True).status == CANCELLING
    assert keys_under(s3, bucket, layout.job_prefix(job_id)) == [layout.input_key(job_id, "capture.zip")]


def test_sigterm_stops_the_stage_like_a_cancel_and_leaves_the_job_running(
    make_runner, store, s3, bucket, job_id
):
    runner = make_runner()

    def interrupted(ctx: StageContext) -> dict:
        (ctx.work_dir("hull") / "hull.npz").write_bytes(b"half")
        runner.terminated = True  # what the SIGTERM handler of the command does
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            ctx.check_stop()
            time.sleep(0.01)
        return {}

    runner.stage_functions = {"hull": interrupted}

    assert runner.run("hull", job_id) == ExitCode.STOPPED
    assert store.get(job_id, consistent=True).status == RUNNING  # Batch may retry the stage
    assert keys_under(s3, bucket, layout.job_prefix(job_id)) == []


def test_a_capture_error_after_a_cancel_leaves_the_job_to_the_cancel(make_runner, store, job_id):
    def validate(ctx: StageContext) -> dict:
        request = store.request_cancel(job_id, OWNER)
        store.confirm_cancel(job_id, OWNER, request.token)
        raise CaptureError("not_a_zip", "input/capture.zip is not a zip archive")

    assert make_runner({"validate": validate}).run("validate", job_id) == ExitCode.STOPPED
    job = store.get(job_id, consistent=True)
    assert (job.status, job.error) == (CANCELLING, None)


# What each stage needs from the ones before it (engine-spec.md, "A job folder mirrors the job's S3 prefix").
CHAIN_NEEDS = {
    "validate": ["input/capture.zip"],
    "preprocess": ["input/capture.zip", "work/validate/manifest.json"],
    "hull": ["work/preprocess/scene.npz"],
    "reconstruct": ["work/preprocess/scene.npz", "work/hull/hull.npz"],
    "mesh": ["work/preprocess/scene.npz", "work/reconstruct/field.npz"],
    "export": ["work/mesh/mesh.ply", "work/preprocess/scene.npz", "work/validate/stage.json"],
}
CHAIN_WRITES = {
    "validate": "manifest.json",
    "preprocess": "scene.npz",
    "hull": "hull.npz",
    "reconstruct": "field.npz",
    "mesh": "mesh.ply",
}


def chain_stage(stage: str, seen: dict[str, list[str]]):
    def run(ctx: StageContext) -> dict:
        seen[stage] = sorted(
            p.relative_to(ctx.job_dir).as_posix() for p in ctx.job_dir.rglob("*") if p.is_file()
        )
        if stage == "export":
            (ctx.output_dir / "model.glb").write_bytes(b"glTF")
        else:
            (ctx.work_dir(stage) / CHAIN_WRITES[stage]).write_bytes(stage.encode())
        (ctx.work_dir(stage) / "stage.json").write_text(json.dumps({"stage": stage}))
        return {}

    return run


def test_run_all_hands_each_stage_what_it_needs_through_s3(make_runner, store, s3, bucket, job_id):
    put_capture(s3, bucket, job_id, b"zip bytes")
    seen: dict[str, list[str]] = {}
    runner = make_runner({stage: chain_stage(stage, seen) for stage in CHAIN_NEEDS})

    assert runner.run_all(job_id) == ExitCode.OK

    for stage, needs in CHAIN_NEEDS.items():
        assert set(needs) <= set(seen[stage]), stage
    assert "input/capture.zip" not in seen["hull"]
    assert not any(name.startswith("work/reconstruct/") for name in seen["hull"])
    job = store.get(job_id, consistent=True)
    assert (job.status, job.result) == (SUCCEEDED, {"model.glb": layout.output_key(job_id, "model.glb")})
    written = [progress for progress, _, ok in store.progress_writes if ok]
    assert written == sorted(written)


def test_run_all_stops_at_the_first_stage_that_does_not_finish(make_runner, store, s3, bucket, job_id):
    ran: list[str] = []

    def hull(ctx: StageContext) -> dict:
        raise CaptureError("empty_hull", "no voxel survives carving")

    stages = {stage: (lambda ctx, stage=stage: ran.append(stage) or {}) for stage in CHAIN_NEEDS}
    stages["hull"] = hull

    assert make_runner(stages).run_all(job_id) == ExitCode.BAD_CAPTURE
    assert ran == ["validate", "preprocess"]
    assert store.get(job_id, consistent=True).error["code"] == "empty_hull"


def test_stages_read_the_capture_version_accepted_at_queued(make_runner, store, s3, bucket, job_id):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    key = put_capture(s3, bucket, job_id, b"the accepted capture")
    accepted = s3.head_object(Bucket=bucket, Key=key)["VersionId"]
    store.set_capture(job_id, key, accepted)
    put_capture(s3, bucket, job_id, b"an overwrite during the run")
    seen: list[bytes] = []

    def reads_the_capture(ctx: StageContext) -> dict:
        seen.append((ctx.job_dir / "input" / "capture.zip").read_bytes())
        return {}

    assert make_runner({"validate": reads_the_capture}).run("validate", job_id) == ExitCode.OK
    assert seen == [b"the accepted capture"]
