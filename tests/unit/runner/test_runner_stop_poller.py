"""The throttled should_stop(): few table reads, a latched stop, tolerance of a blip."""

from __future__ import annotations

import itertools

import pytest

from gpu_container.stop_poller import StopPoller

from .conftest import FakeClock


def test_answers_from_the_last_reading_within_the_interval() -> None:
    clock = FakeClock()
    calls = []
    poller = StopPoller(lambda: calls.append(clock.now) or False, min_interval_s=0.5, clock=clock)

    for _ in range(1000):  # 10 s of a tight loop, one call per 10 ms
        assert poller() is False
        clock.advance(0.01)

    assert len(calls) == 20
    assert all(later - earlier >= 0.5 - 1e-9 for earlier, later in itertools.pairwise(calls))


def test_a_stop_once_seen_stays() -> None:
    clock = FakeClock()
    answers = iter([True, False, False])
    poller = StopPoller(lambda: next(answers), min_interval_s=0.5, clock=clock)

    assert poller() is True
    clock.advance(5)
    assert poller() is True
    assert poller.poll_now() is True
    assert poller.polls == 1


def test_poll_now_ignores_the_interval() -> None:
    clock = FakeClock()
    answers = iter([False, True])
    poller = StopPoller(lambda: next(answers), min_interval_s=0.5, clock=clock)

    assert poller() is False
    assert poller() is False  # cached
    assert poller.poll_now() is True


def test_request_stop_needs_no_reading() -> None:
    poller = StopPoller(lambda: pytest.fail("no reading expected"), min_interval_s=0.5, clock=FakeClock())

    poller.request_stop()

    assert poller() is True


def test_a_failing_check_keeps_the_last_answer_until_too_many_in_a_row() -> None:
    clock = FakeClock()

    def broken() -> bool:
        raise ConnectionError("table unreachable")

    poller = StopPoller(broken, min_interval_s=0.5, max_consecutive_errors=3, clock=clock)

    assert poller() is False
    clock.advance(1)
    assert poller() is False
    clock.advance(1)
    with pytest.raises(ConnectionError):
        poller()
