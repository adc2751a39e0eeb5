"""The access review (pure): who holds which role, since when, until when, from which change.

Built from what was applied — the recorded state — and the plan of the desired state at
the review's date, so it shows the tenant as far as reconciler knows it, and marks where
the YAML differs (``pending``): a grant still to be given, a role or an account still to be
taken away. An account recorded by ``import`` is shown as adopted, attributes unverified:
nothing of it was ever checked on the tenant.

Per role (sensitive roles first, then by name): each holder, the date its record was last
written by an apply (the state keeps one date per account: every role the account holds
was last applied then or before), its end date, its ``file:line`` and the git commit of its
entry. Per account: its status and roles. Disabled accounts hold no role.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping

from reconciler.desired.commit import Commit
from reconciler.desired.model import DesiredState, Source, User
from reconciler.plan import redaction
from reconciler.plan.model import Action, Change, Kind, Plan, Reason
from reconciler.stores.model import AccountRecord, State
from reconciler.values import frozen, replace


class Status(enum.Enum):
    """What reconciler knows of an account on the tenant."""

    APPLIED = "applied"
    ADOPTED = "adopted, unverified"
    DISABLED = "disabled"
    NOT_APPLIED = "not applied yet"


@frozen
class Holding:
    """One account holding one role (or about to: status NOT_APPLIED, pending a grant)."""

    account: str
    status: Status
    last_applied: str | None  # when an apply last wrote the account's record
    ends: dt.date | None  # the first day without the role (its until, or the account's expires)
    source: Source | None  # the desired entry (None: no longer declared)
    applied_from: str | None  # the commit the account was last applied from (the state's)
    pending: str = ""  # what the plan would change about this holding ("" when nothing)


@frozen
class RoleSection:
    """One role and its holders, by account."""

    role_id: str
    role: str
    sensitive: bool
    holders: tuple[Holding, ...]


@frozen
class AccountRow:
    """One account: what is recorded of it, and what the plan would change."""

    account: str
    name: str
    email: str
    status: Status
    roles: tuple[str, ...]  # role ids it holds (none when disabled)
    expires: dt.date | None
    source: Source | None
    last_applied: str | None
    applied_from: str | None
    pending: str = ""


@frozen
class AccessReport:
    """The whole access review."""

    at: dt.date
    timezone: str
    plan: Plan  # the plan of the desired state at ``at`` (offline): state, input, names
    roles: tuple[RoleSection, ...]
    accounts: tuple[AccountRow, ...]
    redacted: tuple[str, ...] = ()

    @property
    def pending(self) -> int:
        """How many accounts the plan would change: where the YAML and the state differ."""
        return len(self.plan.changes)

    def role_name(self, role_id: str) -> str:
        """The YAML name of ``role_id`` (the id itself when unknown)."""
        return self.plan.role_name(role_id)

    def count(self, status: Status) -> int:
        """How many accounts have ``status``."""
        return sum(1 for row in self.accounts if row.status is status)


def build(
    desired: DesiredState,
    recorded: State | None,
    plan: Plan,
    *,
    commits: Mapping[tuple[str, int], Commit],
) -> AccessReport:
    """The access review of ``recorded`` against ``plan`` (made from ``desired``).

    ``commits`` are the git commits of the desired entries, by (file, line); empty
    outside git.
    """
    assert plan.at is not None, "an access review needs a plan made at a date"
    records = recorded.accounts if recorded else {}
    changes = {change.account: change for change in plan.changes}
    users = desired.users
    holders: dict[str, list[Holding]] = {}
    rows: list[AccountRow] = []
    for account in sorted(records.keys() | users.keys()):
        record, user = records.get(account), users.get(account)
        source = _source(user, commits)
        change = changes.get(account)
        status = _status(record)
        row = AccountRow(
            account=account,
            name=record.name if record else user.name if user else "",
            email=record.email if record else user.email if user else "",
            status=status,
            roles=record.role_ids if record and record.enabled else (),
            expires=user.expires if user else None,
            source=source,
            last_applied=record.updated_at if record and not record.adopted else None,
            applied_from=record.source_commit if record else None,
            pending=_account_pending(plan, change),
        )
        rows.append(row)
        if change is None and (user is None or not (user.timed or user.expires)):
            # Most accounts: nothing ends and nothing is pending, so every role they hold
            # is held the same way: one Holding shared by their roles.
            shared = _holding(plan, row, "", None, None)
            for role_id in row.roles:
                holders.setdefault(role_id, []).append(shared)
        else:
            for role_id in row.roles:
                holders.setdefault(role_id, []).append(_holding(plan, row, role_id, user, change))
        if change is not None and change.action is not Action.DISABLE:
            for role_id in _granted(change, row):
                holders.setdefault(role_id, []).append(_to_grant(plan, row, role_id, user, change))
    sections = [
        RoleSection(
            role_id=role_id,
            role=plan.role_name(role_id),
            sensitive=bool(plan.roles.get(role_id) and plan.roles[role_id].sensitive),
            holders=tuple(held),
        )
        for role_id, held in holders.items()
    ]
    sections.sort(key=lambda s: (not s.sensitive, s.role, s.role_id))
    return AccessReport(
        at=plan.at,
        timezone=plan.timezone,
        plan=plan,
        roles=tuple(sections),
        accounts=tuple(rows),
    )


def _status(record: AccountRecord | None) -> Status:
    if record is None:
        return Status.NOT_APPLIED
    if record.adopted:
        return Status.ADOPTED
    return Status.APPLIED if record.enabled else Status.DISABLED


def _source(user: User | None, commits: Mapping[tuple[str, int], Commit]) -> Source | None:
    if user is None:
        return None
    commit = commits.get((user.source.file, user.source.line))
    if commit is None:
        return user.source
    return Source(file=user.source.file, line=user.source.line, commit=commit)


def _ends(user: User | None, role_id: str, plan: Plan) -> dt.date | None:
    """The first day without ``role_id``: its grant's until or the account's expires."""
    if user is None or not (user.timed or user.expires):
        return None  # most users: no end date at all
    days = [g.until for g in user.timed if plan.role_name(role_id) == g.role]
    if user.expires is not None:
        days.append(user.expires)
    return min(days, default=None)


def _holding(
    plan: Plan, row: AccountRow, role_id: str, user: User | None, change: Change | None
) -> Holding:
    return Holding(
        account=row.account,
        status=row.status,
        last_applied=row.last_applied,
        ends=_ends(user, role_id, plan),
        source=row.source,
        applied_from=row.applied_from,
        pending=_role_pending(plan, role_id, change),
    )


def _granted(change: Change, row: AccountRow) -> tuple[str, ...]:
    """Role ids the change gives that the account does not hold as recorded."""
    held = set(row.roles)
    return tuple(role_id for role_id in change.after.role_ids if role_id not in held)


def _to_grant(
    plan: Plan, row: AccountRow, role_id: str, user: User | None, change: Change
) -> Holding:
    verb = "adopt" if change.reason is Reason.ADOPT else change.kind.value
    return Holding(
        account=row.account,
        status=Status.NOT_APPLIED if row.status is not Status.ADOPTED else row.status,
        last_applied=None,
        ends=_ends(user, role_id, plan),
        source=row.source,
        applied_from=None,
        pending=f"to be granted ({verb})",
    )


def _role_pending(plan: Plan, role_id: str, change: Change | None) -> str:
    """What the plan does to a recorded holding of ``role_id``."""
    if change is None:
        return ""
    for ended in change.expired:
        if ended.role_id in (role_id, None):
            return f"to be removed: expired on {ended.on}"
    if change.action is Action.DISABLE:
        return f"to be removed: account to be disabled ({change.reason.value})"
    if role_id in change.roles_removed:
        return "to be removed (not declared)"
    if change.reason is Reason.ADOPT:
        return "unverified: the plan adopts the account"
    return ""


def _account_pending(plan: Plan, change: Change | None) -> str:
    """What the plan does to an account, in words."""
    if change is None:
        return ""
    parts = [f"to be {_DONE[change.kind]} ({change.reason.value})"]
    if change.reason is Reason.ADOPT:
        return parts[0]  # every attribute is sent: nothing to list
    parts += [f"new {f.field}" for f in change.fields]  # values stay out: --redact
    roles = [f"+{plan.role_name(r)}" for r in change.roles_added]
    roles += [f"-{plan.role_name(r)}" for r in change.roles_removed]
    if roles and change.action is not Action.DISABLE:
        parts.append(" ".join(roles))
    return "; ".join(parts)


_DONE = {
    Kind.CREATE: "created",
    Kind.ADOPT: "adopted",
    Kind.MODIFY: "modified",
    Kind.DISABLE: "disabled",
}


def redact(report: AccessReport, spec: str) -> AccessReport:
    """The report with the ``--redact`` fields (names, emails) as stable short hashes."""
    words = redaction.parse(spec)
    fields = {redaction.FIELDS[word] for word in words}
    rows = tuple(
        replace(
            row,
            name=redaction.mask("name", row.name) if "name" in fields else row.name,
            email=redaction.mask("email", row.email) if "email" in fields else row.email,
        )
        for row in report.accounts
    )
    return replace(report, accounts=rows, redacted=words)
