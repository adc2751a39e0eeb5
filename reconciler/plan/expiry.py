"""End dates against a date (pure): the desired state in effect that day, and the dated plan.

The planner knows nothing of dates. This step runs before it and hands it the **effective**
desired state at ``at``: a grant whose ``until`` is on or before ``at`` is left out (the plan
removes the role), an account whose ``expires`` is on or before ``at`` is declared disabled
(the plan disables it). After it, the changes that carry out an end date are marked with
it (``Change.expired``, and the reasons ``expired`` / ``grant_expired``), and the grants
and accounts ending within ``policy.expiry_notice_days`` are listed as expiring soon.

Only the accounts listed in ``DesiredState.dated`` are looked at: with no end date in the
input, the effective state is the desired state itself and nothing is copied.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from reconciler.desired.model import DesiredState, Source, User
from reconciler.plan import planner, policy_review, review
from reconciler.plan.model import Action, Change, Expired, Expiring, Plan, Reason
from reconciler.stores.model import State
from reconciler.values import field, frozen, replace


@frozen
class Ended:
    """An end date on or before the evaluated date: a role (by name) or the account."""

    account: str
    role: str | None  # None: the account's ``expires``
    on: dt.date
    source: Source


@frozen
class Evaluation:
    """The desired state in effect at ``at``, what has ended by then, and what ends soon."""

    at: dt.date
    effective: DesiredState
    ended: Mapping[str, tuple[Ended, ...]] = field(default_factory=dict)  # by account
    expiring: tuple[Expiring, ...] = ()


def evaluate(desired: DesiredState, at: dt.date) -> Evaluation:
    """The effective desired state at ``at`` (end dates are the first day without access)."""
    if not desired.dated:
        return Evaluation(at=at, effective=desired)
    users = dict(desired.users)
    ended: dict[str, tuple[Ended, ...]] = {}
    soon: list[Expiring] = []
    horizon = at + dt.timedelta(days=desired.policy.expiry_notice_days)
    for account in desired.dated:
        user = desired.users[account]
        if not user.enabled:
            continue  # declared disabled: its end dates change nothing
        if user.expires is not None and user.expires <= at:
            gone_at = Ended(account=account, role=None, on=user.expires, source=user.source)
            ended[account] = (gone_at,)
            users[account] = replace(user, enabled=False)
            continue
        gone = [g for g in user.timed if g.until <= at]
        if gone:
            ended[account] = tuple(
                Ended(account=account, role=g.role, on=g.until, source=user.source) for g in gone
            )
            users[account] = _without(user, {g.role for g in gone}, desired)
        soon.extend(_expiring(user, desired, at, horizon))
    soon.sort(key=lambda e: (e.on, e.account, e.role_id or ""))
    return Evaluation(
        at=at, effective=replace(desired, users=users), ended=ended, expiring=tuple(soon)
    )


def _without(user: User, roles: set[str], desired: DesiredState) -> User:
    """``user`` without the grants of ``roles``."""
    kept = tuple(name for name in user.roles if name not in roles)
    return replace(
        user,
        roles=kept,
        role_ids=tuple(sorted(desired.roles[name].id for name in kept)),
        timed=tuple(g for g in user.timed if g.role not in roles),
    )


def _expiring(user: User, desired: DesiredState, at: dt.date, horizon: dt.date) -> list[Expiring]:
    """The account's own end date and its grants' that fall in ``(at, horizon]``."""
    found = []
    if user.expires is not None and at < user.expires <= horizon:
        found.append(
            Expiring(
                account=user.account,
                role_id=None,
                on=user.expires,
                days_left=(user.expires - at).days,
                source=user.source,
            )
        )
    for grant in user.timed:
        if at < grant.until <= horizon:
            found.append(
                Expiring(
                    account=user.account,
                    role_id=desired.roles[grant.role].id,
                    on=grant.until,
                    days_left=(grant.until - at).days,
                    source=user.source,
                )
            )
    return found


def mark(
    changes: tuple[Change, ...], evaluation: Evaluation, desired: DesiredState
) -> tuple[Change, ...]:
    """``changes`` with each end date they carry out named on them (and in their reason)."""
    if not evaluation.ended:
        return changes
    return tuple(_marked(c, evaluation.ended.get(c.account), desired) for c in changes)


def _marked(change: Change, ended: tuple[Ended, ...] | None, desired: DesiredState) -> Change:
    if not ended or change.reason is Reason.ADOPT:
        return change  # an adopt sets what is declared in effect: nothing is "removed"
    if ended[0].role is None:
        if change.action is not Action.DISABLE:
            return change
        return replace(
            change, reason=Reason.EXPIRED, expired=(Expired(role_id=None, on=ended[0].on),)
        )
    removed = set(change.roles_removed)
    carried = tuple(
        Expired(role_id=desired.roles[e.role].id, on=e.on)
        for e in ended
        if e.role is not None and desired.roles[e.role].id in removed
    )
    if not carried:
        return change
    only_expiry = (
        change.action is Action.MODIFY
        and not change.fields
        and not change.roles_added
        and len(carried) == len(removed)
    )
    reason = Reason.GRANT_EXPIRED if only_expiry else change.reason
    return replace(change, reason=reason, expired=carried)


def plan_at(desired: DesiredState, recorded: State | None, *, at: dt.date, **options: Any) -> Plan:
    """The plan of ``desired`` in effect at ``at`` against ``recorded``.

    ``options`` are :func:`planner.plan`'s. The plan records ``at``, the policy's timezone
    and notice window, the end dates its changes carry out, the grants and accounts that
    end soon, and the review notes (:mod:`review`).
    """
    evaluation = evaluate(desired, at)
    made = planner.plan(evaluation.effective, recorded, **options)
    changes = mark(made.changes, evaluation, desired)
    policy = desired.policy
    return replace(
        made,
        changes=changes,
        policy=policy_review.review(desired, recorded, changes, at=at, managed=made.managed),
        notes=(*made.notes, *review.notes(changes)),
        at=at,
        timezone=policy.timezone,
        notice_days=policy.expiry_notice_days,
        expiring=evaluation.expiring,
    )


def ended_between(desired: DesiredState, first: dt.date, last: dt.date) -> tuple[Ended, ...]:
    """End dates in ``(first, last]``: what passed between two dates (either order)."""
    low, high = min(first, last), max(first, last)
    found = []
    for account in desired.dated:
        user = desired.users[account]
        if not user.enabled:
            continue
        if user.expires is not None and low < user.expires <= high:
            found.append(Ended(account=account, role=None, on=user.expires, source=user.source))
        found.extend(
            Ended(account=account, role=g.role, on=g.until, source=user.source)
            for g in user.timed
            if low < g.until <= high
        )
    found.sort(key=lambda e: (e.on, e.account, e.role or ""))
    return tuple(found)


def counted(ended: tuple[Ended, ...]) -> str:
    """``2 grants``, ``1 account``, ``2 grants and 1 account``."""
    grants = sum(1 for e in ended if e.role is not None)
    accounts = len(ended) - grants
    parts = []
    if grants:
        parts.append(f"{grants} grant{'s' if grants != 1 else ''}")
    if accounts:
        parts.append(f"{accounts} account{'s' if accounts != 1 else ''}")
    return " and ".join(parts) or "nothing"


def describe(ended: Ended) -> str:
    """``tenant-admin of sam.okafor on 2026-12-15`` or ``account li.wei on 2027-01-31``."""
    what = f"{ended.role} of {ended.account}" if ended.role else f"account {ended.account}"
    return f"{what} on {ended.on} ({ended.source.render()})"
