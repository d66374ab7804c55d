"""Asking a trainer to stop: SIGTERM or a first Ctrl-C set a flag that the training loop reads after every step.

Kept free of heavy imports (no torch), so that the command line installs it before anything slow: a stop asked at
any moment of start-up is kept, and the run ends 'stopped' with a checkpoint instead of being killed half-started.
A launcher closes the last gap, the interpreter's own start, with `sigterm_held`: the child it starts inherits a
blocked SIGTERM, which stays pending until StopFlag has its handler in place and unblocks it.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


class StopFlag:
    """Set by SIGTERM or the first Ctrl-C; the trainer finishes its step, saves and returns."""

    def __init__(self) -> None:
        self.set = False

    def __call__(self) -> bool:
        return self.set

    def __enter__(self) -> StopFlag:
        def handler(signum, frame):
            if self.set and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C does not wait for the save
            self.set = True

        self.previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
        # a SIGTERM held back by the launcher (see sigterm_held) arrives now, at the handler
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self.previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def sigterm_held() -> Iterator[None]:
    """Block SIGTERM in this thread while a trainer is started from it: the child inherits the block across exec."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
