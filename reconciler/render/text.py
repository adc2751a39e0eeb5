"""The plan as Terraform-like text: ``+`` create, ``~`` modify, ``-`` disable."""

from __future__ import annotations

import datetime as dt

from reconciler.plan import planfile
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
    else:
        lines.append("No changes. The recorded state matches the desired state.")
        lines.append("")
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
    for note in plan.notes:
        lines.append(f"Note: {note}")
    lines.append(paint(_BOLD, common.summary_line(plan)))
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
    lines.append(
        f"Input: {plan.input_path or '(path not recorded)'} ({plan.input_digest[:19]}…), "
        f"changes {digest[:19]}…"
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
            f"  {change.action.symbol} account {change.account}"
            + (adopt if change.kind is Kind.ADOPT else ""),
        ),
    ]
    match change.action:
        case Action.CREATE:
            after = change.after
            out.append(f"      name:  {after.name!r}")
            out.append(f"      email: {after.email!r}")
            out.append(f"      roles: {common.roles_text(plan, after.role_ids)}")
            if change.before is not None and change.roles_removed:
                out.append(f"      (drops: {common.roles_text(plan, change.roles_removed)})")
        case Action.MODIFY if change.kind is Kind.ADOPT:
            after = change.after
            out.append(f"      name:  {after.name!r}")
            out.append(f"      email: {after.email!r}")
            out.append(f"      roles: {common.roles_text(plan, after.role_ids)}")
        case Action.MODIFY:
            for field in change.fields:
                out.append(f"      {field.field + ':':<6} {field.before!r} -> {field.after!r}")
            roles = [
                paint(_COLORS[Action.CREATE], f"+{plan.role_name(r)}") for r in change.roles_added
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
