"""Following the tasks in flight: queryTask until DONE, and letting go of the rest.

A task let go of stays recorded with its task id, so ``reconciler refresh`` follows it
later; each returns the line the report shows for it. Letting go happens when a task is
still not DONE after the task timeout, when queryTask says a task id is unknown (a normal
answer with a ``resultCode`` other than ``"0"``), when queryTask cannot be had at all (the
client's retries are spent, or the call itself is refused: every task in flight is let go
and the applier sends nothing more), and on a stop request.
"""

from __future__ import annotations

from collections.abc import Callable

from reconciler.apply.pacing import Pacer
from reconciler.apply.tasks import TaskApi
from reconciler.errors import ApiError, FederationError, TransportError
from reconciler.providers.federation.replies import TaskState, TaskStatus
from reconciler.stores.model import PendingBatch
from reconciler.values import frozen

LATER = "it stays recorded, `reconciler refresh` follows it later"


@frozen
class Polled:
    """One round of queryTask over the tasks in flight."""

    done: tuple[tuple[PendingBatch, TaskStatus], ...] = ()
    let_go: tuple[str, ...] = ()  # a line per task no longer followed
    error: ApiError | None = None  # queryTask cannot be had: nothing more is sent


def poll(
    api: TaskApi,
    in_flight: dict[str, PendingBatch],
    pace: Pacer,
    now: Callable[[], float],
    *,
    first_done: bool = False,
) -> Polled:
    """queryTask each task in flight that may be DONE by now (``Pacer.due``) once, oldest
    first; DONE and unqueryable ones leave ``in_flight``. ``first_done``: stop at the first
    DONE one, so that its slot is refilled before the younger tasks are asked about (each
    question is a round trip: asking all ten first held the freed slot for all ten)."""
    done: list[tuple[PendingBatch, TaskStatus]] = []
    let_go: list[str] = []
    for batch_id in pace.due(in_flight, now()):
        batch = in_flight[batch_id]
        assert batch.task_id is not None
        # Still running is known as of the question, DONE as of the answer: the ages the
        # pacer learns from bound a task's time from below and above, the round trip aside.
        asked = now()
        try:
            status = api.query_task(batch.task_id)
        except (TransportError, FederationError) as error:
            if isinstance(error, FederationError) and error.http_status == 200:
                del in_flight[batch_id]  # this task is unknown; the others may not be
                let_go.append(f"task {batch.task_id}: queryTask failed ({error.message}); {LATER}")
                continue
            # Retries spent, or the call refused (credentials, URL): asking about the others
            # would cost as much and end the same way.
            let_go += [
                f"task {left.task_id}: not followed ({error.message}); {LATER}"
                for left in in_flight.values()
            ]
            in_flight.clear()
            return Polled(done=tuple(done), let_go=tuple(let_go), error=error)
        if status.status is not TaskState.DONE:
            pace.running(batch_id, asked)
            continue
        del in_flight[batch_id]
        pace.done(batch_id, now())
        done.append((batch, status))
        if first_done:
            break
    return Polled(done=tuple(done), let_go=tuple(let_go))


def expire(in_flight: dict[str, PendingBatch], pace: Pacer, now: float) -> list[str]:
    """Let go of the tasks followed for the task timeout or longer; a line for each."""
    limit = pace.settings.task_timeout
    expired = [in_flight.pop(batch_id) for batch_id in pace.expired(in_flight, now)]
    return [
        f"task {batch.task_id} still not DONE after {limit:g}s (--task-timeout); {LATER}"
        for batch in expired
    ]


def leave(in_flight: dict[str, PendingBatch]) -> list[str]:
    """On a stop request: every task in flight stays recorded, its result unfollowed."""
    lines = [
        f"task {batch.task_id} ({len(batch.entries)} users) is recorded but not followed to "
        "DONE; `reconciler refresh` (or `apply`) records its result"
        for batch in in_flight.values()
    ]
    in_flight.clear()
    return lines
