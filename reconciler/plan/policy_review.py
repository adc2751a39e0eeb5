"""The desired policy against the one recorded at the last apply: what changed, what loosened,
and which changes of the same plan pass only because of the loosening.

A pure function of the desired state, the recorded state, the plan's changes and its date.
The policy is YAML like the users: a change that removes ``alice`` from
``protected_accounts`` and disables her, or raises ``max_disable`` and disables many, would
otherwise pass its own guard rail and be reviewed as an ordinary plan.
"""

from __future__ import annotations

import datetime as dt

from reconciler.desired.model import DesiredState, Policy
from reconciler.plan.model import Action, Change, PolicyChange, PolicyReview, PolicyUse
from reconciler.stores.model import State
from reconciler.stores.recorded_policy import PolicyRecord
from reconciler.values import frozen

# A limit may be looser for another size of the state than this plan's: judged at the
# plan's managed count and at two others, so "count 5" -> "percent 50" is caught either way.
_SIZES = (100, 10_000)


def record_of(desired: DesiredState) -> PolicyRecord:
    """The guard-rail-relevant policy of ``desired``, as the state records it."""
    policy = desired.policy
    return PolicyRecord(
        max_disable_count=policy.max_disable_count,
        max_disable_percent=policy.max_disable_percent,
        protected_accounts=tuple(sorted(policy.protected_accounts)),
        max_grant_days=dict(sorted(policy.max_grant_days.items())),
        sensitive_roles={
            role.id: role.name
            for role in sorted(desired.roles.values(), key=lambda r: r.id)
            if role.sensitive
        },
        timezone=policy.timezone,
        expiry_notice_days=policy.expiry_notice_days,
    )


def review(
    desired: DesiredState,
    recorded: State | None,
    changes: tuple[Change, ...],
    *,
    at: dt.date,
    managed: int,
) -> PolicyReview:
    """The policy review of a plan of ``changes`` at ``at`` against ``recorded``."""
    wanted = record_of(desired)
    before = recorded.policy if recorded is not None else None
    if before is None:
        return PolicyReview(desired=wanted, recorded=None)
    found = _compared(before, wanted, managed)
    if not any(change.loosened for change in found):
        return PolicyReview(desired=wanted, recorded=before, changes=found)
    names = {role.id: role.name for role in desired.roles.values()}
    context = _Context(before=before, wanted=wanted, desired=desired, at=at, names=names)
    uses = _uses(context, changes, managed)
    return PolicyReview(desired=wanted, recorded=before, changes=found, uses=uses)


def _limit(record: PolicyRecord, managed: int) -> int:
    policy = Policy(
        max_disable_count=record.max_disable_count,
        max_disable_percent=record.max_disable_percent,
    )
    return policy.disable_limit(managed)


def _max_disable_text(record: PolicyRecord) -> str:
    parts = []
    if record.max_disable_count is not None:
        parts.append(f"count {record.max_disable_count}")
    if record.max_disable_percent is not None:
        parts.append(f"percent {record.max_disable_percent:g}")
    return ", ".join(parts) or "default"


def _compared(before: PolicyRecord, after: PolicyRecord, managed: int) -> tuple[PolicyChange, ...]:
    """Every setting that differs, the loosening ones marked."""
    found: list[PolicyChange] = []
    if _max_disable_text(before) != _max_disable_text(after):
        looser = any(_limit(after, n) > _limit(before, n) for n in (managed, *_SIZES))
        found.append(
            _change("max_disable", _max_disable_text(before), _max_disable_text(after), looser)
        )
    for account in sorted(set(before.protected_accounts) ^ set(after.protected_accounts)):
        removed = account in before.protected_accounts
        found.append(
            _change(
                f"protected_accounts[{account}]",
                "protected" if removed else "-",
                "-" if removed else "protected",
                removed,
            )
        )
    for role in sorted(before.max_grant_days.keys() | after.max_grant_days.keys()):
        old, new = before.max_grant_days.get(role), after.max_grant_days.get(role)
        if old != new:
            looser = old is not None and (new is None or new > old)
            found.append(_change(f"max_grant_days[{role}]", _days(old), _days(new), looser))
    found.extend(_sensitive(before, after))
    if before.timezone != after.timezone:
        found.append(_change("timezone", before.timezone, after.timezone, False))
    if before.expiry_notice_days != after.expiry_notice_days:
        found.append(
            _change(
                "expiry_notice_days",
                str(before.expiry_notice_days),
                str(after.expiry_notice_days),
                False,
            )
        )
    return tuple(found)


def _sensitive(before: PolicyRecord, after: PolicyRecord) -> list[PolicyChange]:
    found = []
    for role_id in sorted(before.sensitive_roles.keys() | after.sensitive_roles.keys()):
        old, new = before.sensitive_roles.get(role_id), after.sensitive_roles.get(role_id)
        if old is not None and new is None:
            found.append(_change(f"sensitive[{old}]", "sensitive", "-", True))
        elif old is None and new is not None:
            found.append(_change(f"sensitive[{new}]", "-", "sensitive", False))
        elif old != new:
            found.append(_change(f"sensitive[{old}]", f"sensitive as {old}", f"as {new}", False))
    return found


def _days(days: int | None) -> str:
    return "-" if days is None else f"{days} days"


def _change(setting: str, before: str, after: str, loosened: bool) -> PolicyChange:
    return PolicyChange(setting=setting, before=before, after=after, loosened=loosened)


@frozen
class _Context:
    before: PolicyRecord
    wanted: PolicyRecord
    desired: DesiredState
    at: dt.date
    names: dict[str, str]  # role id -> name


def _uses(context: _Context, changes: tuple[Change, ...], managed: int) -> tuple[PolicyUse, ...]:
    """The changes that the recorded policy would have blocked or flagged."""
    before, wanted = context.before, context.wanted
    disables = [c for c in changes if c.action is Action.DISABLE]
    recorded_limit = _limit(before, managed)
    over = len(disables) > recorded_limit and len(disables) <= _limit(wanted, managed)
    found: list[PolicyUse] = []
    for change in changes:
        if change.action is Action.DISABLE:
            if change.account in before.protected_accounts and (
                change.account not in wanted.protected_accounts
            ):
                found.append(
                    _use(change, "was protected (policy.protected_accounts) at the last apply")
                )
            if over:
                found.append(
                    _use(
                        change,
                        f"one of {len(disables)} disables; the policy.max_disable of the last "
                        f"apply ({_max_disable_text(before)}) allowed {recorded_limit}",
                    )
                )
        found.extend(_grant_uses(context, change))
    return tuple(found)


def _grant_uses(context: _Context, change: Change) -> list[PolicyUse]:
    """Grants the recorded max_grant_days would refuse, or of a role that was sensitive."""
    if not change.roles_added:
        return []
    user = context.desired.users.get(change.account)
    ends = {grant.role: grant.until for grant in user.timed} if user is not None else {}
    found = []
    for role_id in change.roles_added:
        name = context.names.get(role_id, role_id)
        was = context.before.sensitive_roles.get(role_id)
        if was is not None and role_id not in context.wanted.sensitive_roles:
            found.append(_use(change, f"grants {name}, a sensitive role at the last apply"))
        days = context.before.max_grant_days.get(name)
        if days is None:
            continue
        until = ends.get(name)
        if until is None:
            found.append(
                _use(
                    change,
                    f"grants {name} with no end date; the policy.max_grant_days of the last "
                    f"apply allowed at most {days} days",
                )
            )
        elif (until - context.at).days > days:
            found.append(
                _use(
                    change,
                    f"grants {name} until {until} ({(until - context.at).days} days); the "
                    f"policy.max_grant_days of the last apply allowed at most {days}",
                )
            )
    return found


def _use(change: Change, why: str) -> PolicyUse:
    return PolicyUse(account=change.account, why=why)
