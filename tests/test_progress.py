"""Progress output of a long apply: a bar redrawn in place on a terminal, lines otherwise."""

from __future__ import annotations

import io

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


def test_lines_are_rate_limited_but_messages_and_the_end_always_print() -> None:
    """Counter lines at most once per interval; messages and the final line always."""
    stream = io.StringIO()
    lines = LineProgress(stream, min_interval=3600)
    counters = Counters(batches_total=1, users_total=100)
    lines.update(counters)
    counters.users_applied = 50
    lines.update(counters)  # within the interval: no counter line
    lines.update(counters, "createTask response lost")
    counters.users_applied = 100
    lines.update(counters)  # finished: printed despite the interval
    printed = stream.getvalue().splitlines()
    assert printed == [
        "  batches 0/1 sent, tasks 0 done, users 0/100 applied, 0 failed",
        "  createTask response lost",
        "  batches 0/1 sent, tasks 0 done, users 100/100 applied, 0 failed",
    ]
    assert "\r" not in stream.getvalue()
