"""The plan as Terraform-like text: ``+`` create, ``~`` modify, ``-`` disable.

Grants of ``sensitive`` roles are flagged where they appear and listed again before the
summary, as the Markdown's access table lists them first; end dates a change carries out
are named on it, and grants ending soon have a section of their own.
"""

from __future__ import annotations

import datetime as dt

from reconciler.errors import printable
from reconciler.plan import access, planfile
from reconciler.plan.model import Action, Change, Decision, Kind, Plan
from reconciler.render import common

_COLORS = {Action.CREATE: "\x1b[32m", Action.MODIFY: "\x1b[33m", Action.DISABLE: "\x1b[31m"}
_BOLD, _DIM, _RESET = "\x1b[1m", "\x1b[2m", "\x1b[0m"
_WARN = "\x1b[1;33m"


class _Paint:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, code: str, text: str) -> str:
        return f"{code}{text}{_RESET}" if self.enabled else text


def render(plan: Plan, *, now: dt.datetime, color: bool = False, show_batches: bool = False) -> str:
    """The whole plan as text; ``now`` dates the ages of provisioning events."""
    paint = _Paint(color)
    lines = _header(plan, paint)
    if plan.changes:
        lines.append("reconciler will perform the following actions:")
        lines.append("")
        for change in plan.changes:
            lines.extend(_change(plan, change, paint))
            lines.append("")
    elif plan.retries:
        lines.append("No user changes. The recorded state matches the desired state.")
        lines.append("")
    elif plan.policy_changed:
        lines.append("No account changes. Apply records the changed policy.")
        lines.append("")
    else:
        lines.append("No changes. The recorded state matches the desired state.")
        lines.append("")
    if plan.expiring:
        lines.extend(_expiring(plan))
    if plan.events or plan.events_refreshed:
        lines.extend(_events(plan, now))
    if show_batches and plan.batches:
        lines.append("createTask calls apply will send, in order:")
        changes = {c.account: c for c in plan.changes}
        for index, accounts in enumerate(plan.batches, start=1):
            counts = {a: sum(1 for x in accounts if changes[x].action is a) for a in Action}
            kinds = ", ".join(f"{a.value} {n}" for a, n in counts.items() if n)
            lines.append(f"  batch {index}/{len(plan.batches)}: {len(accounts)} users ({kinds})")
            lines.append(f"    {', '.join(accounts)}")
        lines.append("")
    lines.extend(_sensitive(plan, paint))
    for note in plan.notes:
        lines.append(f"Note: {printable(note)}")
    lines.append(paint(_BOLD, common.summary_line(plan)))
    policy = common.policy_message(plan)
    if policy is not None:
        lines.append(paint(_WARN, f"Warning: {policy}."))
    for message in common.guard_messages(plan):
        lines.append(paint(_COLORS[Action.DISABLE], f"Blocked by guard rail: {message}"))
    return "\n".join(lines) + "\n"


def _header(plan: Plan, paint: _Paint) -> list[str]:
    """The first lines: which state (a missing one loudly), which input, which changes."""
    if plan.state_exists:
        lines = [common.state_line(plan)]
    else:
        lines = [paint(_WARN, f"Warning: {common.state_line(plan)}.")]
    digest = planfile.changes_digest(plan)
    dated = common.evaluated_at(plan)
    lines.append(
        f"Input: {printable(plan.input_path or '(path not recorded)')} "
        f"({plan.input_digest[:19]}…), "
        f"changes {digest[:19]}…" + (f"; {dated}" if dated else "")
    )
    loosened = common.loosened_message(plan)
    if loosened is not None:
        lines.append(paint(_WARN, f"Warning: guard rail loosened: {loosened}."))
    lines.append("")
    lines.extend(_policy(plan, paint))
    return lines


def _policy(plan: Plan, paint: _Paint) -> list[str]:
    """Policy changes since the last apply, first: a loosening one is a warning."""
    review = plan.policy
    unrecorded = common.policy_unrecorded(plan)
    if unrecorded is not None:
        return [f"Policy: {unrecorded}.", ""]
    if review is None or not review.changes:
        return []
    lines = ["Policy changes since the last apply (apply records the new policy):"]
    for change in review.changes:
        text = printable(change.message)
        lines.append(paint(_WARN, f"  ! {text}") if change.loosened else f"    {text}")
    message = common.policy_message(plan)
    if message is not None:
        lines.append(paint(_WARN, f"Warning: {message}."))
    lines.append("")
    return lines


def _roles(plan: Plan, role_ids: tuple[str, ...], paint: _Paint, prefix: str = "") -> list[str]:
    """Role names, a sensitive one flagged (and painted on a terminal)."""
    shown = []
    for role_id in role_ids:
        name = f"{prefix}{plan.role_name(role_id)}"
        if common.is_sensitive(plan, role_id):
            name = paint(_WARN, f"{name} [sensitive]")
        shown.append(name)
    return shown


def _sensitive(plan: Plan, paint: _Paint) -> list[str]:
    """Grants of sensitive roles again, together: privilege escalations to look at first."""
    rows = [row for row in access.by_role(plan) if row.sensitive and row.gains]
    if not rows:
        return []
    lines = [paint(_WARN, "Sensitive grants (privilege escalation):")]
    lines += [f"  ! {row.role}: {printable(', '.join(row.gains))}" for row in rows]
    lines.append("")
    return lines


def _expiring(plan: Plan) -> list[str]:
    """Grants and accounts ending within the notice window, soonest first."""
    lines = [
        f"Expiring soon: {common.expiring_count(plan)} (ending within {plan.notice_days} days "
        "of the plan's date; extend them in a pull request to keep them)"
    ]
    for item in plan.expiring:
        lines.append(
            f"  {item.on} ({common.in_days(item.days_left)})  {common.expiring_what(plan, item)}"
            f"  [{item.source.render()}]"
        )
    lines.append("")
    return lines


def _change(plan: Plan, change: Change, paint: _Paint) -> list[str]:
    color = _COLORS[change.action]
    where = ""
    if change.source is not None:
        commit = change.source.commit
        where = f"  [{change.source.render()}{f', {commit.render()}' if commit else ''}]"
    adopt = " (adopt: apply checks it exists and sets every attribute)"
    out = [
        paint(_DIM, f"  # {common.change_heading(change)}{where}"),
        paint(
            color,
            f"  {change.action.symbol} account {printable(change.account)}"
            + (adopt if change.kind is Kind.ADOPT else ""),
        ),
    ]
    match change.action:
        case Action.CREATE:
            after = change.after
            out.append(f"      name:  {after.name!r}")
            out.append(f"      email: {after.email!r}")
            out.append(f"      roles: {', '.join(_roles(plan, after.role_ids, paint)) or '(none)'}")
            if change.before is not None and change.roles_removed:
                out.append(f"      (drops: {common.roles_text(plan, change.roles_removed)})")
        case Action.MODIFY if change.kind is Kind.ADOPT:
            after = change.after
            out.append(f"      name:  {after.name!r}")
            out.append(f"      email: {after.email!r}")
            out.append(f"      roles: {', '.join(_roles(plan, after.role_ids, paint)) or '(none)'}")
        case Action.MODIFY:
            for field in change.fields:
                out.append(f"      {field.field + ':':<6} {field.before!r} -> {field.after!r}")
            roles = [
                name if common.is_sensitive(plan, r) else paint(_COLORS[Action.CREATE], name)
                for r, name in zip(
                    change.roles_added, _roles(plan, change.roles_added, paint, "+"), strict=True
                )
            ]
            roles += [
                paint(_COLORS[Action.DISABLE], f"-{plan.role_name(r)}")
                for r in change.roles_removed
            ]
            if roles:
                out.append(f"      roles: {' '.join(roles)}")
        case Action.DISABLE:
            if change.before is not None:
                out.append(f"      roles lost: {common.roles_text(plan, change.before.role_ids)}")
    out.extend(f"      {why}" for why in plan.why(change))
    out.extend(
        paint(_WARN, f"      ! passes only because the policy loosened: {why}")
        for why in common.policy_uses(plan, change.account)
    )
    return out


def _events(plan: Plan, now: dt.datetime) -> list[str]:
    lines = ["Failed provisioning events:"]
    if not plan.events_refreshed:
        lines.append("  (not refreshed: planned with --no-refresh)")
    if not plan.events and plan.events_refreshed:
        lines.append("  none")
    for event in plan.events:
        marker = "↻" if event.decision is Decision.RETRY else "·"
        lines.append(f"  {marker} {common.event_line(event, now)}")
    lines.append("")
    return lines
