"""Apply stops before it sends or writes once its state lock is no longer its own.

The repro of the issue: an apply's lock was force-unlocked while it ran, and it went on
sending createTask and writing the state beside the next runner. Here the lock is taken
away during the first createTask of a round; the applier must not send the second one,
nor write anything after it; nor does it ask CloudIdentity for a provisioning retry.
Run over both backends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import pytest

from reconciler.apply import provisioning
from reconciler.apply.engine import Applier, ApplyReport, ApplySettings
from reconciler.errors import StateLockLost
from reconciler.plan import planner
from reconciler.plan.model import Decision, EventDecision
from reconciler.providers.federation.replies import CallCounts, TaskState, TaskStatus
from tests.support.builders import desired, user
from tests.support.stores import Backend, FakeClock


class _UnlockedDuringCreate:
    """createTask that, during its first call, has another runner force-unlock our lock."""

    def __init__(self, take_the_lock: Callable[[], None]) -> None:
        self.take_the_lock = take_the_lock
        self.created = 0

    def create_task(self, entries: Sequence[Mapping[str, object]]) -> str:
        """Accept the batch; the first time, lose the caller's lock meanwhile."""
        self.created += 1
        if self.created == 1:
            self.take_the_lock()
        return f"task-{self.created}"

    def query_task(self, task_id: str) -> TaskStatus:
        """Every task is DONE at once."""
        return TaskStatus(task_id=task_id, status=TaskState.DONE, remark="")

    def authenticate(self) -> None:
        """The token is always fine."""

    def reached(self) -> CallCounts:
        """Every createTask reached the API."""
        return CallCounts(create_task=self.created)


def test_an_apply_that_lost_its_lock_sends_and_writes_nothing_more(backend: Backend) -> None:
    """Three batches in one round: the lock goes during the first createTask; no second one."""
    made = planner.plan(desired(*(user(f"user{i:03d}", "agent") for i in range(250))), None)
    assert len(made.batches) == 3
    clock = FakeClock()
    with backend.store.lock("apply") as lock:
        api = _UnlockedDuringCreate(lambda: backend.reopen().force_unlock(lock.lock_id))
        applier = Applier(
            backend.store,
            api,
            settings=ApplySettings(parallel=8),
            sleep=clock.sleep,
            monotonic=clock.monotonic,
        )
        with pytest.raises(StateLockLost):
            applier.run(made)
    assert api.created == 1
    stored = backend.reopen().read()
    assert stored is not None
    # Only the intents written before sending: no task id, no result recorded afterwards.
    assert stored.serial == 1
    assert [batch.task_id for batch in stored.pending] == [None, None, None]
    assert stored.accounts == {}


class _Retrier:
    """A CloudIdentity client that records the retries it is asked for."""

    def __init__(self) -> None:
        self.retried: list[str] = []

    def retry_provisioning_event(self, event_id: str) -> None:
        """Record the call."""
        self.retried.append(event_id)


def test_a_run_that_lost_its_lock_asks_for_no_provisioning_retry(backend: Backend) -> None:
    """After the lock is gone, the next event retry is not sent."""
    decision = EventDecision(
        event_id="upe-1",
        account="alice",
        target="prod-account",
        reason="member account quota exceeded",
        created_at="2025-03-10T10:00:00Z",
        updated_at="2025-03-10T10:00:00Z",
        attempts=0,
        decision=Decision.RETRY,
        why="managed and enabled",
    )
    client = _Retrier()
    with backend.store.lock("apply") as lock:
        applier = Applier(backend.store, _UnlockedDuringCreate(lambda: None))
        backend.reopen().force_unlock(lock.lock_id)
        with pytest.raises(StateLockLost):
            provisioning._retry(client, decision, applier, ApplyReport())
    assert client.retried == []
