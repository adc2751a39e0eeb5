"""How apply paces itself: when to poll the tasks in flight, how long to back off at the
tenant's task limit, and when to give up on a task (pure: the applier sleeps and asks).

Polling waits until the oldest task in flight is nearly as old as the quickest task seen
DONE (``EARLY``), then polls closely with a growing delay, asking only about the tasks that
old; at the task limit with none of our tasks in flight it backs off exponentially. A task
followed longer than ``task_timeout`` is left for ``reconciler refresh``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

LIMIT_WAIT_MAX = 30.0  # seconds: the longest back-off at the tenant's task limit
# A task is asked about once it is this share as old as the quickest task seen DONE. Asking
# only at the full age could never learn a shorter time than the one first seen (which
# includes the wait before that poll); asking a little early lets the estimate come down.
EARLY = 0.9


@dataclass(frozen=True, slots=True, kw_only=True)
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
    task_seconds: float | None = None  # the quickest task seen DONE
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

    def done(self, batch_id: str, now: float) -> None:
        """``batch_id``'s task was seen DONE: learn how long tasks take, poll closely again."""
        accepted_at = self.accepted_at.pop(batch_id, None)
        if accepted_at is not None:
            took = now - accepted_at
            self.task_seconds = min(took, self.task_seconds or took)
        self.delay = self.settings.poll_initial

    def due(self, batch_ids: Collection[str], now: float) -> list[str]:
        """The batches worth a queryTask now: none of this run's is DONE sooner than the
        quickest task seen so far, so those accepted more recently are left for later."""
        quickest = self.task_seconds
        if quickest is None:
            return list(batch_ids)
        accepted = self.accepted_at
        due_at = quickest * EARLY
        return [b for b in batch_ids if b not in accepted or now - accepted[b] >= due_at]

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
        """Seconds to wait before polling ``in_flight`` again."""
        due = self._until_likely_done(in_flight, now)
        if due > self.delay:
            self.delay = self.settings.poll_initial  # then poll closely: it is due about now
            return due
        wait = self.delay
        self.delay = min(self.delay * 1.5, self.settings.poll_max)
        return wait

    def _until_likely_done(self, in_flight: Collection[str], now: float) -> float:
        """Seconds until the oldest task in flight is as old as the quickest one seen DONE."""
        accepted = [self.accepted_at[b] for b in in_flight if b in self.accepted_at]
        if self.task_seconds is None or not accepted:
            return 0.0
        return min(min(accepted) + self.task_seconds * EARLY - now, self.settings.poll_max)
