"""Ctrl-C during a run: the first one stops after the step in progress, a second one at once."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; the message says where the checkpoint is and how to resume."""


class _StopFlag:
    requested = False


@contextmanager
def deferred_interrupt(describe: Callable[[], str]) -> Iterator[_StopFlag]:
    """In the main thread: the first Ctrl-C asks the loop to stop after the step in progress, a second one
    interrupts at once. Elsewhere (or under a custom SIGINT handler) nothing changes."""
    flag = _StopFlag()
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield flag
        return

    def handler(signum: int, frame: Any) -> None:
        if flag.requested:
            raise KeyboardInterrupt
        flag.requested = True
        print(f"stopping after {describe()} (Ctrl-C again to abort now)", file=sys.stderr, flush=True)

    signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
