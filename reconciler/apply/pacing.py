"""How apply paces itself: when to poll the tasks in flight, how long to back off at the
tenant's task limit, and when to give up on a task (pure: the applier sleeps and asks).

A task of this run is asked about at ages it learns from the tasks before it: first when
it may be DONE (``Pacer.first_ask``: the middle of what the earlier tasks showed, between
the oldest age one was still running at and the youngest one was seen DONE at; never below
``EARLY`` of the latter), then at the youngest age one was seen DONE at, then closely with a
growing delay. Each question is asked once per stage, so a poll asks only about the tasks
whose time has come. Nothing learned yet, the oldest task is asked about with a delay
that grows more slowly (``LEARNING_GROWTH``: what it is first seen DONE at is what the
later tasks are paced by), and every task once it is ``poll_max`` old;
at the task limit with none of our tasks in flight it backs off exponentially. A task
followed longer than ``task_timeout`` is left for ``reconciler refresh``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from reconciler.values import frozen

LIMIT_WAIT_MAX = 30.0  # seconds: the longest back-off at the tenant's task limit
# A task is asked about once it is this share as old as the quickest task seen DONE. Asking
# only at the full age could never learn a shorter time than the one first seen (which
# includes the wait before that poll); asking a little early lets the estimate come down.
EARLY = 0.9
MIN_WAIT = 0.001  # seconds: the shortest wait before a poll
GROWTH = 1.5  # each close poll waits this much longer than the one before
# Before any task of this run was seen DONE, the oldest one is asked about with waits that
# grow by this instead, while it is younger than LEARNING_AGE of ``poll_max`` (0.5 s by
# default): it is seen DONE up to a fifth of its age late, not half, and that age paces
# every later task (the estimate only comes down by a share per wave). A 0.15 s task costs
# two more questions, once per run; a longer one, a few (after that age the waits grow by
# GROWTH again, as they did before).
LEARNING_GROWTH = 1.2
LEARNING_AGE = 0.25


@frozen
class ApplySettings:
    """How apply paces itself."""

    parallel: int = 8  # tasks in flight; the tenant's limit is 10 [ASSUME]
    poll_initial: float = 0.02
    poll_max: float = 2.0
    task_timeout: float = 1800.0  # longest wait for one task to be DONE (then: refresh)
    limit_backoff: float = 0.5  # first wait when the tenant's task limit is reached
    max_resends: int = 20  # extra createTask calls per run to isolate refused entries


@dataclass(slots=True)
class Pacer:
    """The pace of one applier: what it knows of its tasks' timing, and its current waits."""

    settings: ApplySettings
    accepted_at: dict[str, float] = field(default_factory=dict)  # this run's tasks
    since: dict[str, float] = field(default_factory=dict)  # when following began, per batch
    task_seconds: float | None = None  # the quickest task seen DONE (its age then)
    running_seconds: float = 0.0  # the oldest age a task later seen DONE was still running at
    asked: dict[str, float] = field(default_factory=dict)  # the age a task was last asked at
    delay: float = 0.0
    limit_wait: float = 0.0

    def start(self) -> None:
        """A new round of sending and following: waits start small again."""
        self.delay = self.settings.poll_initial
        self.limit_wait = self.settings.limit_backoff

    def follow(self, batch_id: str, now: float, *, accepted: bool = False) -> None:
        """Start following ``batch_id`` (just accepted by createTask, or recorded earlier)."""
        if accepted:
            self.accepted_at[batch_id] = now
            self.since[batch_id] = now
        else:
            self.since.setdefault(batch_id, now)

    def running(self, batch_id: str, now: float) -> None:
        """``batch_id``'s task was asked about at ``now`` and is not DONE yet."""
        accepted_at = self.accepted_at.get(batch_id)
        if accepted_at is not None:
            self.asked[batch_id] = now - accepted_at

    def done(self, batch_id: str, now: float) -> None:
        """``batch_id``'s task was seen DONE: learn how long tasks take, poll closely again."""
        accepted_at = self.accepted_at.pop(batch_id, None)
        still = self.asked.pop(batch_id, None)
        if accepted_at is not None:
            took = now - accepted_at
            self.task_seconds = min(took, self.task_seconds or took)
            if still is not None:
                self.running_seconds = max(self.running_seconds, still)
        self.delay = self.settings.poll_initial

    def first_ask(self) -> float | None:
        """The age at which a task of this run is first asked about (None: nothing learned).

        The middle of what the tasks showed: no task was DONE sooner than the quickest one,
        and one as old as ``running_seconds`` was still running. Asking a little before the
        quickest age lets the estimate come down (asking at the full age could never learn a
        shorter time than the first seen, which includes the wait before that poll); asking
        in the middle halves the gap each time it is answered.
        """
        quickest, running = self.task_seconds, self.running_seconds
        if quickest is None:
            return None
        # A task still running older than another took (times vary): no middle to ask at.
        middle = (running + quickest) / 2 if running < quickest else 0.0
        return max(middle, quickest * EARLY)

    def due(self, batch_ids: Collection[str], now: float) -> list[str]:
        """The batches worth a queryTask now: none of this run's is DONE sooner than the
        quickest task seen so far, so those accepted more recently are left for later; one
        asked about at its first age is asked again at the quickest age, then at every poll."""
        quickest, first = self.task_seconds, self.first_ask()
        accepted, asked = self.accepted_at, self.asked
        if quickest is None or first is None:
            return self._first_due(batch_ids, now)
        due: list[str] = []
        for batch_id in batch_ids:
            at = accepted.get(batch_id)
            if at is None:
                due.append(batch_id)  # followed from an earlier run: always asked
                continue
            age, last = now - at, asked.get(batch_id, -1.0)
            if age >= quickest or (age >= first and last < first):
                due.append(batch_id)
        return due

    def _first_due(self, batch_ids: Collection[str], now: float) -> list[str]:
        """Nothing learned yet: the oldest task of this run (a younger one is not expected
        sooner, and one question a poll lets the polls come close), those followed from an
        earlier run, and any older than ``poll_max`` (a slow oldest task holds none back)."""
        accepted = self.accepted_at
        ours = [b for b in batch_ids if b in accepted]
        oldest = min(ours, key=accepted.__getitem__) if ours else None
        limit = self.settings.poll_max
        return [
            b for b in batch_ids if b == oldest or b not in accepted or now - accepted[b] >= limit
        ]

    def expired(self, batch_ids: Collection[str], now: float) -> list[str]:
        """The batches followed for ``task_timeout`` seconds or more."""
        limit = self.settings.task_timeout
        return [b for b in batch_ids if now - self.since.get(b, now) >= limit]

    def limit_pause(self) -> float:
        """Seconds to back off when the tenant's limit is full of tasks that are not ours."""
        wait = self.limit_wait
        self.limit_wait = min(self.limit_wait * 2, LIMIT_WAIT_MAX)
        return wait

    def poll_pause(self, in_flight: Collection[str], now: float) -> float:
        """Seconds to wait before polling ``in_flight`` again: until a task is next due at
        an age learned, and no longer than the growing delay while tasks are past those
        ages (or nothing is learned yet, or a task is followed from an earlier run)."""
        scheduled, closely = self._next_ask(in_flight, now)
        # Never a wait too short to tell from none: a clock far from zero (a monotonic one,
        # a test's) might not move at all, and the same task would not be due either.
        scheduled = max(scheduled, MIN_WAIT)
        if not closely:
            self.delay = self.settings.poll_initial  # then poll closely: it is due about now
            return scheduled
        wait = self.delay
        growth = LEARNING_GROWTH if self._learning(in_flight, now) else GROWTH
        self.delay = min(self.delay * growth, self.settings.poll_max)
        return min(wait, scheduled)

    def _learning(self, in_flight: Collection[str], now: float) -> bool:
        """Whether the first task of this run to be seen DONE is being waited for, all of
        ours in flight younger than ``LEARNING_AGE`` of ``poll_max``. A longer task is
        seen late by little of its age either way, and past ``poll_max`` every one of ours
        is asked about at each poll (``_first_due``): slower-growing waits there multiplied
        the questions by the tasks in flight (5 s tasks: a third more queryTask calls)."""
        if self.task_seconds is not None:
            return False
        accepted, limit = self.accepted_at, self.settings.poll_max * LEARNING_AGE
        ages = [now - accepted[b] for b in in_flight if b in accepted]
        return bool(ages) and max(ages) < limit

    def _next_ask(self, in_flight: Collection[str], now: float) -> tuple[float, bool]:
        """Seconds until a task in flight is next due at an age learned (at most
        ``poll_max``), and whether some task is asked about at every poll instead."""
        quickest, first = self.task_seconds, self.first_ask()
        if quickest is None or first is None:
            return self.settings.poll_max, True
        soonest, closely = self.settings.poll_max, False
        for batch_id in in_flight:
            at = self.accepted_at.get(batch_id)
            age = 0.0 if at is None else now - at
            if at is None or age >= quickest:
                closely = True
            elif self.asked.get(batch_id, -1.0) < first:
                soonest = min(soonest, max(first - age, 0.0))
            else:
                soonest = min(soonest, quickest - age)
        return soonest, closely
