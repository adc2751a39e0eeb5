"""Progress output of a long apply: a bar redrawn in place on a terminal, lines otherwise."""

from __future__ import annotations

import io

import pytest

from reconciler.apply.engine import Counters
from reconciler.apply.progress import BarProgress, LineProgress, describe


def test_describe_names_every_counter() -> None:
    """The counter text says batches sent, tasks done, users applied and failed."""
    counters = Counters(
        batches_total=10,
        batches_sent=3,
        tasks_done=2,
        users_total=1000,
        users_applied=200,
        users_failed=1,
    )
    assert describe(counters) == (
        "batches 3/10 sent, tasks 2 done, users 200/1000 applied, 1 failed"
    )


def test_bar_redraws_in_place_and_ends_with_a_newline() -> None:
    """The bar uses carriage returns while running and a final newline when complete."""
    stream = io.StringIO()
    bar = BarProgress(stream)
    counters = Counters(batches_total=2, users_total=200)
    bar.update(counters)
    counters.users_applied = 100
    bar.update(counters, "task 1 done")
    counters.users_applied = 200
    bar.update(counters)
    text = stream.getvalue()
    assert text.count("\r") >= 3
    assert "  task 1 done\n" in text
    assert "[" + "█" * 14 + "░" * 14 + "]" in text  # half-way
    assert "[" + "█" * 28 + "]" in text
    assert text.endswith("\n")


class _Clock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        """The current reading."""
        return self.now


# 0.0: a machine booted a moment ago (time.monotonic counts from boot); 1e9: one up for years.
@pytest.mark.parametrize("start", [0.0, 0.5, 1e9])
def test_lines_are_rate_limited_but_messages_and_the_end_always_print(start: float) -> None:
    """The first counter line always; then at most one per interval; messages and the end always."""
    stream = io.StringIO()
    clock = _Clock(start)
    lines = LineProgress(stream, min_interval=10, monotonic=clock)
    counters = Counters(batches_total=2, users_total=100)
    lines.update(counters)  # the first line, however young the clock
    counters.users_applied = 25
    clock.now += 9.5
    lines.update(counters)  # within the interval: no counter line
    lines.update(counters, "createTask response lost")
    counters.users_applied = 50
    clock.now += 0.5  # exact in binary: no rounding at 1e9
    lines.update(counters)  # the interval has passed
    counters.users_applied = 100
    lines.update(counters)  # finished: printed despite the interval
    lines.update(counters)  # the same text again: not repeated
    printed = stream.getvalue().splitlines()
    assert printed == [
        "  batches 0/2 sent, tasks 0 done, users 0/100 applied, 0 failed",
        "  createTask response lost",
        "  batches 0/2 sent, tasks 0 done, users 50/100 applied, 0 failed",
        "  batches 0/2 sent, tasks 0 done, users 100/100 applied, 0 failed",
    ]
    assert "\r" not in stream.getvalue()
