"""The plan's JSON form (``schemas/plan.schema.json``): write, read back, refuse when stale."""

from __future__ import annotations

import json
from typing import Any

from reconciler import __version__, schemas
from reconciler.desired.model import Commit, Source
from reconciler.errors import PlanError, StalePlan
from reconciler.plan import access
from reconciler.plan.model import (
    Action,
    Change,
    Decision,
    EventDecision,
    FieldChange,
    Guard,
    Plan,
    Reason,
    RoleInfo,
)
from reconciler.stores.model import AccountRecord, State


def _record(record: AccountRecord | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {
        "name": record.name,
        "email": record.email,
        "role_ids": list(record.role_ids),
        "enabled": record.enabled,
    }


def _record_back(account: str, data: dict[str, Any] | None) -> AccountRecord | None:
    if data is None:
        return None
    return AccountRecord(
        account=account,
        name=data["name"],
        email=data["email"],
        role_ids=tuple(data["role_ids"]),
        enabled=data["enabled"],
    )


def summary(plan: Plan) -> dict[str, Any]:
    """Counts by kind."""
    return {
        "create": plan.count(Action.CREATE),
        "modify": plan.count(Action.MODIFY),
        "disable": plan.count(Action.DISABLE),
        "retry": len(plan.retries),
        "report_only": len(plan.events) - len(plan.retries),
        "batches": len(plan.batches),
        "blocked": plan.guard.blocked,
    }


def to_json(plan: Plan) -> dict[str, Any]:
    """The plan as its JSON document."""
    document: dict[str, Any] = {
        "format_version": plan.format_version,
        "tool": {"name": "reconciler", "version": __version__},
        "state": {"lineage": plan.lineage, "serial": plan.serial},
        "input_digest": plan.input_digest,
        "input_path": plan.input_path,
        "summary": summary(plan),
        "guard": {
            "disables": plan.guard.disables,
            "limit": plan.guard.limit,
            "rule": plan.guard.rule,
            "protected_hits": list(plan.guard.protected_hits),
            "override": plan.guard.override,
            "blocked": plan.guard.blocked,
        },
        "access": [
            {
                "role_id": row.role_id,
                "role": row.role,
                "sensitive": row.sensitive,
                "gains": list(row.gains),
                "loses": list(row.loses),
            }
            for row in access.by_role(plan)
        ],
        "changes": [_change(change) for change in plan.changes],
        "batches": [
            {"index": index, "accounts": list(accounts)}
            for index, accounts in enumerate(plan.batches, start=1)
        ],
        "events": {
            "refreshed": plan.events_refreshed,
            "items": [
                {
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
                for e in plan.events
            ],
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


def _change(change: Change) -> dict[str, Any]:
    return {
        "action": change.action.value,
        "account": change.account,
        "reason": change.reason.name.lower(),
        "source": _source(change.source),
        "before": _record(change.before),
        "after": _record(change.after),
        "fields": [{"field": f.field, "before": f.before, "after": f.after} for f in change.fields],
        "roles_added": list(change.roles_added),
        "roles_removed": list(change.roles_removed),
        "wire": change.wire(),
    }


def _source(source: Source | None) -> dict[str, Any] | None:
    if source is None:
        return None
    out: dict[str, Any] = {"file": source.file, "line": source.line}
    commit = source.commit
    if commit is not None:  # absent outside git, so such plans are unchanged
        out["commit"] = (
            {"uncommitted": True}
            if commit.uncommitted
            else {"hash": commit.hash, "author": commit.author, "date": commit.date}
        )
    return out


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


def dumps(plan: Plan) -> str:
    """Canonical JSON text (sorted keys, stable): identical input, identical bytes."""
    return json.dumps(to_json(plan), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def loads(text: str, *, where: str) -> Plan:
    """Read a saved plan; PlanError when it is not one this version can use."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(
            f"{where} is not a saved plan (not JSON: {exc})",
            hint="save plans with `reconciler plan --out FILE`",
        ) from exc
    version = data.get("format_version") if isinstance(data, dict) else None
    if isinstance(version, int) and version > 1:
        raise PlanError(
            f"{where} was written by a newer reconciler (plan format {version})",
            hint="upgrade reconciler or plan again",
        )
    problems = schemas.check("plan", data)
    if problems:
        raise PlanError(
            f"{where} is not a valid saved plan: {problems[0]}",
            hint="save plans with `reconciler plan --out FILE`, and do not edit them",
        )
    roles = {
        role_id: RoleInfo(id=role_id, name=info["name"], sensitive=info["sensitive"])
        for role_id, info in data["roles"].items()
    }
    changes = []
    for item in data["changes"]:
        after = _record_back(item["account"], item["after"])
        assert after is not None  # the schema requires it
        changes.append(
            Change(
                action=Action(item["action"]),
                account=item["account"],
                reason=Reason[item["reason"].upper()],
                before=_record_back(item["account"], item["before"]),
                after=after,
                fields=tuple(
                    FieldChange(field=f["field"], before=f["before"], after=f["after"])
                    for f in item["fields"]
                ),
                roles_added=tuple(item["roles_added"]),
                roles_removed=tuple(item["roles_removed"]),
                source=_source_back(item["source"]),
            )
        )
    guard = data["guard"]
    return Plan(
        lineage=data["state"]["lineage"],
        serial=data["state"]["serial"],
        input_digest=data["input_digest"],
        changes=tuple(changes),
        batches=tuple(tuple(b["accounts"]) for b in data["batches"]),
        roles=roles,
        managed=0,
        guard=Guard(
            disables=guard["disables"],
            limit=guard["limit"],
            rule=guard["rule"],
            protected_hits=tuple(guard["protected_hits"]),
            override=guard["override"],
        ),
        events=tuple(
            EventDecision(
                event_id=e["event_id"],
                account=e["account"],
                target=e["target"],
                target_id=e.get("target_id", ""),
                reason=e["reason"],
                created_at=e["created_at"],
                updated_at=e["updated_at"],
                attempts=e["attempts"],
                decision=Decision(e["decision"]),
                why=e["why"],
            )
            for e in data["events"]["items"]
        ),
        events_refreshed=data["events"]["refreshed"],
        outstanding=tuple(data["outstanding"]),
        notes=tuple(data["notes"]),
        input_path=data.get("input_path", ""),
        extra={"redacted": tuple(data["redacted"])} if data.get("redacted") else {},
    )


def check_fresh(plan: Plan, current: State | None, input_digest: str | None) -> None:
    """Refuse ``plan`` when the state or the desired input changed since it was made.

    Also refuse a ``--redact`` rendering saved as a plan: its values are hashes.
    """
    redacted = plan.extra.get("redacted")
    if redacted:
        raise PlanError(
            f"this plan has redacted values ({', '.join(redacted)}) and cannot be applied",
            hint="apply the plan saved with `reconciler plan --out FILE` (never redacted)",
        )
    lineage = current.lineage if current and current.serial else None
    serial = current.serial if current else 0
    if plan.lineage != lineage:
        raise StalePlan(
            f"stale plan: it was made against state lineage {plan.lineage or '(none)'}, "
            f"but the state now has lineage {lineage or '(none)'}",
            hint="run `reconciler plan --out FILE` again and review the new plan",
        )
    if plan.serial != serial:
        raise StalePlan(
            f"stale plan: it was made against state serial {plan.serial}, but the state "
            f"is now at serial {serial} (something was applied since)",
            hint="run `reconciler plan --out FILE` again and review the new plan",
        )
    if input_digest is not None and plan.input_digest != input_digest:
        raise StalePlan(
            "stale plan: the desired-state files changed since the plan was made "
            f"({plan.input_digest[:19]}… → {input_digest[:19]}…)",
            hint="run `reconciler plan --out FILE` again and review the new plan",
        )
