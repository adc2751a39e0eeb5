"""SIGINT and SIGTERM during apply and refresh: stop at the next step, never mid-record.

Once the applier has started (it asks the flag before its first send), the first signal
only sets the flag: the applier sends nothing more, writes what it knows (task ids already
returned) and returns, and the command exits 128 + the signal's number saying what settles
the rest. A second signal aborts at once (:class:`Aborted`): the recorded intents make
that as safe as ``kill -9``. Before the applier has started (planning, the confirmation
prompt) nothing can be half-done, so the first signal aborts at once. Handlers are
installed only while a command holds the state, and only from the main thread (where
Python runs them).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from types import FrameType

# `signal` is imported where a signal is named or caught, not here: every command loads
# this module (main catches Aborted), and importing `signal` creates its enums (~3M
# instructions of every start-up, `--help` included). Ctrl-C needs no import: the
# interpreter installs its SIGINT handler itself.
NAP = 0.05  # how often a sleeping applier looks at the flag


class Aborted(BaseException):
    """Leave now. A BaseException, so nothing on the way can swallow it."""

    def __init__(self, signal_number: int, *, started: bool) -> None:
        import signal  # noqa: PLC0415 - see the imports

        name = signal.Signals(signal_number).name
        super().__init__(name)
        self.signal_number = signal_number
        self.started = started  # False: before the applier sent anything
        self.message = (
            f"aborted by a second {name}; what was recorded stays recorded"
            if started
            else f"interrupted by {name} before anything was sent"
        )


class StopRequest:
    """The flag the first signal sets, read by the applier as ``stop()``."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep) -> None:
        self.signal_number: int | None = None
        self.started = False  # the applier asked: from now on a signal only sets the flag
        self._sleep = sleep

    def __call__(self) -> str | None:
        """The name of the signal that asked to stop (``"SIGTERM"``), or None."""
        self.started = True
        if self.signal_number is None:
            return None
        import signal  # noqa: PLC0415 - see the imports

        return signal.Signals(self.signal_number).name

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, but wake within a moment of a stop request."""
        deadline = time.monotonic() + seconds
        while self.signal_number is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._sleep(min(NAP, left))


def _say(text: str) -> None:
    # Straight to the file descriptor: a handler may run while sys.stderr is mid-write.
    with contextlib.suppress(OSError):
        os.write(2, text.encode())


@contextlib.contextmanager
def caught() -> Iterator[StopRequest]:
    """Catch SIGINT and SIGTERM for the block: the first stops, a second aborts."""
    import signal  # noqa: PLC0415 - see the imports
    import threading  # noqa: PLC0415 - apply and refresh only: every command loads this module

    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request  # signal handlers can only be set from the main thread
        return

    def handle(number: int, frame: FrameType | None) -> None:
        if request.signal_number is not None or not request.started:
            raise Aborted(number, started=request.started)
        request.signal_number = number
        _say(
            f"\n{signal.Signals(number).name}: finishing the step in progress and recording "
            "what is in flight; send it again to abort at once\n"
        )

    previous = {number: signal.signal(number, handle) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
