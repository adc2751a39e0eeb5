"""The recorded state: what was last applied, as frozen values, and its JSON codec.

The document is versioned (``format_version``), has a ``lineage`` fixed at creation and
a ``serial`` that every write increases by one. Both backends store exactly this
document, so a state moves between them unchanged (``state pull`` / ``state push``).

Format 2 added ``adopted`` (an account recorded by ``import``, its attributes not verified
on the tenant). A reconciler that reads only format 1 would take such an account for a
verified one, so it must refuse format 2; a format-1 document reads as format 2 with no
adopted account, and is written back as format 2.

Format 3 added ``policy``: the guard rails in force at the last apply
(:mod:`reconciler.stores.recorded_policy`). An older reconciler would write the state back
without it, and the next plan could not show a loosened policy; so it must refuse format 3.
A format-1 or 2 document reads as format 3 with no recorded policy.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import sys
import uuid
from collections.abc import Mapping
from typing import Any, Protocol

from reconciler import formats
from reconciler.stores import recorded_policy
from reconciler.stores.recorded_policy import PolicyRecord
from reconciler.values import field, frozen, replace

FORMAT_VERSION = 3
# The largest serial a state can have: PostgreSQL's bigint, and the same for files so a
# state moves between backends unchanged (``schemas/state.schema.json`` says so too).
MAX_SERIAL = 2**63 - 1
# The largest serial an apply or refresh starts from: 2^32 writes of room, far more than
# any run makes (two or three per batch), so a run never sends what it cannot record.
LAST_STARTING_SERIAL = MAX_SERIAL - 2**32


class Action(enum.StrEnum):
    """What a change does to one federated account (the API's action names).

    Defined here, below the planner, because recorded batch entries carry it too;
    ``reconciler.plan.model`` re-exports it. A ``StrEnum`` so the state, the plan and
    the API keep the very same strings.
    """

    CREATE = "CREATE"
    MODIFY = "MODIFY"
    DISABLE = "DISABLE"

    @property
    def symbol(self) -> str:
        """Terraform-like marker."""
        match self:
            case Action.CREATE:
                return "+"
            case Action.MODIFY:
                return "~"
            case Action.DISABLE:
                return "-"


class EventState(enum.StrEnum):
    """What reconciler knows of a failed provisioning event (``EventRecord.status``).

    ``schemas/state.schema.json`` lists exactly these values.
    """

    OPEN = "open"  # listed as failed and not (successfully) retried yet
    RESOLVED = "resolved"  # gone from the listing, or CloudIdentity no longer knows it
    RETRYING = "retrying"  # a retry is under way (ours or another's), outcome not known yet
    RETRIED = "retried"  # our retry was accepted; the next listing tells its outcome
    UNKNOWN = "unknown"  # the retry's answer was lost: it may or may not have been accepted


def utc_now() -> str:
    """The current UTC time as an RFC 3339 string (seconds precision)."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class Named(Protocol):
    """An account as something else knows it (the desired state's user): a state read may
    give its records this one's strings where they are equal, so that equal texts are held
    once (:func:`reconciler.stores.decoding.shared_names`)."""

    @property
    def account(self) -> str:
        """The account."""
        ...

    @property
    def name(self) -> str:
        """Its name."""
        ...

    @property
    def email(self) -> str:
        """Its email."""
        ...


Names = Mapping[str, Named]  # by account


@frozen
class AccountRecord:
    """What was last applied to one federated account."""

    account: str
    name: str
    email: str
    role_ids: tuple[str, ...]  # sorted, numeric strings: never numbers
    enabled: bool
    last_task_id: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    source_commit: str | None = None  # the git commit the entry was last applied from
    # Recorded by `import`, not by an apply: the tenant was never asked whether the account
    # exists or what it holds. The next plan adopts it (a MODIFY with every attribute).
    adopted: bool = False


@frozen
class PendingEntry:
    """One user change inside a batch that may have been sent but has no recorded result."""

    action: Action
    account: str
    wire: Mapping[str, Any]  # the federationUserList entry exactly as sent
    target: AccountRecord  # the record to store when the entry succeeds


@frozen
class PendingBatch:
    """A createTask batch recorded before sending (intent) and after (task id)."""

    batch_id: str
    entries: tuple[PendingEntry, ...]
    task_id: str | None = None  # None: the request may or may not have reached the API
    recorded_at: str = ""
    sent_at: str | None = None


@frozen
class EventRecord:
    """What reconciler knows of one failed provisioning event (attempts survive runs)."""

    event_id: str
    account: str
    attempts: int = 0
    last_attempt_at: str | None = None
    last_reason: str | None = None
    target_id: str | None = None
    status: EventState | None = None
    seen_at: str | None = None


@frozen
class State:
    """The whole recorded state."""

    lineage: str
    serial: int
    accounts: Mapping[str, AccountRecord] = field(default_factory=dict)
    pending: tuple[PendingBatch, ...] = ()
    events: Mapping[str, EventRecord] = field(default_factory=dict)
    updated_at: str | None = None
    policy: PolicyRecord | None = None  # in force at the last apply (None: none recorded)

    @staticmethod
    def empty() -> State:
        """A new state with a fresh lineage that has never been written (serial 0)."""
        return State(lineage=str(uuid.uuid4()), serial=0)

    def successor(self, **changes: Any) -> State:
        """The next version of this state: same lineage, serial + 1."""
        return replace(self, serial=self.serial + 1, updated_at=utc_now(), **changes)


# -- codec ------------------------------------------------------------------------


ATTRIBUTES = ("name", "email", "role_ids", "enabled")  # what a plan shows of a record


def attributes_to_json(record: AccountRecord) -> dict[str, Any]:
    """The record's attributes (what a plan shows), without the state's bookkeeping.

    ``adopted`` is written only when true, so records of applied accounts look as before.
    """
    out: dict[str, Any] = {
        "name": record.name,
        "email": record.email,
        "role_ids": list(record.role_ids),
        "enabled": record.enabled,
    }
    if record.adopted:
        out["adopted"] = True
    return out


def attributes_from_json(account: str, data: Mapping[str, Any]) -> AccountRecord:
    """A record of the attributes in ``data`` only: bookkeeping is the state's, not a plan's."""
    kept = {key: data[key] for key in ATTRIBUTES}
    return _record_from_json(account, {**kept, "adopted": data.get("adopted", False)})


def _record_to_json(record: AccountRecord) -> dict[str, Any]:
    # account_text writes the same members as text: a change here is a change there.
    out = attributes_to_json(record)
    for key in _OPTIONAL:
        value = getattr(record, key)
        if value is not None:
            out[key] = value
    return out


_STRING = json.encoder.encode_basestring  # what json.dumps(..., ensure_ascii=False) uses
_OPTIONAL = ("last_task_id", "created_at", "updated_at", "source_commit")


def account_text(record: AccountRecord) -> str | None:
    """``_record_to_json(record)`` as compact JSON text, the bytes ``json.dumps`` with
    separators ``(",", ":")`` and ``ensure_ascii=False`` writes for it, made without the
    dict: a snapshot of 50,000 accounts, written when apply releases the lock, takes about
    half the time. None for a record of other types than declared (the dict path writes it).
    """
    strings = _STRING
    name, email, role_ids, enabled, adopted = (
        record.name,
        record.email,
        record.role_ids,
        record.enabled,
        record.adopted,
    )
    if not (
        type(name) is str
        and type(email) is str
        and type(role_ids) is tuple
        and type(enabled) is bool
        and type(adopted) is bool
    ):
        return None
    for role_id in role_ids:
        if type(role_id) is not str:
            return None
    text = '{"name":%s,"email":%s,"role_ids":[%s],"enabled":%s' % (  # noqa: UP031 - one call
        strings(name),
        strings(email),
        ",".join(map(strings, role_ids)),
        "true" if enabled else "false",
    )
    if adopted:
        text += ',"adopted":true'
    # _OPTIONAL, spelled out (a loop of getattr costs a third of the record)
    if (value := record.last_task_id) is not None:
        if type(value) is not str:
            return None
        text += ',"last_task_id":' + strings(value)
    if (value := record.created_at) is not None:
        if type(value) is not str:
            return None
        text += ',"created_at":' + strings(value)
    if (value := record.updated_at) is not None:
        if type(value) is not str:
            return None
        text += ',"updated_at":' + strings(value)
    if (value := record.source_commit) is not None:
        if type(value) is not str:
            return None
        text += ',"source_commit":' + strings(value)
    return text + "}"


def shared(value: Any) -> Any:
    """One copy of a text many records hold (a role id, a task id, a timestamp)."""
    return sys.intern(value) if type(value) is str else value


def _record_from_json(account: str, data: Mapping[str, Any]) -> AccountRecord:
    # Role ids, task ids and timestamps repeat across records (a task or an apply step
    # covers many accounts): a million records keep one copy of each, not one per record.
    return AccountRecord(
        account=account,
        name=data["name"],
        email=data["email"],
        role_ids=tuple([shared(role_id) for role_id in data["role_ids"]]),
        enabled=data["enabled"],
        last_task_id=shared(data.get("last_task_id")),
        created_at=shared(data.get("created_at")),
        updated_at=shared(data.get("updated_at")),
        source_commit=data.get("source_commit"),
        adopted=data.get("adopted", False),  # absent in format 1: nothing was adopted
    )


def _pending_to_json(batch: PendingBatch) -> dict[str, Any]:
    return {
        "batch_id": batch.batch_id,
        "task_id": batch.task_id,
        "recorded_at": batch.recorded_at,
        "sent_at": batch.sent_at,
        "entries": [
            {
                "action": entry.action.value,
                "account": entry.account,
                "wire": dict(entry.wire),
                "target": _record_to_json(entry.target),
            }
            for entry in batch.entries
        ],
    }


def _pending_from_json(data: Mapping[str, Any]) -> PendingBatch:
    return PendingBatch(
        batch_id=data["batch_id"],
        task_id=data.get("task_id"),
        recorded_at=data.get("recorded_at", ""),
        sent_at=data.get("sent_at"),
        entries=tuple(
            PendingEntry(
                action=Action(entry["action"]),
                account=entry["account"],
                wire=entry["wire"],
                target=_record_from_json(entry["account"], entry["target"]),
            )
            for entry in data["entries"]
        ),
    )


def _event_to_json(event: EventRecord) -> dict[str, Any]:
    out = {
        key: getattr(event, key)
        for key in (
            "account",
            "attempts",
            "last_attempt_at",
            "last_reason",
            "target_id",
            "status",
            "seen_at",
        )
        if getattr(event, key) is not None
    }
    if event.status is not None:
        out["status"] = event.status.value  # the plain string, in the same place
    return out


def _event_from_json(event_id: str, data: Mapping[str, Any]) -> EventRecord:
    status = data.get("status")
    return EventRecord(
        event_id=event_id,
        account=data["account"],
        attempts=data.get("attempts", 0),
        last_attempt_at=data.get("last_attempt_at"),
        last_reason=data.get("last_reason"),
        target_id=data.get("target_id"),
        status=None if status is None else EventState(status),
        seen_at=data.get("seen_at"),
    )


def to_json(state: State) -> dict[str, Any]:
    """The state as the JSON document both backends store (accounts sorted)."""
    document: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "lineage": state.lineage,
        "serial": state.serial,
        "updated_at": state.updated_at,
        "accounts": {
            account: _record_to_json(state.accounts[account]) for account in sorted(state.accounts)
        },
        "pending": [_pending_to_json(batch) for batch in state.pending],
        "events": {
            event_id: _event_to_json(state.events[event_id]) for event_id in sorted(state.events)
        },
    }
    if state.policy is not None:
        document["policy"] = recorded_policy.to_json(state.policy)
    return document


def from_json(
    data: Any, *, where: str, repair_hint: str = "", schema_checked: bool = False
) -> State:
    """Parse a state document; anything unexpected raises StateCorrupt naming ``where``.

    ``repair_hint`` is the backend's own step for a corrupt state; a newer one says "upgrade".
    ``schema_checked``: the document's bytes passed the schema before (``stores.checked``).
    """
    formats.check(
        data,
        kind=formats.Kind.STATE,
        subject=f"state {where}",
        newest=FORMAT_VERSION,
        repair_hint=repair_hint,
        schema_checked=schema_checked,
    )
    return State(
        lineage=data["lineage"],
        serial=data["serial"],
        updated_at=data.get("updated_at"),
        accounts={
            account: _record_from_json(account, record)
            for account, record in data["accounts"].items()
        },
        pending=tuple(_pending_from_json(batch) for batch in data.get("pending", [])),
        events={
            event_id: _event_from_json(event_id, event)
            for event_id, event in data.get("events", {}).items()
        },
        policy=policy_from_json(data.get("policy")),
    )


def policy_from_json(data: Any) -> PolicyRecord | None:
    """The recorded policy of a document's ``policy`` (None: absent, as before format 3)."""
    return None if data is None else recorded_policy.from_json(data)


# The document's parts on their own, for stores that keep them apart (the file backend's
# journal, PostgreSQL's rows): each is exactly what the document holds in its place.
account_to_json = _record_to_json
account_from_json = _record_from_json
batch_to_json = _pending_to_json
batch_from_json = _pending_from_json
event_to_json = _event_to_json
event_from_json = _event_from_json
