"""What one write changes: the difference between the stored state and its successor.

Both backends write a :class:`Delta` instead of the whole state: the file backend appends
it to a journal beside its snapshot, PostgreSQL updates the rows of what changed. So a
write costs what it changes, not the size of the state.

:func:`between` finds the delta. The engine makes each state from the one before with
``revisions.revise``, so the accounts and events that changed are known without looking
at the others; any other pair of states (a pushed document, a hand-built one) is compared
in full, which is as correct and only slower. Pending batches are few: they are compared
one by one, and a batch whose entries did not change (a task id was recorded) is written
as its own fields only (:class:`Marks`).

As JSON a delta is one journal record (:func:`to_json`, :func:`from_json`, which checks it
with the state's own schema); :class:`Replay` applies such records to a snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from reconciler import schemas
from reconciler.errors import StateCorrupt
from reconciler.stores import model, recorded_policy, revisions
from reconciler.stores.model import AccountRecord, EventRecord, PendingBatch, State
from reconciler.stores.recorded_policy import PolicyRecord
from reconciler.values import field, frozen, replace

V = TypeVar("V")


@frozen
class Marks:
    """A pending batch's own fields, which change while its entries stay as they are."""

    task_id: str | None
    recorded_at: str
    sent_at: str | None

    @staticmethod
    def of(batch: PendingBatch) -> Marks:
        """The marks ``batch`` carries now."""
        return Marks(task_id=batch.task_id, recorded_at=batch.recorded_at, sent_at=batch.sent_at)


@frozen
class Delta:
    """The change from the state at serial ``prev`` to the one at ``serial``."""

    lineage: str
    prev: int
    serial: int
    updated_at: str | None
    accounts: Mapping[str, AccountRecord] = field(default_factory=dict)  # new or changed
    removed: tuple[str, ...] = ()  # accounts no longer recorded
    events: Mapping[str, EventRecord] = field(default_factory=dict)
    events_removed: tuple[str, ...] = ()
    batches: tuple[PendingBatch, ...] = ()  # new pending batches, or with other entries
    marks: Mapping[str, Marks] = field(default_factory=dict)  # batch id -> its new marks
    order: tuple[str, ...] | None = None  # every pending batch id in order; None: unchanged
    policy: PolicyRecord | None = None  # the newly recorded policy; None: unchanged
    policy_removed: bool = False  # the state no longer records a policy (a hand-made state)


def between(old: State, new: State) -> Delta:
    """The delta that turns ``old`` (as stored) into ``new`` (its successor)."""
    accounts, removed = _mapping(old.accounts, new.accounts)
    events, events_removed = _mapping(old.events, new.events)
    batches, marks, order = _pending(old.pending, new.pending)
    return Delta(
        lineage=new.lineage,
        prev=old.serial,
        serial=new.serial,
        updated_at=new.updated_at,
        accounts=accounts,
        removed=tuple(removed),
        events=events,
        events_removed=tuple(events_removed),
        batches=batches,
        marks=marks,
        order=order,
        policy=None if new.policy == old.policy else new.policy,
        policy_removed=new.policy is None and old.policy is not None,
    )


def _mapping(old: Mapping[str, V], new: Mapping[str, V]) -> tuple[dict[str, V], list[str]]:
    """(keys set to another value, keys removed) between two mappings."""
    known = revisions.compare(old, new)
    if known is not None:
        return known
    get = old.get
    changed: dict[str, V] = {}
    for key, now in new.items():
        before = get(key)
        if before is not now and before != now:
            changed[key] = now
    return changed, [key for key in old if key not in new]


def _pending(
    old: tuple[PendingBatch, ...], new: tuple[PendingBatch, ...]
) -> tuple[tuple[PendingBatch, ...], dict[str, Marks], tuple[str, ...] | None]:
    """(new or re-entried batches, batches with new marks only, the new order if changed)."""
    before = {batch.batch_id: batch for batch in old}
    batches: list[PendingBatch] = []
    marks: dict[str, Marks] = {}
    for batch in new:
        stored = before.get(batch.batch_id)
        if stored is batch:
            continue
        if stored is None or not (
            stored.entries is batch.entries or stored.entries == batch.entries
        ):
            batches.append(batch)
        elif stored != batch:
            marks[batch.batch_id] = Marks.of(batch)
    ids = tuple(batch.batch_id for batch in new)
    order = None if ids == tuple(before) else ids
    return tuple(batches), marks, order


# -- replaying ----------------------------------------------------------------------


class Replay:
    """A state rebuilt from a snapshot and the deltas written after it, in order."""

    def __init__(self, state: State) -> None:
        self.lineage, self.serial, self.updated_at = state.lineage, state.serial, state.updated_at
        self.accounts = dict(state.accounts)
        self.events = dict(state.events)
        self.pending = {batch.batch_id: batch for batch in state.pending}
        self.order = [batch.batch_id for batch in state.pending]
        self.policy = state.policy

    def apply(self, delta: Delta, *, where: str) -> None:
        """Apply the next delta; StateCorrupt when it does not follow what was replayed."""
        if delta.lineage != self.lineage or delta.prev != self.serial or delta.serial <= delta.prev:
            raise _broken(
                where,
                f"a record for lineage {delta.lineage} serial {delta.prev} -> {delta.serial} "
                f"follows lineage {self.lineage} serial {self.serial}",
            )
        self.serial, self.updated_at = delta.serial, delta.updated_at
        if delta.policy is not None or delta.policy_removed:
            self.policy = delta.policy
        self.accounts.update(delta.accounts)
        for account in delta.removed:
            self.accounts.pop(account, None)
        self.events.update(delta.events)
        for event_id in delta.events_removed:
            self.events.pop(event_id, None)
        self.pending.update((batch.batch_id, batch) for batch in delta.batches)
        for batch_id, marks in delta.marks.items():
            if batch_id not in self.pending:
                raise _broken(where, f"serial {delta.serial} marks an unknown batch {batch_id}")
            self.pending[batch_id] = replace(
                self.pending[batch_id],
                task_id=marks.task_id,
                recorded_at=marks.recorded_at,
                sent_at=marks.sent_at,
            )
        order = self.order if delta.order is None else list(delta.order)
        unknown = [batch_id for batch_id in order if batch_id not in self.pending]
        if unknown or (delta.order is None and len(self.pending) != len(order)):
            raise _broken(where, f"serial {delta.serial} leaves its pending batches unclear")
        self.order = order
        if len(self.pending) != len(order):
            kept = set(order)
            self.pending = {b: batch for b, batch in self.pending.items() if b in kept}

    def state(self) -> State:
        """The state replayed so far."""
        return State(
            lineage=self.lineage,
            serial=self.serial,
            updated_at=self.updated_at,
            accounts=self.accounts,
            pending=tuple(self.pending[batch_id] for batch_id in self.order),
            events=self.events,
            policy=self.policy,
        )


def _broken(where: str, what: str) -> StateCorrupt:
    return StateCorrupt(
        f"state {where}: its journal does not fit its snapshot: {what}",
        hint="it was not modified; restore the state from a copy (`reconciler state push`), "
        "or fix the journal by hand",
    )


# -- JSON: one journal record -------------------------------------------------------


def to_json(delta: Delta) -> dict[str, Any]:
    """The delta as a JSON object; members that would be empty are left out."""
    out: dict[str, Any] = {
        "lineage": delta.lineage,
        "prev": delta.prev,
        "serial": delta.serial,
        "updated_at": delta.updated_at,
    }
    if delta.accounts:
        out["accounts"] = {k: model.account_to_json(v) for k, v in delta.accounts.items()}
    if delta.removed:
        out["removed"] = list(delta.removed)
    if delta.events:
        out["events"] = {k: model.event_to_json(v) for k, v in delta.events.items()}
    if delta.events_removed:
        out["events_removed"] = list(delta.events_removed)
    if delta.batches:
        out["batches"] = [model.batch_to_json(batch) for batch in delta.batches]
    if delta.marks:
        out["marks"] = {
            batch_id: {"task_id": m.task_id, "recorded_at": m.recorded_at, "sent_at": m.sent_at}
            for batch_id, m in delta.marks.items()
        }
    if delta.order is not None:
        out["order"] = list(delta.order)
    if delta.policy is not None:
        out["policy"] = recorded_policy.to_json(delta.policy)
    elif delta.policy_removed:
        out["policy"] = None  # null: removed (absent: unchanged)
    return out


_MEMBERS = frozenset(
    (
        "lineage",
        "prev",
        "serial",
        "updated_at",
        "accounts",
        "removed",
        "events",
        "events_removed",
        "batches",
        "marks",
        "order",
        "policy",
    )
)


def from_json(data: Mapping[str, Any], *, where: str) -> Delta:
    """A delta from its JSON object, checked as strictly as a whole state document."""
    problem = _problem(data)
    if problem:
        raise StateCorrupt(
            f"state {where}: a journal record is not valid: {problem}",
            hint="it was not modified; restore the state from a copy, or fix it by hand",
        )
    marks = data.get("marks", {})
    order = data.get("order")
    return Delta(
        lineage=data["lineage"],
        prev=data["prev"],
        serial=data["serial"],
        updated_at=data["updated_at"],
        accounts={k: model.account_from_json(k, v) for k, v in data.get("accounts", {}).items()},
        removed=tuple(data.get("removed", ())),
        events={k: model.event_from_json(k, v) for k, v in data.get("events", {}).items()},
        events_removed=tuple(data.get("events_removed", ())),
        batches=tuple(model.batch_from_json(batch) for batch in data.get("batches", ())),
        marks={
            batch_id: Marks(
                task_id=m["task_id"], recorded_at=m["recorded_at"], sent_at=m["sent_at"]
            )
            for batch_id, m in marks.items()
        },
        order=None if order is None else tuple(order),
        policy=model.policy_from_json(data.get("policy")),
        policy_removed="policy" in data and data["policy"] is None,
    )


def _problem(data: Mapping[str, Any]) -> str:
    """What is wrong with a record (empty when nothing): the state schema, then the rest."""
    unknown = sorted(set(data) - _MEMBERS)
    if unknown:
        return f"unknown member {unknown[0]!r}"
    prev = data.get("prev")
    if isinstance(prev, bool) or not isinstance(prev, int) or prev < 0:
        return "prev must be a whole number from 0"
    # The records it carries, checked by the very schema of the state document.
    document = {
        "format_version": model.FORMAT_VERSION,
        "lineage": data.get("lineage"),
        "serial": data.get("serial"),
        "updated_at": data.get("updated_at"),
        "accounts": data.get("accounts", {}),
        "pending": data.get("batches", []),
        "events": data.get("events", {}),
    }
    if data.get("policy") is not None:
        document["policy"] = data["policy"]
    problems = schemas.check("state", document)
    if problems:
        return problems[0]
    for key in ("removed", "events_removed", "order"):
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            return f"{key} must be a list of strings"
    marks = data.get("marks", {})
    if not isinstance(marks, dict) or not all(_marks_ok(m) for m in marks.values()):
        return "marks must map batch ids to task_id, recorded_at and sent_at"
    return ""


def _marks_ok(marks: Any) -> bool:
    return (
        isinstance(marks, dict)
        and set(marks) == {"task_id", "recorded_at", "sent_at"}
        and isinstance(marks["recorded_at"], str)
        and all(marks[key] is None or isinstance(marks[key], str) for key in ("task_id", "sent_at"))
    )
