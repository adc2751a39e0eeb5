"""Progress of a long apply: a live bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from reconciler.apply.report import Counters

_WIDTH = 28


class LineProgress:
    """One line per notable step (CI logs); at most one counter line per ``min_interval``.

    The first counter line always prints: the interval is measured from the last line
    printed, never from the clock's origin (``time.monotonic`` counts from boot, so a
    machine booted a minute ago would otherwise swallow it).
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        min_interval: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.min_interval = min_interval
        self._monotonic = monotonic
        self._last: float | None = None  # when the last counter line printed; None: never
        self._last_text = ""

    def update(self, counters: Counters, message: str | None = None) -> None:
        """Print ``message`` and, rate-limited, the counters."""
        if message:
            self.stream.write(f"  {message}\n")
        text = describe(counters)
        now = self._monotonic()
        due = self._last is None or now - self._last >= self.min_interval
        if text != self._last_text and (due or _finished(counters)):
            self.stream.write(f"  {text}\n")
            self._last, self._last_text = now, text
        self.stream.flush()


class BarProgress:
    """A bar redrawn in place with carriage returns."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def update(self, counters: Counters, message: str | None = None) -> None:
        """Redraw the bar (messages go above it)."""
        if message:
            self.stream.write(f"\r\x1b[K  {message}\n")
        total = max(counters.users_total, 1)
        done = counters.users_applied + counters.users_failed
        filled = int(_WIDTH * done / total)
        bar = "█" * filled + "░" * (_WIDTH - filled)
        self.stream.write(f"\r\x1b[K  [{bar}] {describe(counters)}")
        if _finished(counters):
            self.stream.write("\n")
        self.stream.flush()


def _finished(counters: Counters) -> bool:
    return counters.users_total > 0 and (
        counters.users_applied + counters.users_failed >= counters.users_total
    )


def describe(counters: Counters) -> str:
    """``batches 3/10 sent, tasks 2 done, users 200/1000 applied, 0 failed``."""
    return (
        f"batches {counters.batches_sent}/{counters.batches_total} sent, "
        f"tasks {counters.tasks_done} done, users {counters.users_applied}/"
        f"{counters.users_total} applied, {counters.users_failed} failed"
    )
