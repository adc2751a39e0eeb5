"""Small pieces every rendering shares."""

from __future__ import annotations

import datetime as dt

from reconciler.errors import printable
from reconciler.plan.model import Change, EventDecision, Expiring, Kind, Plan

VERB = {
    Kind.CREATE: "created",
    Kind.ADOPT: "adopted",
    Kind.MODIFY: "modified",
    Kind.DISABLE: "disabled",
}


def roles_text(plan: Plan, role_ids: tuple[str, ...]) -> str:
    """Role ids as their names, comma-separated."""
    return ", ".join(plan.role_name(role_id) for role_id in role_ids) or "(none)"


def summary_line(plan: Plan) -> str:
    """``Plan: 2 to create, 1 to modify, 0 to disable, 1 event to retry; 1 batch.``

    Adopts are counted apart (``1 to adopt``), and only named when there are some.
    """
    retries = len(plan.retries)
    tallies = plan.tallies()
    parts = [f"{tallies[Kind.CREATE]} to create"]
    if tallies[Kind.ADOPT]:
        parts.append(f"{tallies[Kind.ADOPT]} to adopt")
    parts += [
        f"{tallies[Kind.MODIFY]} to modify",
        f"{tallies[Kind.DISABLE]} to disable",
    ]
    if plan.events:
        parts.append(f"{retries} event{'s' if retries != 1 else ''} to retry")
    batches = len(plan.batches)
    return f"Plan: {', '.join(parts)}; {batches} batch{'es' if batches != 1 else ''}."


def age(timestamp: str, now: dt.datetime) -> str:
    """A short age like ``3d`` or ``5h`` of an RFC 3339 time at ``now`` ('?' when unparsable)."""
    try:
        then = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "?"
    if then.tzinfo is None:
        then = then.replace(tzinfo=dt.UTC)
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def event_line(event: EventDecision, now: dt.datetime, max_attempts_note: str = "") -> str:
    """One provisioning event as a line of text, its age taken at ``now``."""
    # Every field but the decision is the API's text: one line, whatever it holds.
    return (
        f"{printable(event.event_id)} {printable(event.account)} → {printable(event.target)}: "
        f"{printable(event.reason)} (age {age(event.created_at, now)}, attempts "
        f"{event.attempts}{max_attempts_note}) — {event.decision.value}: {printable(event.why)}"
    )


def loosened_message(plan: Plan) -> str | None:
    """Why a plan with many disables passes: the policy loosened the guard rail (or None)."""
    guard = plan.guard
    if not guard.loosened:
        return None
    return (
        f"{guard.disables} disables pass only because {guard.rule} allows {guard.limit}; "
        f"the default guard rail would allow {guard.default_limit} and block this plan. "
        "Check that loosening policy.max_disable was intended and reviewed"
    )


def policy_message(plan: Plan) -> str | None:
    """What the policy loosened since the last apply and what depends on it (or None)."""
    review = plan.policy
    if review is None or not review.loosened:
        return None
    loosened = [change for change in review.changes if change.loosened]
    message = (
        f"the policy loosened since the last apply ({len(loosened)} setting"
        f"{'s' if len(loosened) != 1 else ''}: "
        + ", ".join(printable(f"policy.{change.setting}") for change in loosened)
        + ")"
    )
    dependent = sorted({use.account for use in review.uses})
    if not dependent:
        return message + "; no change of this plan depends on it"
    shown = ", ".join(printable(account) for account in dependent[:5])
    more = f" and {len(dependent) - 5} more" if len(dependent) > 5 else ""
    verb = "passes" if len(dependent) == 1 else "pass"
    return (
        f"{message}; {len(dependent)} change{'s' if len(dependent) != 1 else ''} of this plan "
        f"{verb} only because of it: {shown}{more}"
    )


def policy_unrecorded(plan: Plan) -> str | None:
    """Why a plan records a policy although nothing differs: the state has none (or None)."""
    review = plan.policy
    if review is None or review.recorded is not None or not plan.state_exists:
        return None
    return (
        "the state records no policy yet (it was written before state format 3, or by "
        "import); apply records this one, and later plans compare with it"
    )


def policy_uses(plan: Plan, account: str) -> tuple[str, ...]:
    """Why ``account``'s change passes only because the policy loosened (one line each)."""
    if plan.policy is None:
        return ()
    return tuple(printable(why) for why in plan.policy.uses_of(account))


def guard_messages(plan: Plan) -> list[str]:
    """Why the plan is blocked (empty when it is not)."""
    guard, out = plan.guard, []
    if guard.protected_hits:
        out.append(
            "would disable protected account(s) "
            f"{', '.join(guard.protected_hits)}; remove them from policy.protected_accounts "
            "in a reviewed change first (this guard rail has no override)"
        )
    if guard.over_limit:
        override = (
            f" --allow-disables {guard.override} does not match the plan's {guard.disables}."
            if guard.override is not None
            else ""
        )
        out.append(
            f"would disable {guard.disables} accounts, over the limit of {guard.limit} "
            f"({guard.rule}).{override} If intended, run again with "
            f"--allow-disables {guard.disables}"
        )
    return out


def change_heading(change: Change) -> str:
    """``alice will be created (new account)``."""
    return f"{printable(change.account)} will be {VERB[change.kind]} ({change.reason.value})"


def location(plan: Plan) -> str:
    """Where the plan's state is: the location and, for PostgreSQL, the workspace."""
    where = printable(plan.state_location or "(location not recorded)")
    return f"{where} (workspace {printable(plan.workspace)})" if plan.workspace else where


def state_line(plan: Plan) -> str:
    """The state the plan was made against: location, workspace, lineage and serial."""
    if not plan.state_exists:
        return f"no state at {location(plan)}: every declared account is new"
    workspace = f"workspace {printable(plan.workspace)}, " if plan.workspace else ""
    where = printable(plan.state_location or "(location not recorded)")
    return f"State: {where} ({workspace}lineage {plan.lineage}, serial {plan.serial})"


def expiring_count(plan: Plan) -> str:
    """``3 grants``, ``1 account``, ``2 grants, 1 account``."""
    grants = sum(1 for item in plan.expiring if item.role_id is not None)
    accounts = len(plan.expiring) - grants
    parts = []
    if grants or not accounts:
        parts.append(f"{grants} grant{'s' if grants != 1 else ''}")
    if accounts:
        parts.append(f"{accounts} account{'s' if accounts != 1 else ''}")
    return ", ".join(parts)


def expiring_what(plan: Plan, item: Expiring) -> str:
    """``tenant-admin of sam.okafor`` or ``account li.wei``."""
    if item.role_id is None:
        return f"account {printable(item.account)}"
    return f"{plan.role_name(item.role_id)} of {printable(item.account)}"


def in_days(days: int) -> str:
    """``in 1 day``, ``in 5 days``."""
    return f"in {days} day{'s' if days != 1 else ''}"


def evaluated_at(plan: Plan) -> str:
    """``end dates at 2026-12-10 (Europe/Berlin)``; empty for a plan made without a date."""
    if plan.at is None:
        return ""
    return f"end dates at {plan.at} ({plan.timezone})"


def is_sensitive(plan: Plan, role_id: str) -> bool:
    """Whether granting ``role_id`` is a privilege escalation."""
    info = plan.roles.get(role_id)
    return bool(info and info.sensitive)
