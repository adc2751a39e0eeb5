"""One bad entry never blocks the rest of its batch: what to do with a refused createTask.

createTask validates all-or-nothing, so one entry the API refuses (a role deleted on the
tenant, a rule the local checks did not see broken) refuses the whole batch and no task
is created. :func:`isolate` decides, purely, which entries fail and which go out again:

- the refusal blames entries (100-217 names a role id, which identifies every entry
  using it; a documented rule the local checks see broken): those fail, with the code
  and a message naming the role by its desired-state name; the rest is one new batch;
- the refusal blames nothing it can name (an undocumented code such as an account that
  already exists): the batch is split in two halves, each sent again, so repeated
  refusals narrow down to single entries, which then fail;
- the request itself was wrong (100-102 empty, 100-103 too long): a bug, nothing resent.

Every resend is a new batch, recorded as an intent before it is sent like any other, so
a lost response on a resend is settled by a probe. Resends draw from a budget per run
(``ApplySettings.max_resends``): once it is spent, refused entries fail as they are.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from reconciler.apply.ledger import Failure
from reconciler.providers.federation.replies import RESULT_CODES, BatchRefused
from reconciler.stores.model import PendingBatch, PendingEntry
from reconciler.values import frozen

ROLE_NOT_IN_TENANT = "100-217"
REQUEST_BUGS = frozenset({"100-102", "100-103"})  # the request, not an entry, was wrong
SPENT = (
    "createTask refused its batch, and this run's resends to isolate the refused entries "
    "are spent: not sent again"
)


@frozen
class Isolation:
    """What becomes of a refused batch: entries that failed, and new batches to send."""

    failed: tuple[Failure, ...] = ()
    resend: tuple[PendingBatch, ...] = ()


def isolate(
    batch: PendingBatch,
    refusal: BatchRefused,
    *,
    role_names: Mapping[str, str],
    resends_left: int,
    now: str,
) -> Isolation:
    """Split ``batch`` after ``refusal`` into failed entries and batches to send again."""
    entries = batch.entries
    if refusal.code in REQUEST_BUGS:
        return Isolation(failed=_failed(entries, refusal.code, refusal.message))
    blamed = set(refusal.culprits) & {entry.account for entry in entries}
    if blamed:
        why = _blame(refusal, role_names)
        failed = [e for e in entries if e.account in blamed]
        rest = [e for e in entries if e.account not in blamed]
        if rest and resends_left < 1:
            spent = _failed(rest, refusal.code, SPENT)
            return Isolation(failed=(*_failed(failed, refusal.code, why), *spent))
        resend = (_batch(rest, now),) if rest else ()
        return Isolation(failed=_failed(failed, refusal.code, why), resend=resend)
    if len(entries) == 1:
        return Isolation(failed=_failed(entries, refusal.code, _unnamed(refusal)))
    if resends_left < 2:
        return Isolation(failed=_failed(entries, refusal.code, SPENT))
    half = len(entries) // 2
    return Isolation(resend=(_batch(entries[:half], now), _batch(entries[half:], now)))


def _blame(refusal: BatchRefused, role_names: Mapping[str, str]) -> str:
    """The reason shared by every entry a refusal blames (the same text groups them)."""
    if refusal.code == ROLE_NOT_IN_TENANT and refusal.role_id is not None:
        name = role_names.get(refusal.role_id)
        shown = f"`{name}` ({refusal.role_id})" if name else refusal.role_id
        return f"role {shown} is not on the tenant"
    known = RESULT_CODES.get(refusal.code)
    return known.meaning if known is not None else refusal.message


def _unnamed(refusal: BatchRefused) -> str:
    """The reason for an entry isolated by splitting: the refusal in its own words."""
    known = RESULT_CODES.get(refusal.code)
    if known is None:
        return f"createTask refused it with undocumented resultCode {refusal.code}"
    return known.meaning


def _failed(entries: Sequence[PendingEntry], code: str, message: str) -> tuple[Failure, ...]:
    return tuple(
        Failure(account=entry.account, action=entry.action, code=code, message=message)
        for entry in entries
    )


def _batch(entries: Sequence[PendingEntry], now: str) -> PendingBatch:
    """A new batch (a new intent) for ``entries``."""
    return PendingBatch(batch_id=str(uuid.uuid4()), recorded_at=now, entries=tuple(entries))
