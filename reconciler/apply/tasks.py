"""createTask and queryTask as apply sees them: what a send can come to, a round of
sends, and the failures a DONE task reports (pure; the applier makes the calls).

A send ends in exactly one of: ``Sent`` (a task id); ``Refused`` (no task was created:
the entries the refusal blames failed, the intent is dropped, and the rest may go out
again as new batches); or ``NotSent`` LOST (the request may have reached the API: its
intent stays and a probe settles it), LIMIT (the tenant's pending-task limit: sent again
later) or HALT (the call failed for a reason no batch can fix, such as refused
credentials or an unreachable API: nothing more is sent in this run).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, TypeAlias, assert_never

from reconciler.apply.ledger import Failure
from reconciler.providers.federation.replies import CallCounts, TaskStatus
from reconciler.stores.model import PendingBatch
from reconciler.values import frozen

PENDING_LIMIT_CODE = "100-113"
ROLE_SERVICE_FAILED_CODE = "100-216"  # transient, retried by the client; spent: halt


class TaskApi(Protocol):
    """The federation calls apply needs, and how many of them reached the API."""

    def authenticate(self) -> None:
        """Get a token now: bad credentials fail before any batch is sent."""
        ...

    def create_task(self, entries: Sequence[Mapping[str, object]]) -> str:
        """Start a task; returns its id."""
        ...

    def query_task(self, task_id: str) -> TaskStatus:
        """A task's status."""
        ...

    def reached(self) -> CallCounts:
        """createTask and queryTask requests that reached the API so far."""
        ...


@frozen
class Sent:
    """createTask accepted the batch as task ``task_id``."""

    task_id: str


@frozen
class Refused:
    """No task was created; the applier reported the blamed entries as failed.

    ``resend`` holds new batches (not yet recorded) with the entries to send again.
    """

    resend: tuple[PendingBatch, ...] = ()


class NotSent(enum.Enum):
    """Why a createTask call gave no task id, when no entry is to blame."""

    LOST = "lost"  # the response was lost after the request may have reached the API
    LIMIT = "limit"  # the tenant's pending-task limit is reached (100-113)
    HALT = "halt"  # nothing more can be sent in this run (credentials, unreachable API)


SendOutcome: TypeAlias = Sent | Refused | NotSent


@frozen
class Round:
    """What one round of createTask calls came to, for the batches it took off the queue."""

    sent: tuple[tuple[PendingBatch, str], ...] = ()  # each sent batch with its task id
    forget: tuple[str, ...] = ()  # batch ids whose intents go: refused, or put back
    unsent: tuple[PendingBatch, ...] = ()  # back to the front of the queue, in order
    lost: PendingBatch | None = None  # its intent stays: sending stops, a probe settles it
    limited: bool = False  # the tenant's task limit ended the round
    halted: bool = False  # a failure no batch can fix, or a stop request, ended the round
    resend: tuple[PendingBatch, ...] = ()  # new batches in place of refused ones


def send_round(
    batches: Sequence[PendingBatch],
    send: Callable[[PendingBatch], SendOutcome],
    stop: Callable[[], bool] = lambda: False,
) -> Round:
    """Send ``batches`` in order until one is lost, limited or halted, or ``stop()`` holds."""
    sent: list[tuple[PendingBatch, str]] = []
    refused: list[str] = []
    resend: list[PendingBatch] = []
    for index, batch in enumerate(batches):
        # A stop request between two sends leaves the rest unsent, like a halt.
        outcome = NotSent.HALT if stop() else send(batch)
        match outcome:
            case Sent(task_id=task_id):
                sent.append((batch, task_id))
            case Refused(resend=again):
                refused.append(batch.batch_id)
                resend.extend(again)
            case NotSent.LOST | NotSent.LIMIT | NotSent.HALT:
                # A lost batch keeps its intent; a limited or halted one is not sent now,
                # so it goes back to the queue with the batches after it.
                lost = outcome is NotSent.LOST
                unsent = tuple(batches[index + 1 :] if lost else batches[index:])
                return Round(
                    sent=tuple(sent),
                    forget=(*refused, *(b.batch_id for b in unsent)),
                    unsent=unsent,
                    lost=batch if lost else None,
                    limited=outcome is NotSent.LIMIT,
                    halted=outcome is NotSent.HALT,
                    resend=tuple(resend),
                )
            case _:
                assert_never(outcome)
    return Round(sent=tuple(sent), forget=tuple(refused), resend=tuple(resend))


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
