"""Helpers of the core's tests: a clock the test moves by hand."""

from __future__ import annotations

START = 1_795_000_000.0  # an arbitrary fixed "now" (2026-11-18T11:06:40Z) for the fake clock


class FakeClock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
