"""createTask and queryTask as apply sees them: what a send can come to, a round of
sends, and the failures a DONE task reports (pure; the applier makes the calls).

A send ends in exactly one of: ``Sent`` (a task id), or ``NotSent`` LOST (the request
may have reached the API: its intent stays and a probe settles it), LIMIT (the tenant's
pending-task limit: sent again later) or REFUSED (no task was created: the entries
failed and the intent is dropped).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias, assert_never

from reconciler.apply.ledger import Failure
from reconciler.providers.federation.replies import TaskStatus
from reconciler.stores.model import PendingBatch

PENDING_LIMIT_CODE = "100-113"


class TaskApi(Protocol):
    """The two federation calls apply needs."""

    def create_task(self, entries: Sequence[Mapping[str, object]]) -> str:
        """Start a task; returns its id."""
        ...

    def query_task(self, task_id: str) -> TaskStatus:
        """A task's status."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Sent:
    """createTask accepted the batch as task ``task_id``."""

    task_id: str


class NotSent(enum.Enum):
    """Why a createTask call gave no task id."""

    LOST = "lost"  # the response was lost after the request may have reached the API
    LIMIT = "limit"  # the tenant's pending-task limit is reached (100-113)
    REFUSED = "refused"  # no task was created; the applier reported the entries as failed


SendOutcome: TypeAlias = Sent | NotSent


@dataclass(frozen=True, slots=True, kw_only=True)
class Round:
    """What one round of createTask calls came to, for the batches it took off the queue."""

    sent: tuple[tuple[PendingBatch, str], ...] = ()  # each sent batch with its task id
    forget: tuple[str, ...] = ()  # batch ids whose intents go: refused, or put back
    unsent: tuple[PendingBatch, ...] = ()  # back to the front of the queue, in order
    lost: PendingBatch | None = None  # its intent stays: sending stops, a probe settles it
    limited: bool = False  # the tenant's task limit ended the round


def send_round(
    batches: Sequence[PendingBatch], send: Callable[[PendingBatch], SendOutcome]
) -> Round:
    """Send ``batches`` in order until one is refused for the task limit or lost."""
    sent: list[tuple[PendingBatch, str]] = []
    refused: list[str] = []
    for index, batch in enumerate(batches):
        outcome = send(batch)
        match outcome:
            case Sent(task_id=task_id):
                sent.append((batch, task_id))
            case NotSent.REFUSED:
                refused.append(batch.batch_id)
            case NotSent.LOST | NotSent.LIMIT:
                # A lost batch keeps its intent; a limited one is sent again, so it goes
                # back to the queue with the batches after it.
                lost = outcome is NotSent.LOST
                unsent = tuple(batches[index + 1 :] if lost else batches[index:])
                return Round(
                    sent=tuple(sent),
                    forget=(*refused, *(b.batch_id for b in unsent)),
                    unsent=unsent,
                    lost=batch if lost else None,
                    limited=not lost,
                )
            case _:
                assert_never(outcome)
    return Round(sent=tuple(sent), forget=tuple(refused))


def failures_of(batch: PendingBatch, status: TaskStatus) -> dict[str, Failure]:
    """The failures a DONE task reports for ``batch``'s accounts, by account.

    A failure naming an account the batch did not send cannot be one of its entries
    (``ledger.with_results`` looks up only those), so it is not kept.
    """
    actions = {entry.account: entry.action for entry in batch.entries}
    return {
        f.account: Failure(
            account=f.account, action=actions[f.account], code=f.fail_code, message=f.fail_message
        )
        for f in status.failures
        if f.account in actions
    }
