"""plan(desired, recorded) → Plan: a pure function, deterministic to the byte.

CREATE for new accounts and for re-enabling a disabled one (the API's assumed way),
MODIFY with only the changed fields, DISABLE for ``enabled: false`` and for managed
accounts removed from the YAML. Changes are ordered by action then account and cut
into the ≤100-account batches apply sends.

An account recorded by ``import`` (``adopted``: nothing of it was ever verified on the
tenant) is adopted: a MODIFY carrying every desired attribute (a DISABLE when the YAML
declares it disabled), which fails if the tenant has no such account. Adopted accounts
do not count as managed for the disable limit: a big import must not raise the limit.
"""

from __future__ import annotations

import functools
import operator

from reconciler.desired.model import DesiredState, Policy, User
from reconciler.plan import diffing
from reconciler.plan.model import (
    Action,
    Change,
    EventDecision,
    Field,
    FieldChange,
    Guard,
    Plan,
    Reason,
    RoleInfo,
    batch,
)
from reconciler.stores.model import AccountRecord, State
from reconciler.values import replace

_ORDER = (Action.CREATE, Action.MODIFY, Action.DISABLE)  # the send order
_ACCOUNT = operator.attrgetter("account")


def _target(user: User, before: AccountRecord | None) -> AccountRecord:
    return AccountRecord(
        account=user.account,
        name=user.name,
        email=user.email,
        role_ids=user.role_ids,
        enabled=True,
        last_task_id=before.last_task_id if before else None,
        created_at=before.created_at if before else None,
        updated_at=before.updated_at if before else None,
    )


def _adopt(user: User, before: AccountRecord) -> Change:
    """The change that verifies an imported account and sets what the YAML declares."""
    if not user.enabled:
        return Change(
            action=Action.DISABLE,
            account=user.account,
            reason=Reason.ADOPT,
            before=before,
            after=replace(before, enabled=False, adopted=False),
            roles_removed=before.role_ids,
            source=user.source,
        )
    after = _target(user, before)
    return Change(
        action=Action.MODIFY,
        account=user.account,
        reason=Reason.ADOPT,
        before=before,
        after=after,
        # Every attribute is sent, and every role counts as granted: the tenant's are unknown.
        fields=tuple(
            FieldChange(field=field, before=getattr(before, field), after=getattr(after, field))
            for field in Field
        ),
        roles_added=after.role_ids,
        source=user.source,
    )


def _user_change(user: User, before: AccountRecord | None) -> Change | None:
    if before is not None and before.adopted:
        return _adopt(user, before)
    if not user.enabled:
        if before is None or not before.enabled:
            return None
        return Change(
            action=Action.DISABLE,
            account=user.account,
            reason=Reason.DISABLED_IN_YAML,
            before=before,
            after=replace(before, enabled=False),
            roles_removed=before.role_ids,
            source=user.source,
        )
    if before is None:  # the first apply: every account
        return Change(
            action=Action.CREATE,
            account=user.account,
            reason=Reason.NEW,
            before=None,
            after=_target(user, None),
            roles_added=_distinct(user.role_ids),
            source=user.source,
        )
    if not before.enabled:
        return Change(
            action=Action.CREATE,
            account=user.account,
            reason=Reason.REENABLE,
            before=before,
            after=_target(user, before),
            roles_added=tuple(sorted(set(user.role_ids) - set(before.role_ids))),
            roles_removed=tuple(sorted(set(before.role_ids) - set(user.role_ids))),
            source=user.source,
        )
    return _modified(user, before)


def _modified(user: User, before: AccountRecord) -> Change | None:
    """The MODIFY of an enabled, verified account that stays enabled (None: no change)."""
    same_roles = before.role_ids == user.role_ids or sorted(before.role_ids) == list(user.role_ids)
    if same_roles and before.name == user.name and before.email == user.email:
        return None  # the common case: no record built for it
    after = AccountRecord(
        account=user.account,
        name=user.name,
        email=user.email,
        role_ids=user.role_ids,
        enabled=True,
        last_task_id=before.last_task_id,
        created_at=before.created_at,
        updated_at=before.updated_at,
    )
    fields, added, removed = diffing.field_changes(before, after)
    return Change(
        action=Action.MODIFY,
        account=user.account,
        reason=Reason.CHANGED,
        before=before,
        after=after,
        fields=fields,
        roles_added=added,
        roles_removed=removed,
        source=user.source,
    )


@functools.lru_cache(maxsize=4096)  # users share a few role combinations
def _distinct(role_ids: tuple[str, ...]) -> tuple[str, ...]:
    """``role_ids`` sorted, each once."""
    return tuple(sorted(set(role_ids)))


def changes(desired: DesiredState, recorded: State | None) -> tuple[Change, ...]:
    """Every change needed to bring ``recorded`` to ``desired``, in send order (by action,
    then account: each action's changes are sorted apart, by the account alone)."""
    accounts = recorded.accounts if recorded else {}
    by_action: dict[Action, list[Change]] = {action: [] for action in _ORDER}
    recorded_as = accounts.get
    modified = by_action[Action.MODIFY]
    for account, user in desired.users.items():
        before = recorded_as(account)
        # An enabled, verified account that stays enabled, decided here (_user_change's
        # last case): unchanged without a call, changed without its other cases.
        if before is not None and before.enabled and user.enabled and not before.adopted:
            if (
                before.role_ids == user.role_ids
                and before.name == user.name
                and before.email == user.email
            ):
                continue  # the common case
            change = _modified(user, before)
            if change is not None:
                modified.append(change)
            continue
        change = _user_change(user, before)
        if change is not None:
            by_action[change.action].append(change)
    users = desired.users
    for account, record in accounts.items():
        if record.enabled and account not in users:
            by_action[Action.DISABLE].append(
                Change(
                    action=Action.DISABLE,
                    account=account,
                    reason=Reason.REMOVED,
                    before=record,
                    after=replace(record, enabled=False, adopted=False),
                    roles_removed=record.role_ids,
                )
            )
    found: list[Change] = []
    for action in _ORDER:
        found += sorted(by_action[action], key=_ACCOUNT)
    return tuple(found)


def guard(
    desired: DesiredState,
    recorded: State | None,
    planned: tuple[Change, ...],
    allow_disables: int | None,
    *,
    managed: int | None = None,
) -> Guard:
    """The guard-rail verdict for ``planned`` (``managed``: ``managed_count(recorded)``
    when the caller has it already)."""
    managed = managed_count(recorded) if managed is None else managed
    disabled = [c.account for c in planned if c.action is Action.DISABLE]
    policy = desired.policy
    return Guard(
        disables=len(disabled),
        limit=policy.disable_limit(managed),
        rule=policy.describe_limit(managed),
        protected_hits=tuple(a for a in disabled if a in policy.protected_accounts),
        override=allow_disables,
        default_limit=Policy().disable_limit(managed),
    )


def managed_count(recorded: State | None) -> int:
    """Enabled accounts the state knows as applied: adopted (unverified) ones do not count."""
    accounts = recorded.accounts.values() if recorded else ()
    return sum(1 for r in accounts if r.enabled and not r.adopted)


def roles_index(desired: DesiredState, recorded: State | None) -> dict[str, RoleInfo]:
    """Role id → how to show it, for every id the plan may mention."""
    index = {
        role.id: RoleInfo(id=role.id, name=role.name, sensitive=role.sensitive)
        for role in desired.roles.values()
    }
    recorded_ids = {
        role_id
        for record in (recorded.accounts.values() if recorded else ())
        for role_id in record.role_ids
    }
    for role_id in recorded_ids - index.keys():
        index[role_id] = RoleInfo(id=role_id, name=role_id)
    return dict(sorted(index.items()))


def plan(
    desired: DesiredState,
    recorded: State | None,
    *,
    allow_disables: int | None = None,
    events: tuple[EventDecision, ...] = (),
    events_refreshed: bool = False,
    input_path: str = "",
    state_location: str = "",
    workspace: str | None = None,
) -> Plan:
    """The plan that brings ``recorded`` (read from ``state_location``) to ``desired``."""
    planned = changes(desired, recorded)
    notes = []
    outstanding = tuple(b.batch_id for b in recorded.pending) if recorded else ()
    if outstanding:
        notes.append(
            f"{len(outstanding)} batch(es) of an earlier apply have no recorded result; "
            "`reconciler refresh` (or apply) finishes them first, which changes the state "
            "this plan was made against"
        )
    skipped = sorted(
        u.account
        for u in desired.users.values()
        if not u.enabled and (recorded is None or u.account not in recorded.accounts)
    )
    if skipped:
        notes.append(
            f"{len(skipped)} account(s) marked enabled: false are not managed yet; "
            "nothing is sent for them"
        )
    managed = managed_count(recorded)  # one pass over the accounts, not two
    return Plan(
        lineage=recorded.lineage if recorded and recorded.serial else None,
        serial=recorded.serial if recorded else 0,
        input_digest=desired.digest,
        changes=planned,
        batches=batch(planned),
        roles=roles_index(desired, recorded),
        managed=managed,
        guard=guard(desired, recorded, planned, allow_disables, managed=managed),
        events=events,
        events_refreshed=events_refreshed,
        outstanding=outstanding,
        notes=tuple(notes),
        input_path=input_path,
        state_location=state_location,
        workspace=workspace,
    )
