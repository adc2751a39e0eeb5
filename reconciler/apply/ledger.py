"""Pure state transitions of an apply: intents, task ids, results (no I/O).

They keep the serial: the applier bumps it once per write.

The applier writes the state after each transition, so the recorded state is always
the truth: an entry becomes "applied" only when its task is DONE and the entry is
not in ``failDataList``.

An adopted account (recorded by ``import``, never verified) that the API answers with
:data:`ACCOUNT_NOT_FOUND` is recorded as absent: it leaves the state, and the next plan
creates it. Every other failure keeps the record as it was.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from reconciler.desired.model import DesiredState
from reconciler.plan.model import Change
from reconciler.stores import revisions
from reconciler.stores.model import AccountRecord, Action, PendingBatch, PendingEntry, State
from reconciler.values import frozen, replace

# The failCode of a MODIFY/DISABLE of an account the tenant does not have. The API
# publishes no run-time failCodes (they are opaque [ASSUME]); this is the sandbox's
# (``reconciler.sandbox.federation_rules.Code.USER_NOT_FOUND``). Only this code counts as
# "does not exist": any other failure is a failure, and the record stays.
ACCOUNT_NOT_FOUND = "100-302"


class EventRetry(enum.StrEnum):
    """The action of a failed provisioning-event retry: not a change of a user."""

    RETRY = "RETRY"


@frozen
class Failure:
    """An entry that failed, and why (codes are the API's)."""

    account: str
    action: Action | EventRetry
    code: str
    message: str


def new_batch(
    changes: Iterable[Change], now: str, source_commit: str | None = None
) -> PendingBatch:
    """A batch intent for ``changes`` (no task id yet)."""
    return PendingBatch(
        batch_id=str(uuid.uuid4()),
        recorded_at=now,
        entries=tuple(
            PendingEntry(
                action=change.action,
                account=change.account,
                wire=change.wire(),
                target=replace(
                    change.after, source_commit=source_commit or change.after.source_commit
                ),
            )
            for change in changes
        ),
    )


def with_intents(state: State, batches: Iterable[PendingBatch]) -> State:
    """Record batches that are about to be sent."""
    return replace(state, pending=(*state.pending, *batches))


def with_task_ids(state: State, sent: Mapping[str, str], now: str) -> State:
    """Record the task ids createTask returned (batch id → task id)."""
    return replace(
        state,
        pending=tuple(
            replace(batch, task_id=sent[batch.batch_id], sent_at=now)
            if batch.batch_id in sent
            else batch
            for batch in state.pending
        ),
    )


def without(state: State, batch_ids: Iterable[str]) -> State:
    """Forget batches that were refused (no task was created)."""
    gone = set(batch_ids)
    return replace(state, pending=tuple(b for b in state.pending if b.batch_id not in gone))


def with_results(
    state: State,
    results: Iterable[tuple[PendingBatch, Mapping[str, Failure]]],
    now: str,
) -> tuple[State, list[PendingEntry], list[Failure]]:
    """Apply DONE tasks: entries not failed become the recorded truth.

    The accounts are a revision of the state's (``revisions.revise``): it costs the
    entries, and the store writes only them.
    """
    accounts = state.accounts
    changed: dict[str, AccountRecord] = {}
    absent: set[str] = set()
    applied: list[PendingEntry] = []
    failed: list[Failure] = []
    done: set[str] = set()
    for batch, failures in results:
        done.add(batch.batch_id)
        for entry in batch.entries:
            account = entry.account
            before = changed.get(account) or (None if account in absent else accounts.get(account))
            failure = failures.get(account)
            if failure is not None:
                if _absent(before, failure):
                    changed.pop(account, None)
                    absent.add(account)
                    failure = replace(failure, message=f"{failure.message}{_ABSENT_NOTE}")
                failed.append(failure)
                continue
            absent.discard(account)
            changed[account] = replace(
                entry.target,
                last_task_id=batch.task_id,
                created_at=(before.created_at if before and before.created_at else now),
                updated_at=now,
            )
            applied.append(entry)
    new_state = replace(
        state,
        accounts=revisions.revise(accounts, changed, absent),
        pending=tuple(b for b in state.pending if b.batch_id not in done),
    )
    return new_state, applied, failed


_ABSENT_NOTE = (
    " (imported, but the tenant has no such account: recorded as absent, the next plan creates it)"
)


def _absent(record: AccountRecord | None, failure: Failure) -> bool:
    """An adopted account the tenant does not have: it is forgotten (the failure says so)."""
    return record is not None and record.adopted and failure.code == ACCOUNT_NOT_FOUND


def probe_batch(state: State, lost: PendingBatch, now: str) -> PendingBatch:
    """The batch that settles ``lost`` (sent, task id never recorded) without blind CREATEs.

    - CREATE of a new account → MODIFY with every attribute: it succeeds only if the
      lost task created the account (tasks run in order), and then sets exactly the
      desired attributes; if it fails, the account does not exist and the next plan
      creates it.
    - CREATE re-enabling a disabled account → DISABLE: afterwards the account is known
      to be disabled, and the next plan re-enables it.
    - MODIFY and DISABLE set absolute values: resent as they are.
    """
    entries = []
    for entry in lost.entries:
        before = state.accounts.get(entry.account)
        if entry.action is not Action.CREATE:
            entries.append(entry)
        elif before is None:
            wire: dict[str, Any] = dict(entry.wire)
            wire["action"] = Action.MODIFY.value
            entries.append(replace(entry, action=Action.MODIFY, wire=wire))
        else:
            entries.append(
                replace(
                    entry,
                    action=Action.DISABLE,
                    wire={"action": Action.DISABLE.value, "userAccount": entry.account},
                    target=replace(before, enabled=False),
                )
            )
    return PendingBatch(batch_id=str(uuid.uuid4()), recorded_at=now, entries=tuple(entries))


def with_probe(state: State, lost: PendingBatch, probe: PendingBatch) -> State:
    """Record ``probe`` in the place of the ``lost`` batch it settles (one write)."""
    return replace(
        state,
        pending=tuple(probe if b.batch_id == lost.batch_id else b for b in state.pending),
    )


def creates_to_resend(
    state: State, lost: Iterable[PendingBatch], resent: Collection[str], now: str
) -> PendingBatch | None:
    """The lost batches' CREATEs whose accounts are still not enabled after the probes.

    Sending them again cannot create anyone twice: the probe showed the lost request
    left the account missing (or disabled), and the API refuses a CREATE of an
    existing enabled account. Accounts in ``resent`` were sent again already this run.
    """
    entries = [
        entry
        for batch in lost
        for entry in batch.entries
        if entry.action is Action.CREATE
        and entry.account not in resent
        and not getattr(state.accounts.get(entry.account), "enabled", False)
    ]
    if not entries:
        return None
    return PendingBatch(batch_id=str(uuid.uuid4()), recorded_at=now, entries=tuple(entries))


_WIRE_KEYS = frozenset({"action", "userAccount", "userName", "email", "roleIds"})


def unexplained(state: State, desired: DesiredState) -> tuple[str, ...]:
    """Pending entries that neither the desired state nor the recorded state accounts for.

    Settling an interrupted apply resends its lost entries as the state recorded them
    (``probe_batch``): whoever can write the state could otherwise have any grant sent,
    unreviewed. A DISABLE is always explained (it only takes access away); any other entry
    must be for a declared account, and each role id, name and email it sends must be the
    desired or the recorded one. Returns one line per unexplained entry (empty: all are).
    """
    found: list[str] = []
    for batch in state.pending:
        for entry in batch.entries:
            why = _unexplained(entry, state.accounts.get(entry.account), desired)
            if why:
                found.append(f"batch {batch.batch_id}: {entry.action} {entry.account}: {why}")
    return tuple(found)


def _unexplained(entry: PendingEntry, before: AccountRecord | None, desired: DesiredState) -> str:
    wire = entry.wire
    if wire.get("action") != entry.action.value or wire.get("userAccount") != entry.account:
        return "its request names another action or account than the entry"
    if not set(wire) <= _WIRE_KEYS:
        unknown = ", ".join(sorted(set(wire) - _WIRE_KEYS))
        return f"its request carries fields reconciler never sends ({unknown})"
    if entry.action is Action.DISABLE:
        return "" if set(wire) == {"action", "userAccount"} else "a DISABLE carrying attributes"
    user = desired.users.get(entry.account)
    if user is None:
        return "the account is not in the desired state"
    granted = set(user.role_ids) | set(before.role_ids if before else ())
    extra = sorted(set(wire.get("roleIds", ())) - granted)
    if extra:
        named = ", ".join(map(str, extra))
        return f"role id(s) {named} granted by neither the desired nor the recorded state"
    for key, wanted, had in (
        ("userName", user.name, before.name if before else None),
        ("email", user.email, before.email if before else None),
    ):
        if key in wire and wire[key] not in (wanted, had):
            return f"its {key} is neither the desired nor the recorded one"
    return ""
