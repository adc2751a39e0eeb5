"""apply and refresh keep the cyclic GC away from what they load, and restore it afterwards.

``pacing.due``: a poll asks only about the tasks that may be DONE by now.
"""

from __future__ import annotations

import gc

import pytest

from reconciler.apply import following
from reconciler.apply.pacing import GROWTH, LEARNING_GROWTH, ApplySettings, Pacer
from reconciler.cli import exiting, memory
from reconciler.providers.federation.replies import CallCounts, TaskState, TaskStatus
from reconciler.stores.model import PendingBatch


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


def test_a_poll_asks_about_the_oldest_task_until_one_was_seen_done() -> None:
    """Nothing learned yet: the oldest task of this run is asked about (a younger one is not
    expected sooner), a task followed from an earlier run always, and every task once it is
    poll_max old (a slow oldest task holds none back for longer)."""
    pace = Pacer(ApplySettings(poll_max=2.0))
    for batch_id, at in (("b", 0.5), ("a", 0.0), ("c", 0.55)):
        pace.follow(batch_id, at, accepted=True)
    pace.follow("earlier-run", 0.1)
    assert pace.due(["b", "a", "c", "earlier-run"], 0.6) == ["a", "earlier-run"]
    assert pace.due(["b", "c", "earlier-run"], 0.6) == ["b", "earlier-run"]
    assert pace.due(["b", "a", "c"], 2.52) == ["b", "a"]
    assert pace.due(["b", "a", "c"], 2.6) == ["b", "a", "c"]


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


def test_a_task_is_asked_about_once_per_stage_of_what_earlier_tasks_showed() -> None:
    """The first task was still running at 1.9 s and DONE by 2 s: the next is asked about
    at 1.95 s (the middle), then at 2 s (the quickest seen DONE), then at every poll with a
    growing delay; between two stages a poll leaves it alone and sleeps to the next one."""
    pace = Pacer(ApplySettings(poll_initial=0.02))
    pace.start()
    pace.follow("first", 0.0, accepted=True)
    pace.running("first", 1.9)
    pace.done("first", 2.0)
    assert pace.first_ask() == pytest.approx(1.95)
    pace.follow("second", 10.0, accepted=True)
    assert pace.due(["second"], 11.9) == []
    assert pace.poll_pause(["second"], 11.9) == pytest.approx(0.05)
    assert pace.due(["second"], 11.96) == ["second"]
    pace.running("second", 11.96)
    assert pace.due(["second"], 11.97) == []
    assert pace.poll_pause(["second"], 11.97) == pytest.approx(0.03)
    assert pace.due(["second"], 12.0) == ["second"]
    pace.running("second", 12.0)
    assert pace.due(["second"], 12.01) == ["second"]
    assert pace.poll_pause(["second"], 12.01) == pytest.approx(0.02)
    assert pace.poll_pause(["second"], 12.03) == pytest.approx(0.03)


def test_the_middle_is_never_below_ninety_percent_of_the_quickest() -> None:
    """Tasks seen running only young (here at 0.1 s) do not make the first question early."""
    pace = Pacer(ApplySettings())
    pace.follow("first", 0.0, accepted=True)
    pace.running("first", 0.1)
    pace.done("first", 2.0)
    assert pace.first_ask() == pytest.approx(1.8)


def test_a_slow_task_does_not_put_the_first_question_past_the_quickest_age() -> None:
    """Times vary: one task still running at 50 s, another DONE in 10 s. The first question
    stays at 90% of the quickest (there is no middle), and the wait never passes it."""
    pace = Pacer(ApplySettings(poll_max=60.0))
    pace.follow("slow", 0.0, accepted=True)
    pace.follow("quick", 0.0, accepted=True)
    pace.done("quick", 10.0)
    pace.running("slow", 50.0)
    pace.done("slow", 60.0)
    assert pace.first_ask() == pytest.approx(9.0)
    pace.follow("next", 100.0, accepted=True)
    assert pace.poll_pause(["next"], 100.0) == pytest.approx(9.0)


def test_until_a_task_of_this_run_is_seen_done_the_waits_grow_more_slowly() -> None:
    """The age the first task is seen DONE at paces every later one: before it is known the
    waits grow by LEARNING_GROWTH (it is seen at most a quarter of its age late), after it
    (and for tasks followed from an earlier run alone, which teach nothing) by GROWTH."""
    assert 1 < LEARNING_GROWTH < GROWTH
    pace = Pacer(ApplySettings(poll_initial=0.02, poll_max=2.0))
    pace.start()
    pace.follow("ours", 0.0, accepted=True)
    waits = [pace.poll_pause(["ours"], 0.1) for _ in range(3)]
    assert waits == pytest.approx([0.02, 0.02 * LEARNING_GROWTH, 0.02 * LEARNING_GROWTH**2])
    pace.start()
    pace.follow("earlier-run", 0.0)
    waits = [pace.poll_pause(["earlier-run"], 0.1) for _ in range(3)]
    assert waits == pytest.approx([0.02, 0.02 * GROWTH, 0.02 * GROWTH**2])
    pace.done("ours", 0.15)
    pace.running("late", 0.0)  # not ours: nothing to learn
    pace.follow("slow", 0.0, accepted=True)
    pace.start()
    waits = [pace.poll_pause(["slow"], 1.0) for _ in range(2)]  # past the quickest age
    assert waits == pytest.approx([0.02, 0.02 * GROWTH])


def test_a_longer_first_task_is_waited_for_as_before() -> None:
    """Long tasks: once ours in flight are LEARNING_AGE of ``poll_max`` old, the waits grow by
    GROWTH again (slower growth for long tasks multiplied the questions by the tasks in
    flight, each asked about at every poll past ``poll_max``: a third more queryTask calls
    for 5 s tasks)."""
    pace = Pacer(ApplySettings(poll_initial=0.02, poll_max=2.0))
    pace.start()
    pace.follow("a", 0.0, accepted=True)
    pace.follow("b", 0.1, accepted=True)
    young = [pace.poll_pause(["a", "b"], 0.4) for _ in range(2)]
    assert young == pytest.approx([0.02, 0.02 * LEARNING_GROWTH])
    pace.start()
    old = [pace.poll_pause(["a", "b"], 0.6) for _ in range(3)]
    assert old == pytest.approx([0.02, 0.02 * GROWTH, 0.02 * GROWTH**2])


class _SlowQueries:
    """A queryTask that takes ``seconds`` on ``clock`` and answers ``states`` in turn."""

    def __init__(self, clock: list[float], seconds: float, states: list[TaskState]) -> None:
        self.clock, self.seconds, self.states = clock, seconds, states

    def authenticate(self) -> None:
        """Nothing to do."""

    def create_task(self, entries: object) -> str:
        """Not used here."""
        raise AssertionError("no createTask in a poll")

    def query_task(self, task_id: str) -> TaskStatus:
        """The next state, answered ``seconds`` after the question."""
        self.clock[0] += self.seconds
        return TaskStatus(task_id=task_id, status=self.states.pop(0), remark="")

    def reached(self) -> CallCounts:
        """Not counted here."""
        return CallCounts()


def test_a_task_is_learned_running_as_of_the_question_and_done_as_of_the_answer() -> None:
    """A question answered 0.5 s after it was asked: still running holds for the age it was
    asked at, DONE for the age the answer came at, so the pacer's ages bound the task's
    time from both sides (the first question after is in their middle)."""
    clock = [0.0]
    pace = Pacer(ApplySettings())
    pace.start()
    pace.follow("b", 0.0, accepted=True)
    in_flight = {"b": PendingBatch(batch_id="b", task_id="7", entries=())}
    api = _SlowQueries(clock, 0.5, [TaskState.DOING, TaskState.DONE])
    clock[0] = 1.0
    assert not following.poll(api, in_flight, pace, lambda: clock[0]).done
    assert pace.asked["b"] == pytest.approx(1.0)  # asked at 1.0, answered at 1.5
    clock[0] = 2.0
    assert following.poll(api, in_flight, pace, lambda: clock[0]).done
    assert (pace.running_seconds, pace.task_seconds) == pytest.approx((1.0, 2.5))
    assert pace.first_ask() == pytest.approx(0.9 * 2.5)  # the middle, 1.75, is below 90%


def test_a_console_run_leaves_the_collector_off_when_the_command_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The process ends once the command returns: thresholds and generations are restored,
    but no collection runs between the report and the exit."""
    monkeypatch.setattr(exiting, "_kept", [])
    before = (gc.get_threshold(), gc.get_freeze_count(), list(gc.callbacks))
    was_enabled = gc.isenabled()
    gc.enable()  # as a console run of apply has it
    try:
        with memory.long_run() as settle:
            settle()
        assert not gc.isenabled()
        assert (gc.get_threshold(), gc.get_freeze_count(), gc.callbacks) == before
    finally:
        if was_enabled:
            gc.enable()
