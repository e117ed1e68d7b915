"""`kill PID` (SIGTERM) or a closed terminal (SIGHUP) stops the local stack as Ctrl-C does: a
KeyboardInterrupt in the main thread, so ``stop()`` runs and kills the stage processes."""

from __future__ import annotations

import os
import signal

import pytest

from reconflow.local.stack import STOP_SIGNALS, LocalStack


@pytest.mark.parametrize("number", STOP_SIGNALS, ids=lambda n: signal.Signals(n).name)
def test_a_stop_signal_interrupts_like_ctrl_c_and_the_handler_is_put_back(number: int) -> None:
    before = signal.getsignal(number)
    stack = LocalStack()
    stack._stop_on_signals()
    try:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), number)
    finally:
        stack._restore_signals()
    assert signal.getsignal(number) is before
