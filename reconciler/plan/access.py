"""Access changes per role: who gains and who loses each role (for review).

Grants of ``sensitive`` roles are privilege escalations and come first.
"""

from __future__ import annotations

from reconciler.plan.model import Action, Plan
from reconciler.values import frozen


@frozen
class RoleAccess:
    """One role's gains and losses in a plan."""

    role_id: str
    role: str
    sensitive: bool
    gains: tuple[str, ...]
    loses: tuple[str, ...]


def by_role(plan: Plan) -> tuple[RoleAccess, ...]:
    """Per role: accounts that gain it and accounts that lose it; sensitive grants first."""
    # Grouped by the whole tuple of role ids first: accounts share a few combinations.
    added_by: dict[tuple[str, ...], list[str]] = {}
    removed_by: dict[tuple[str, ...], list[str]] = {}
    for change in plan.changes:
        if change.action is Action.DISABLE:
            removed: tuple[str, ...] = change.before.role_ids if change.before else ()
            added: tuple[str, ...] = ()
        else:
            added, removed = change.roles_added, change.roles_removed
        if added:
            added_by.setdefault(added, []).append(change.account)
        if removed:
            removed_by.setdefault(removed, []).append(change.account)
    gains, loses = _per_role(added_by), _per_role(removed_by)
    rows = []
    for role_id in sorted(set(gains) | set(loses)):
        info = plan.roles.get(role_id)
        rows.append(
            RoleAccess(
                role_id=role_id,
                role=info.name if info else role_id,
                sensitive=bool(info and info.sensitive),
                gains=tuple(sorted(gains.get(role_id, ()))),
                loses=tuple(sorted(loses.get(role_id, ()))),
            )
        )
    rows.sort(key=lambda r: (not (r.sensitive and r.gains), not r.sensitive, r.role))
    return tuple(rows)


def _per_role(grouped: dict[tuple[str, ...], list[str]]) -> dict[str, list[str]]:
    """Role id → the accounts of every combination holding it."""
    per: dict[str, list[str]] = {}
    for role_ids, accounts in grouped.items():
        for role_id in role_ids:
            per.setdefault(role_id, []).extend(accounts)
    return per
