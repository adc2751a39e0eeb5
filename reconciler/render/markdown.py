"""The plan as Markdown for a pull-request comment.

Opens with the state the plan was made against (a missing state loudly), the summary
table and access changes per role (sensitive grants first), then the changes in
collapsed sections. GitHub refuses comments over 65,536
characters, so long lists are cut to fewer rows until the comment fits.
"""

from __future__ import annotations

import datetime as dt

from reconciler.errors import printable
from reconciler.plan import access, planfile
from reconciler.plan.model import Action, Change, Decision, Kind, Plan, Reason
from reconciler.render import common

GITHUB_COMMENT_LIMIT = 65_536
_ROW_BUDGETS = (None, 500, 200, 50, 10, 0)
_ICON = {Kind.CREATE: "➕", Kind.ADOPT: "📥", Kind.MODIFY: "✏️", Kind.DISABLE: "⛔"}


def render(
    plan: Plan,
    *,
    now: dt.datetime,
    show_batches: bool = False,
    limit: int = GITHUB_COMMENT_LIMIT,
) -> str:
    """The whole plan as Markdown, under ``limit`` characters; ``now`` dates event ages."""
    text = ""
    for rows in _ROW_BUDGETS:
        text = _render(plan, now=now, show_batches=show_batches, max_rows=rows)
        if len(text) <= limit:
            return text
    return text[: limit - 200] + "\n\n… (cut to fit the comment limit; see the saved plan)\n"


def _esc(text: str) -> str:
    """``text`` for a table cell or a line: one line (control and bidi characters escaped),
    no cell separator, no HTML, no code span opened."""
    escaped = printable(text).replace("|", "\\|").replace("`", "\\`")
    return escaped.replace("<", "&lt;").replace(">", "&gt;")


def _code(text: str) -> str:
    """``text`` as inline code, one line (a backtick inside could end the span early, a
    pipe end a table cell: GitHub reads ``\\|`` as a pipe even in code)."""
    return "`" + printable(text).replace("`", "'").replace("|", "\\|") + "`"


def _cut(items: list[str], max_rows: int | None, what: str) -> list[str]:
    if max_rows is None or len(items) <= max_rows:
        return items
    return [*items[:max_rows], f"| … | {len(items) - max_rows} more {what} in the saved plan | | |"]


def _names(accounts: tuple[str, ...], max_rows: int | None) -> str:
    shown = list(accounts) if max_rows is None else list(accounts[: max(max_rows, 3)])
    more = len(accounts) - len(shown)
    return ", ".join(_code(a) for a in shown) + (f" and {more} more" if more > 0 else "")


def _render(plan: Plan, *, now: dt.datetime, show_batches: bool, max_rows: int | None) -> str:
    out: list[str] = []
    headline = common.summary_line(plan).removeprefix("Plan: ").rstrip(".")
    out.append(f"### reconciler plan: {headline}")
    out.append("")
    out.extend(_state(plan))
    loosened = common.loosened_message(plan)
    if loosened is not None:
        out.append(f"> [!WARNING]\n> **Guard rail loosened:** {_esc(loosened)}.")
        out.append("")
    out.extend(_policy(plan, max_rows))
    if plan.guard.blocked:
        for message in common.guard_messages(plan):
            out.append(f"> [!CAUTION]\n> **Blocked by guard rail:** {_esc(message)}")
            out.append("")
    out.append("| | accounts |")
    out.append("|---|---:|")
    tallies = plan.tallies()
    for kind in Kind:
        if kind is not Kind.ADOPT or tallies[kind]:
            out.append(f"| {_ICON[kind]} {kind.value} | {tallies[kind]} |")
    if plan.events:
        out.append(f"| 🔁 provisioning retries | {len(plan.retries)} |")
        out.append(f"| 👀 events reported only | {len(plan.events) - len(plan.retries)} |")
    out.append(f"| 📦 createTask batches | {len(plan.batches)} |")
    out.append("")
    out.extend(_access(plan, max_rows))
    if plan.expiring:
        out.extend(_expiring(plan, max_rows))
    if plan.changes:
        out.extend(_changes(plan, max_rows))
    if plan.events:
        out.extend(_events(plan, max_rows, now))
    if show_batches and plan.batches:
        out.append(f"<details><summary>createTask batches ({len(plan.batches)})</summary>")
        out.append("")
        rows = [
            f"{i}. {len(accounts)} users: {_names(accounts, max_rows)}"
            for i, accounts in enumerate(plan.batches, start=1)
        ]
        out.extend(rows if max_rows is None else rows[: max(max_rows, 1)])
        out.append("")
        out.append("</details>")
        out.append("")
    for note in plan.notes:
        out.append(f"> [!NOTE]\n> {_esc(note)}")
        out.append("")
    if not plan.has_changes:
        out.append("No changes. The recorded state matches the desired state.")
        out.append("")
    elif plan.policy_changed and not plan.changes and not plan.retries:
        out.append("No account changes. Apply records the changed policy.")
        out.append("")
    return "\n".join(out)


def _policy(plan: Plan, max_rows: int | None) -> list[str]:
    """Policy changes since the last apply, before the summary; loosening ones warned."""
    review = plan.policy
    unrecorded = common.policy_unrecorded(plan)
    if unrecorded is not None:
        return [f"> [!NOTE]\n> **Policy:** {_esc(unrecorded)}.", ""]
    if review is None or not review.changes:
        return []
    out = []
    message = common.policy_message(plan)
    if message is not None:
        out.append(f"> [!WARNING]\n> **Policy loosened:** {_esc(message)}.")
        out.append("")
    out.append("**Policy changes since the last apply** (apply records the new policy):")
    out.append("")
    for change in review.changes:
        mark = "⚠️ " if change.loosened else ""
        out.append(f"- {mark}{_esc(change.message)}")
    uses = list(review.uses if max_rows is None else review.uses[: max(max_rows, 3)])
    for use in uses:
        out.append(f"  - ⚠️ {_code(use.account)} passes only because of it: {_esc(use.why)}")
    if len(review.uses) > len(uses):
        out.append(f"  - … {len(review.uses) - len(uses)} more in the saved plan")
    out.append("")
    return out


def _state(plan: Plan) -> list[str]:
    """Which state, input and changes: a state that does not exist is a warning."""
    where = _code(plan.state_location or "(location not recorded)")
    workspace = f" · workspace {_code(plan.workspace)}" if plan.workspace else ""
    out = []
    if not plan.state_exists:
        out += [
            f"> [!WARNING]\n> **No state at {where}**{workspace}: every declared account is new.",
            "",
        ]
    lineage = f"lineage {_code(plan.lineage[:8])} serial {plan.serial}" if plan.lineage else "new"
    dated = f" · end dates at {_code(str(plan.at))} ({_esc(plan.timezone)})" if plan.at else ""
    out += [
        f"State {where}{workspace} · {lineage} · input {_code(plan.input_digest[7:19])} · "
        f"changes {_code(planfile.changes_digest(plan)[7:19])}{dated} · "
        f"disables {plan.guard.disables}/{plan.guard.limit} allowed",
        "",
    ]
    return out


def _expiring(plan: Plan, max_rows: int | None) -> list[str]:
    """Grants and accounts that end soon: their owners extend them in a pull request."""
    out = [
        f"#### Expiring soon: {common.expiring_count(plan)}",
        "",
        f"_Ending within {plan.notice_days} days of {plan.at}; extend them in a pull request "
        "to keep them._",
        "",
        "| ends | in | account | grant | source |",
        "|---|---|---|---|---|",
    ]
    rows = [
        f"| {item.on} | {common.in_days(item.days_left)} | {_code(item.account)} | "
        f"{_esc(plan.role_name(item.role_id)) if item.role_id else '(the account)'} | "
        f"{_code(item.source.render())} |"
        for item in plan.expiring
    ]
    out.extend(_cut(rows, max_rows, "grants"))
    out.append("")
    return out


def _access(plan: Plan, max_rows: int | None) -> list[str]:
    rows = access.by_role(plan)
    if not rows:
        return []
    out = ["#### Access changes by role", "", "| role | gains | loses |", "|---|---|---|"]
    lines = []
    for row in rows:
        role = f"**{_esc(row.role)}**"
        if row.sensitive:
            role = f"⚠️ {role} (sensitive{': privilege escalation' if row.gains else ''})"
        lines.append(
            f"| {role} | {_names(row.gains, max_rows) or '—'} | "
            f"{_names(row.loses, max_rows) or '—'} |"
        )
    out.extend(_cut(lines, max_rows, "roles"))
    out.append("")
    return out


def _change_row(plan: Plan, change: Change) -> str:
    match change.action:
        case Action.CREATE:
            detail = (
                f"name {_esc(change.after.name)!r}, email {_esc(change.after.email)}, "
                f"roles {_esc(common.roles_text(plan, change.after.role_ids))}"
            )
        case Action.MODIFY if change.kind is Kind.ADOPT:
            detail = (
                f"adopt (unverified: apply checks it exists and sets all): "
                f"name {_esc(change.after.name)!r}, email {_esc(change.after.email)}, "
                f"roles {_esc(common.roles_text(plan, change.after.role_ids))}"
            )
        case Action.MODIFY:
            parts = [
                f"{f.field}: {_esc(str(f.before))} → {_esc(str(f.after))}" for f in change.fields
            ]
            parts += [f"+{_esc(plan.role_name(r))}" for r in change.roles_added]
            parts += [f"−{_esc(plan.role_name(r))}" for r in change.roles_removed]
            detail = "; ".join(parts)
        case Action.DISABLE if change.reason is Reason.ADOPT:
            detail = "imported, unverified; declared enabled: false (the disable checks it exists)"
        case Action.DISABLE if change.expired:
            detail = "account expired"
        case Action.DISABLE:
            detail = change.reason.value
    for why in plan.why(change):
        detail += f"; {_esc(why)}"
    for why in common.policy_uses(plan, change.account):
        detail += f"; ⚠️ passes only because the policy loosened: {_esc(why)}"
    source = _source(change)
    return f"| {_ICON[change.kind]} | {_code(change.account)} | {detail} | {source} |"


def _source(change: Change) -> str:
    if change.source is None:
        return ""
    where, commit = _code(change.source.render()), change.source.commit
    if commit is None:
        return where
    if commit.uncommitted:
        return f"{where} · uncommitted"
    return f"{where} · {_code(commit.hash)} {_esc(commit.author)}, {_esc(commit.date[:10])}"


def _changes(plan: Plan, max_rows: int | None) -> list[str]:
    out = [
        f"<details><summary>Changes ({len(plan.changes)})</summary>",
        "",
        "| | account | change | source |",
        "|---|---|---|---|",
    ]
    out.extend(_cut([_change_row(plan, c) for c in plan.changes], max_rows, "changes"))
    out.extend(["", "</details>", ""])
    return out


def _events(plan: Plan, max_rows: int | None, now: dt.datetime) -> list[str]:
    out = [
        f"<details><summary>Failed provisioning events ({len(plan.events)})</summary>",
        "",
    ]
    if not plan.events_refreshed:
        out.append("_Not refreshed: planned with `--no-refresh`._")
        out.append("")
    if plan.events:
        out.extend(
            [
                "| decision | event | account | target | reason | age | attempts | why |",
                "|---|---|---|---|---|---|---:|---|",
            ]
        )
        rows = [
            f"| {'🔁 retry' if e.decision is Decision.RETRY else '👀 report only'} | "
            f"{_code(e.event_id)} | {_code(e.account)} | {_esc(e.target)} | {_esc(e.reason)} | "
            f"{common.age(e.created_at, now)} | {e.attempts} | {_esc(e.why)} |"
            for e in plan.events
        ]
        out.extend(_cut(rows, max_rows, "events"))
    out.extend(["", "</details>", ""])
    return out
