"""Progress only grows while the job runs, under concurrent writers too; throttled stage reports."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from jobstate_helpers import FakeClock

from jobstate.ids import new_job_id
from jobstate.jobs import MAX_MESSAGE_LENGTH, JobStore
from jobstate.progress import ThrottledProgress

WRITERS = 6
WRITES_PER_WRITER = 25


def running_job_id(store: JobStore, stage: str = "reconstruct") -> str:
    job = store.create("alice")
    store.mark_queued(job.job_id)
    return store.begin_stage(job.job_id, stage).job_id


def test_report_progress_refuses_going_backwards(store: JobStore) -> None:
    job_id = running_job_id(store)
    assert store.report_progress(job_id, 55.04, "half") is True
    assert store.get(job_id).progress == 55.0
    assert store.report_progress(job_id, 54.9, "back") is False
    assert store.report_progress(job_id, 55.0, "same figure, new message") is True
    job = store.get(job_id)
    assert (job.progress, job.message) == (55.0, "same figure, new message")


def test_report_progress_is_refused_unless_running(store: JobStore) -> None:
    queued = store.create("alice", status="QUEUED")
    assert store.report_progress(queued.job_id, 5, "not yet") is False
    assert store.report_progress(new_job_id(), 5, "no job") is False
    job_id = running_job_id(store)
    store.fail(job_id, "stage_failed", "boom")
    assert store.report_progress(job_id, 90, "too late") is False
    assert store.get(job_id).progress == 40.0


@pytest.mark.usefixtures("atomic_moto_updates")
def test_progress_never_goes_backwards_under_concurrent_writers(store: JobStore) -> None:
    job_id = running_job_id(store)
    seen: list[float] = []
    seen_lock = threading.Lock()

    def writer(index: int) -> list[bool]:
        figures = [round(40 + (i * WRITERS + index) * 0.1, 1) for i in range(WRITES_PER_WRITER)]
        if index % 2:
            figures.reverse()  # half the writers go downwards
        answers = []
        for figure in figures:
            answers.append(store.report_progress(job_id, figure, f"writer {index}"))
            with seen_lock:
                seen.append(store.get(job_id, consistent=True).progress)
        return answers

    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        answers = [answer for result in pool.map(writer, range(WRITERS)) for answer in result]

    highest = round(40 + (WRITES_PER_WRITER * WRITERS - 1) * 0.1, 1)
    assert store.get(job_id, consistent=True).progress == highest
    assert False in answers  # the downward writers were refused, not raised at
    assert max(seen) == highest


class RecordingStore:
    def __init__(self, accept: bool = True) -> None:
        self.writes: list[tuple[str, float, str]] = []
        self.accept = accept

    def report_progress(self, job_id: str, progress: float, message: str) -> bool:
        self.writes.append((job_id, progress, message))
        return self.accept


def test_throttled_progress_writes_first_then_once_per_interval_and_always_last() -> None:
    store, clock = RecordingStore(), FakeClock(now=0.0)
    on_progress = ThrottledProgress(store, "j", "hull", min_interval_s=1.0, clock=clock)
    assert on_progress(0.0, "start") is True
    clock.advance(0.4)
    assert on_progress(0.2, "skipped") is False
    clock.advance(0.4)
    assert on_progress(0.4, "skipped") is False
    clock.advance(0.3)
    assert on_progress(0.5, "due") is True
    clock.advance(0.1)
    assert on_progress(1.0, "done") is True  # the last report always writes
    assert store.writes == [("j", 25.0, "start"), ("j", 32.5, "due"), ("j", 40.0, "done")]
    assert on_progress.writes == 3


def test_throttled_progress_notes_a_refused_write() -> None:
    on_progress = ThrottledProgress(
        RecordingStore(accept=False), "j", "mesh", min_interval_s=1.0, clock=FakeClock()
    )
    assert on_progress(0.0, "start") is False
    assert on_progress.refused is True


def test_throttled_progress_against_the_table_stops_at_a_cancel(store: JobStore) -> None:
    job_id = running_job_id(store, stage="mesh")
    clock = FakeClock(now=0.0)
    on_progress = ThrottledProgress(store, job_id, "mesh", min_interval_s=1.0, clock=clock)
    on_progress(0.0, "meshing")
    clock.advance(2)
    on_progress(0.5, "decimating")
    assert store.get(job_id).progress == 85.0
    request = store.request_cancel(job_id, "alice")
    store.confirm_cancel(job_id, "alice", request.token)
    clock.advance(2)
    assert on_progress(0.9, "colouring") is False
    assert on_progress.refused is True
    assert store.get(job_id).progress == 85.0


def test_throttled_progress_refuses_an_unknown_stage() -> None:
    with pytest.raises(KeyError):
        ThrottledProgress(RecordingStore(), "j", "render", min_interval_s=1.0)


def test_a_long_progress_message_is_cut_not_refused(store: JobStore) -> None:
    job_id = running_job_id(store)
    assert store.report_progress(job_id, 41, "x" * 5000) is True
    assert store.get(job_id).message == "x" * MAX_MESSAGE_LENGTH
