"""apply and refresh keep the cyclic GC away from what they load, and restore it afterwards.

``pacing.due``: a poll asks only about the tasks that may be DONE by now.
"""

from __future__ import annotations

import gc

import pytest

from reconciler.apply.pacing import ApplySettings, Pacer
from reconciler.cli import memory


def test_the_gc_is_off_while_loading_then_freezes_what_survives() -> None:
    """Off until settle(); then what is loaded, and every full collection's survivors, frozen."""
    before = (gc.isenabled(), gc.get_threshold(), gc.get_freeze_count(), list(gc.callbacks))
    with memory.long_run() as settle:
        assert not gc.isenabled()
        loaded = [{"account": str(i)} for i in range(1000)]
        settle()
        assert gc.isenabled()
        frozen = gc.get_freeze_count()
        assert frozen >= len(loaded)
        later = [[i] for i in range(1000)]  # what the run builds and keeps
        gc.collect()
        assert gc.get_freeze_count() >= frozen + len(later)
    assert (gc.isenabled(), gc.get_threshold(), gc.get_freeze_count(), gc.callbacks) == before


def test_the_gc_is_restored_when_the_command_fails() -> None:
    """An error (or a signal) leaves the collector as it found it."""
    before = (gc.isenabled(), gc.get_threshold(), gc.get_freeze_count(), list(gc.callbacks))

    def fail_after_loading() -> None:
        with memory.long_run() as settle:
            settle()
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fail_after_loading()
    assert (gc.isenabled(), gc.get_threshold(), gc.get_freeze_count(), gc.callbacks) == before


def test_a_poll_asks_about_every_task_until_one_was_seen_done() -> None:
    """Nothing learned yet: every task in flight may be DONE."""
    pace = Pacer(ApplySettings())
    for batch_id, at in (("a", 0.0), ("b", 0.5)):
        pace.follow(batch_id, at, accepted=True)
    assert pace.due(["a", "b"], 0.6) == ["a", "b"]


def test_a_poll_skips_tasks_younger_than_the_quickest_done() -> None:
    """A task accepted more recently than the quickest task took is not asked about yet."""
    pace = Pacer(ApplySettings())
    pace.follow("first", 0.0, accepted=True)
    pace.done("first", 2.0)  # tasks take at least 2 s
    pace.follow("old", 1.0, accepted=True)
    pace.follow("new", 2.5, accepted=True)
    pace.follow("earlier-run", 2.9)  # followed from a recorded task id: always asked
    assert pace.due(["old", "new", "earlier-run"], 3.0) == ["old", "earlier-run"]
    assert pace.due(["old", "new", "earlier-run"], 4.5) == ["old", "new", "earlier-run"]


def test_the_task_time_estimate_comes_down_when_tasks_are_quicker_than_first_seen() -> None:
    """The first task seen DONE at 2 s (the poll came late): tasks are asked about a little
    before that age, so one seen DONE earlier lowers the estimate, and the next polls
    come earlier still. Asking only at the full age could never learn a shorter time."""
    pace = Pacer(ApplySettings())
    pace.follow("first", 0.0, accepted=True)
    pace.done("first", 2.0)
    pace.follow("second", 10.0, accepted=True)
    assert pace.due(["second"], 11.7) == []
    assert pace.due(["second"], 11.8) == ["second"]  # 90% of the 2 s seen
    pace.done("second", 11.8)
    pace.follow("third", 20.0, accepted=True)
    assert pace.due(["third"], 21.62) == ["third"]  # 90% of the 1.8 s seen since
    assert pace.poll_pause(["third"], 20.0) == pytest.approx(1.62)
