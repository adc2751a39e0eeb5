"""The plan's JSON form (``schemas/plan.schema.json``): write, read back, refuse when stale.

A saved plan carries ``changes_digest``: the sha256 of its changes as written (each
without ``source``, which is provenance and may differ between checkouts, and ``why``, the
end dates it carries out in words). Reading a plan
whose changes do not match its digest is refused: the file was edited. That alone proves
nothing (an editor can recompute it); ``integrity`` compares the changes with the plan
made again at apply time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from reconciler import __version__, formats, jsontext
from reconciler.desired.commit import Commit
from reconciler.desired.model import Source
from reconciler.errors import PlanError, StalePlan
from reconciler.plan import access, change_text, policy_json
from reconciler.plan.model import (
    PLAN_FORMAT_VERSION,
    Action,
    Change,
    Decision,
    EventDecision,
    Expired,
    Expiring,
    Field,
    FieldChange,
    Guard,
    Kind,
    Plan,
    Reason,
    RoleInfo,
)
from reconciler.stores import model as state_codec
from reconciler.stores.model import AccountRecord, State
from reconciler.values import frozen, replace

# -- writing -----------------------------------------------------------------------


@frozen
class Encoded:
    """A plan's changes encoded once: the lines of the file, and their digest."""

    lines: tuple[str, ...]  # each change as the file holds it, one line each
    digest: str  # ``changes_digest``: sha256 over the same text without ``source``/``why``


def encode(plan: Plan) -> Encoded:
    """Each change's canonical text, made once for both the digest and the file.

    The digest covers ``[R1,R2,…]`` where each R is a change without ``source`` and
    ``why`` as canonical JSON (sorted keys, no spaces, ASCII). The file's line for a change
    is that same R with ``source`` (and ``why``) put in front, so no change is encoded
    twice, and a reader can check the digest against the lines as written.
    """
    hasher = hashlib.sha256(b"[")
    lines: list[str] = []
    canonical, update, append = _canonical_presorted, hasher.update, lines.append
    texts = change_text.Texts(canonical)
    built, located, unusual = texts.change, texts.source, (change_text.Unusual, TypeError)
    for index, change in enumerate(plan.changes):
        try:  # the text put together from its pieces: no document built
            text = built(change)
        except unusual:
            text = canonical(_reviewed_json(change))
        if index:
            update(b",")
        update(text.encode("ascii"))
        try:
            front = '{"source":' + located(change.source, _commit_json)
        except unusual:
            front = '{"source":' + canonical(_source(change.source))
        if change.expired:
            front += ',"why":' + canonical(list(plan.why(change)))
        append(front + "," + text[1:])
    update(b"]")
    _hash_retries(hasher, _retry_items(_event_json(e) for e in plan.events))
    return Encoded(lines=tuple(lines), digest="sha256:" + hasher.hexdigest())


def with_digest(plan: Plan, encoded: Encoded) -> Plan:
    """``plan`` carrying its changes' digest, so no renderer encodes its changes again."""
    return replace(plan, extra={**plan.extra, "changes_digest": encoded.digest})


def dumps(plan: Plan, encoded: Encoded | None = None) -> str:
    """The plan's JSON text: identical input, identical bytes.

    Laid out for the C encoder and for diffs: each object's keys (sorted) one per line,
    each item of a list on one line of compact JSON (a change, a batch, an event). No
    item is ever indented inside, which would force Python's pure-Python encoder (about
    7x slower on 100k changes). ``encoded`` is :func:`encode` of ``plan`` when the caller
    has it already.
    """
    return "".join(pieces(plan, encoded))


def pieces(plan: Plan, encoded: Encoded | None = None) -> Iterator[str]:
    """:func:`dumps`'s text in pieces, for writing it without holding it whole: the
    changes come a block of lines at a time."""
    encoded = encoded if encoded is not None else encode(plan)
    document = _head(plan, encoded.digest)
    document["changes"] = jsontext.Lines(encoded.lines)
    yield from jsontext.pieces(document, sort_keys=True)
    yield "\n"


def to_json(plan: Plan) -> dict[str, Any]:
    """The plan as its JSON document."""
    changes = [change_json(change, plan) for change in plan.changes]
    document = _head(plan, digest(changes, _retry_items(_event_json(e) for e in plan.events)))
    document["changes"] = changes
    return document


# Canonical: sorted keys, no spaces, ASCII (what the changes digest hashes).
_canonical = jsontext.encoder(ascii_only=True, sort_keys=True)
# The same text for documents whose keys are in sorted order already (_reviewed_json):
# sorting each object's keys was 40% of encoding 100k changes. A key out of order would
# give another digest, which a reader (re-encoding with sorted keys) refuses: never a
# plan that passes for another; tests compare the two encodings change by change.
_canonical_presorted = jsontext.encoder(ascii_only=True, sort_keys=False)


def _head(plan: Plan, changes_digest: str) -> dict[str, Any]:
    """The plan's JSON document without its changes."""
    document: dict[str, Any] = {
        "format_version": plan.format_version,
        "tool": {"name": "reconciler", "version": __version__},
        "state": {
            "lineage": plan.lineage,
            "serial": plan.serial,
            "location": plan.state_location,
            "workspace": plan.workspace,
        },
        "input_digest": plan.input_digest,
        "input_path": plan.input_path,
        "at": plan.at.isoformat() if plan.at is not None else None,
        "timezone": plan.timezone,
        "expiring": {
            "notice_days": plan.notice_days,
            "items": [_expiring(plan, item) for item in plan.expiring],
        },
        "changes_digest": changes_digest,
        "summary": summary(plan),
        "guard": _guard(plan.guard),
        "policy": policy_json.to_json(plan.policy),
        "access": [_access_row(row) for row in access.by_role(plan)],
        "batches": [
            {"index": index, "accounts": list(accounts)}
            for index, accounts in enumerate(plan.batches, start=1)
        ],
        "events": {
            "refreshed": plan.events_refreshed,
            "items": [_event_json(e) for e in plan.events],
        },
        "roles": {
            role_id: {"name": info.name, "sensitive": info.sensitive}
            for role_id, info in plan.roles.items()
        },
        "outstanding": list(plan.outstanding),
        "notes": list(plan.notes),
    }
    redacted = plan.extra.get("redacted")
    if redacted:  # only in --redact output, which apply refuses
        document["redacted"] = list(redacted)
    return document


def summary(plan: Plan) -> dict[str, Any]:
    """Counts by kind (an adopt is not counted as a modify), and of end dates."""
    ended = [e for change in plan.changes for e in change.expired]
    kinds = plan.tallies()  # one pass, not four
    return {
        "create": kinds[Kind.CREATE],
        "adopt": kinds[Kind.ADOPT],
        "modify": kinds[Kind.MODIFY],
        "disable": kinds[Kind.DISABLE],
        "retry": len(plan.retries),
        "report_only": len(plan.events) - len(plan.retries),
        "batches": len(plan.batches),
        "blocked": plan.guard.blocked,
        "expired_grants": sum(1 for e in ended if e.role_id is not None),
        "expired_accounts": sum(1 for e in ended if e.role_id is None),
        "expiring_soon": len(plan.expiring),
    }


def _expiring(plan: Plan, item: Expiring) -> dict[str, Any]:
    return {
        "account": item.account,
        "role_id": item.role_id,
        "role": plan.role_name(item.role_id) if item.role_id is not None else None,
        "on": item.on.isoformat(),
        "days_left": item.days_left,
        "source": {"file": item.source.file, "line": item.source.line},
    }


def _guard(guard: Guard) -> dict[str, Any]:
    return {
        "disables": guard.disables,
        "limit": guard.limit,
        "rule": guard.rule,
        "protected_hits": list(guard.protected_hits),
        "override": guard.override,
        "blocked": guard.blocked,
        "default_limit": guard.default_limit,
        "loosened": guard.loosened,
    }


def _access_row(row: access.RoleAccess) -> dict[str, Any]:
    return {
        "role_id": row.role_id,
        "role": row.role,
        "sensitive": row.sensitive,
        "gains": list(row.gains),
        "loses": list(row.loses),
    }


def change_json(change: Change, plan: Plan | None = None) -> dict[str, Any]:
    """One change as the saved plan writes it (``why`` names roles by ``plan``'s names)."""
    document = {"source": _source(change.source), **_reviewed_json(change)}
    if change.expired and plan is not None:
        document["why"] = list(plan.why(change))
    return document


_ACTIONS = {action: action.value for action in Action}  # not an enum lookup per change
_REASONS = {reason: reason.name.lower() for reason in Reason}
_FIELDS = {field: field.value for field in Field}


def _reviewed_json(change: Change) -> dict[str, Any]:
    """One change's document without ``source`` and ``why``: what the digest covers. Every
    object's keys are built in sorted order, so the canonical text needs no sorting."""
    return {
        "account": change.account,
        "action": _ACTIONS[change.action],
        "after": _attributes_sorted(change.after),
        "before": None if change.before is None else _attributes_sorted(change.before),
        "expired": [{"on": e.on.isoformat(), "role_id": e.role_id} for e in change.expired],
        "fields": [
            {"after": f.after, "before": f.before, "field": _FIELDS[f.field]} for f in change.fields
        ],
        "reason": _REASONS[change.reason],
        "roles_added": list(change.roles_added),
        "roles_removed": list(change.roles_removed),
        "wire": dict(sorted(change.wire().items())),
    }


def _attributes_sorted(record: AccountRecord) -> dict[str, Any]:
    """``attributes_to_json(record)`` with its keys in sorted order."""
    if record.adopted:
        return {
            "adopted": True,
            "email": record.email,
            "enabled": record.enabled,
            "name": record.name,
            "role_ids": list(record.role_ids),
        }
    return {
        "email": record.email,
        "enabled": record.enabled,
        "name": record.name,
        "role_ids": list(record.role_ids),
    }


_UNREVIEWED = ("source", "why")  # provenance, and the end dates in words: shown, not compared


def reviewed(document: Mapping[str, Any]) -> dict[str, Any]:
    """A change document without its ``source`` and ``why``: what the changes digest covers."""
    return {key: value for key, value in document.items() if key not in _UNREVIEWED}


def digest(changes: Iterable[Mapping[str, Any]], retries: Iterable[Mapping[str, Any]] = ()) -> str:
    """``sha256:…`` of the change documents (without sources) as canonical JSON, and of
    the provisioning retries' event documents when there are any (a plan without retries
    keeps the digest of its changes alone)."""
    hasher = hashlib.sha256()
    hasher.update(b"[")
    for index, document in enumerate(changes):
        if index:
            hasher.update(b",")
        hasher.update(_canonical(reviewed(document)).encode("ascii"))
    hasher.update(b"]")
    _hash_retries(hasher, retries)
    return "sha256:" + hasher.hexdigest()


def _hash_retries(hasher: Any, retries: Iterable[Mapping[str, Any]]) -> None:
    """Add the retries' event documents to ``hasher`` (nothing when there are none)."""
    retried = list(retries)
    if retried:
        hasher.update(b"retries:" + _canonical(retried).encode("ascii"))


def _event_json(e: EventDecision) -> dict[str, Any]:
    return {
        "event_id": e.event_id,
        "account": e.account,
        "target": e.target,
        "target_id": e.target_id,
        "reason": e.reason,
        "created_at": e.created_at,
        "updated_at": e.updated_at,
        "attempts": e.attempts,
        "decision": e.decision.value,
        "why": e.why,
    }


def _retry_items(items: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The event documents decided "retry": provisioning calls apply makes, so reviewed."""
    return [item for item in items if item.get("decision") == Decision.RETRY.value]


def changes_digest(plan: Plan) -> str:
    """The digest of the plan's changes as saved: kept through redaction and reading."""
    kept = plan.extra.get("changes_digest")
    if isinstance(kept, str):
        return kept
    return digest(
        (change_json(change) for change in plan.changes),
        _retry_items(_event_json(e) for e in plan.events),
    )


def _source(source: Source | None) -> dict[str, Any] | None:
    if source is None:
        return None
    out: dict[str, Any] = {"file": source.file, "line": source.line}
    commit = source.commit
    if commit is not None:  # absent outside git, so such plans are unchanged
        out["commit"] = _commit_json(commit)
    return out


def _commit_json(commit: Commit) -> dict[str, Any]:
    return (
        {"uncommitted": True}
        if commit.uncommitted
        else {"hash": commit.hash, "author": commit.author, "date": commit.date}
    )


# -- reading -----------------------------------------------------------------------


def loads(text: str, *, where: str) -> Plan:
    """Read a saved plan; PlanError when it is not one this version can use.

    The change documents as written stay in ``extra["changes"]``: apply compares them,
    not what this reader makes of them, with the plan made again.
    """
    data = _document(text, where=where)
    if digest(data["changes"], _retry_items(data["events"]["items"])) != data["changes_digest"]:
        raise PlanError(
            f"{where}: its changes or provisioning retries do not match its changes_digest "
            "(the file was edited)",
            hint="apply only plans saved with `reconciler plan --out FILE`, unedited; "
            "plan again and review the new plan",
        )
    guard = data["guard"]
    state = data["state"]
    return Plan(
        lineage=state["lineage"],
        serial=state["serial"],
        state_location=state["location"],
        workspace=state["workspace"],
        input_digest=data["input_digest"],
        changes=tuple(_change_back(item) for item in data["changes"]),
        batches=tuple(tuple(b["accounts"]) for b in data["batches"]),
        roles={
            role_id: RoleInfo(id=role_id, name=info["name"], sensitive=info["sensitive"])
            for role_id, info in data["roles"].items()
        },
        managed=0,
        guard=Guard(
            disables=guard["disables"],
            limit=guard["limit"],
            rule=guard["rule"],
            protected_hits=tuple(guard["protected_hits"]),
            override=guard["override"],
            default_limit=guard.get("default_limit"),
        ),
        events=tuple(_event_back(e) for e in data["events"]["items"]),
        events_refreshed=data["events"]["refreshed"],
        outstanding=tuple(data["outstanding"]),
        notes=tuple(data["notes"]),
        input_path=data["input_path"],
        at=dt.date.fromisoformat(data["at"]) if data["at"] is not None else None,
        timezone=data["timezone"],
        notice_days=data["expiring"]["notice_days"],
        expiring=tuple(_expiring_back(item) for item in data["expiring"]["items"]),
        policy=policy_json.from_json(data["policy"]),
        extra=_extra(data),
    )


def _expiring_back(data: dict[str, Any]) -> Expiring:
    return Expiring(
        account=data["account"],
        role_id=data["role_id"],
        on=dt.date.fromisoformat(data["on"]),
        days_left=data["days_left"],
        source=Source(file=data["source"]["file"], line=data["source"]["line"]),
    )


def _extra(data: Mapping[str, Any]) -> dict[str, Any]:
    """What a reader keeps of the document beyond the plan value."""
    extra: dict[str, Any] = {
        "changes": tuple(data["changes"]),
        "changes_digest": data["changes_digest"],
    }
    if data.get("redacted"):
        extra["redacted"] = tuple(data["redacted"])
    return extra


def _document(text: str, *, where: str) -> dict[str, Any]:
    """The parsed JSON of a saved plan, checked against its format version and schema."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(
            f"{where} is not a saved plan (not JSON: {exc})",
            hint="save plans with `reconciler plan --out FILE`",
        ) from exc
    formats.check(
        data,
        kind=formats.Kind.PLAN,
        subject=where,
        newest=PLAN_FORMAT_VERSION,
        oldest=PLAN_FORMAT_VERSION,
    )
    document: dict[str, Any] = data  # an object: the version check refuses anything else
    return document


def _change_back(item: dict[str, Any]) -> Change:
    after = _record_back(item["account"], item["after"])
    assert after is not None  # the schema requires it
    return Change(
        action=Action(item["action"]),
        account=item["account"],
        reason=Reason[item["reason"].upper()],
        before=_record_back(item["account"], item["before"]),
        after=after,
        fields=tuple(
            FieldChange(field=Field(f["field"]), before=f["before"], after=f["after"])
            for f in item["fields"]
        ),
        roles_added=tuple(item["roles_added"]),
        roles_removed=tuple(item["roles_removed"]),
        source=_source_back(item["source"]),
        expired=tuple(
            Expired(role_id=e["role_id"], on=dt.date.fromisoformat(e["on"]))
            for e in item["expired"]
        ),
    )


def _record_back(account: str, data: dict[str, Any] | None) -> AccountRecord | None:
    return None if data is None else state_codec.attributes_from_json(account, data)


def _source_back(data: dict[str, Any] | None) -> Source | None:
    if data is None:
        return None
    commit = data.get("commit")
    return Source(
        file=data["file"],
        line=data["line"],
        commit=None
        if commit is None
        else Commit(
            hash=commit.get("hash", ""),
            author=commit.get("author", ""),
            date=commit.get("date", ""),
        ),
    )


def _event_back(data: dict[str, Any]) -> EventDecision:
    return EventDecision(
        event_id=data["event_id"],
        account=data["account"],
        target=data["target"],
        target_id=data.get("target_id", ""),
        reason=data["reason"],
        created_at=data["created_at"],
        updated_at=data["updated_at"],
        attempts=data["attempts"],
        decision=Decision(data["decision"]),
        why=data["why"],
    )


# -- freshness ---------------------------------------------------------------------


def refuse_redacted(plan: Plan) -> None:
    """Refuse a ``--redact`` rendering saved as a plan: its values are hashes."""
    redacted = plan.extra.get("redacted")
    if redacted:
        raise PlanError(
            f"this plan has redacted values ({', '.join(redacted)}) and cannot be applied",
            hint="apply the plan saved with `reconciler plan --out FILE` (never redacted)",
        )


def check_fresh(plan: Plan, current: State | None, input_digest: str | None) -> None:
    """Refuse ``plan`` when the state or the desired input changed since it was made.

    Also refuse a ``--redact`` rendering saved as a plan (:func:`refuse_redacted`).
    """
    refuse_redacted(plan)
    lineage = current.lineage if current and current.serial else None
    serial = current.serial if current else 0
    if plan.lineage != lineage:
        raise StalePlan(
            f"stale plan: it was made against state lineage {plan.lineage or '(none)'}, "
            f"but the state now has lineage {lineage or '(none)'}",
            hint="run `reconciler plan --out FILE` again and review the new plan",
        )
    if plan.serial != serial:
        where = f" {plan.state_location}" if plan.state_location else ""
        raise StalePlan(
            f"stale plan: it was made against state serial {plan.serial}, but the state"
            f"{where} is now at serial {serial} (something was applied since)",
            hint="run `reconciler plan --out FILE` again and review the new plan",
        )
    if input_digest is not None and plan.input_digest != input_digest:
        raise StalePlan(
            "stale plan: the desired-state files changed since the plan was made "
            f"({plan.input_digest[:19]}… → {input_digest[:19]}…)",
            hint="run `reconciler plan --out FILE` again and review the new plan",
        )
