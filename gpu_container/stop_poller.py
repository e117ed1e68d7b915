"""A throttled ``should_stop()`` for the engine: asks the job table at most once per interval.

Stages call ``should_stop()`` from tight loops (every iteration of an optimiser, say); each call
answered from DynamoDB would cost a strongly consistent read. The poller answers from its last
reading until the interval has passed. Once it has seen a stop it stays stopped. A signal from the
container runtime (SIGTERM when Batch terminates the job or reclaims a Spot host) counts as a
stop too, through ``request_stop``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)


class StopPoller:
    """Callable ``() -> bool``; ``check`` is the expensive question (e.g. ``JobStore.should_stop``).

    A failing ``check`` keeps the previous answer (a blip of the table must not kill an hour of
    reconstruction); after ``max_consecutive_errors`` failures in a row the error is raised.
    """

    def __init__(
        self,
        check: Callable[[], bool],
        *,
        min_interval_s: float,
        max_consecutive_errors: int = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._check = check
        self._min_interval_s = min_interval_s
        self._max_consecutive_errors = max_consecutive_errors
        self._clock = clock
        self._lock = threading.Lock()
        self._stopped = False
        self._last_poll: float | None = None
        self._errors = 0
        self.polls = 0  # how many times ``check`` was asked (for logs and tests)

    def __call__(self) -> bool:
        with self._lock:
            if self._stopped:
                return True
            now = self._clock()
            if self._last_poll is not None and now - self._last_poll < self._min_interval_s:
                return False
            return self._poll(now)

    def poll_now(self) -> bool:
        """Ask ``check`` now, whatever the interval (before results are published, say)."""
        with self._lock:
            return self._stopped or self._poll(self._clock())

    def request_stop(self) -> None:
        """Stop without asking: a signal arrived. Safe to call from a signal handler."""
        self._stopped = True

    @property
    def stopped(self) -> bool:
        return self._stopped

    def _poll(self, now: float) -> bool:
        self._last_poll = now
        self.polls += 1
        try:
            answer = bool(self._check())
        except Exception:
            self._errors += 1
            if self._errors >= self._max_consecutive_errors:
                raise
            logger.warning("stop check failed; keeping the last answer", exc_info=True)
            return self._stopped
        self._errors = 0
        self._stopped = self._stopped or answer
        return self._stopped


class StopWatcher:
    """A thread that asks ``poller`` every ``interval_s`` and calls ``on_stop`` once it says stop.

    The engine's own ``should_stop`` checks give a graceful stop between two iterations; this one
    ends the stage whatever the engine is doing (setting up for seconds, inside a long library
    call), so a confirmed cancel stops the work within a second from the stage's first second.
    """

    def __init__(self, poller: StopPoller, on_stop: Callable[[], None], *, interval_s: float) -> None:
        self._poller = poller
        self._on_stop = on_stop
        self._interval_s = interval_s
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="stop-watcher", daemon=True)

    def __enter__(self) -> StopWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=self._interval_s + 5)

    def _watch(self) -> None:
        while not self._done.wait(self._interval_s):
            try:
                stopped = self._poller.poll_now()
            except Exception:  # too many failed checks in a row: the engine's next check raises it
                logger.warning("stop watcher: check failed", exc_info=True)
                continue
            if stopped and not self._done.is_set():
                self._on_stop()
                return
