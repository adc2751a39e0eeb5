"""The policy in force at the last apply, as the state records it (format 3 on).

The guard rails are YAML like the users: one pull request could loosen them and use the
loosening at once (remove ``alice`` from ``protected_accounts`` and disable her). The state
keeps what the last apply ran under, so the next plan can show what the policy loosened
since, before anything else. Sensitive roles are kept by id with their names: a role renamed
to drop its ``sensitive`` flag is the same role to the tenant.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.values import field, frozen


@frozen
class PolicyRecord:
    """The guard-rail-relevant policy an apply ran under."""

    max_disable_count: int | None = None
    max_disable_percent: float | None = None
    protected_accounts: tuple[str, ...] = ()  # sorted
    max_grant_days: Mapping[str, int] = field(default_factory=dict)  # role name -> days
    sensitive_roles: Mapping[str, str] = field(default_factory=dict)  # role id -> role name
    timezone: str = "UTC"
    expiry_notice_days: int = 14


def to_json(record: PolicyRecord) -> dict[str, Any]:
    """The record as the state document holds it (keys and lists sorted)."""
    return {
        "max_disable": {"count": record.max_disable_count, "percent": record.max_disable_percent},
        "protected_accounts": list(record.protected_accounts),
        "max_grant_days": {
            role: record.max_grant_days[role] for role in sorted(record.max_grant_days)
        },
        "sensitive_roles": {
            role_id: record.sensitive_roles[role_id] for role_id in sorted(record.sensitive_roles)
        },
        "timezone": record.timezone,
        "expiry_notice_days": record.expiry_notice_days,
    }


def from_json(data: Mapping[str, Any]) -> PolicyRecord:
    """The record in ``data``, which the state schema has checked."""
    limit = data["max_disable"]
    percent = limit["percent"]
    return PolicyRecord(
        max_disable_count=limit["count"],
        max_disable_percent=None if percent is None else float(percent),
        protected_accounts=tuple(sorted(data["protected_accounts"])),
        max_grant_days=dict(data["max_grant_days"]),
        sensitive_roles=dict(data["sensitive_roles"]),
        timezone=data["timezone"],
        expiry_notice_days=data["expiry_notice_days"],
    )
