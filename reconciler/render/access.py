"""The access review as Markdown (a review ticket), CSV (a spreadsheet) or JSON.

CSV follows RFC 4180: comma-separated, CRLF line ends, fields quoted when they hold a
comma, quote or line break, UTF-8 with a byte-order mark (so spreadsheet programs read
it as UTF-8). A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return is prefixed with ``'``: a spreadsheet would run it as a formula (CSV injection),
and account names and emails may start that way. One row per grant (role, account),
then one row per account without any role, so the file holds both views.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

from reconciler.desired.model import Source
from reconciler.errors import printable
from reconciler.plan import planfile
from reconciler.plan.report import AccessReport, AccountRow, Holding, RoleSection, Status

REPORT_VERSION = 1
BOM = "\ufeff"
_FORMULA_STARTS = frozenset("=+-@\t\r")  # what a spreadsheet may run as a formula
CSV_COLUMNS = (
    "role",
    "role_id",
    "sensitive",
    "account",
    "name",
    "email",
    "status",
    "last_applied",
    "ends",
    "source",
    "commit",
    "applied_from",
    "pending",
)


def _commit(source: Source | None) -> str:
    commit = source.commit if source is not None else None
    if commit is None:
        return ""
    return "uncommitted" if commit.uncommitted else commit.render()


def _where(source: Source | None) -> str:
    return source.render() if source is not None else ""


# -- CSV ------------------------------------------------------------------------------

_CHUNK_LINES = 10_000  # lines per piece of text handed to the writer
_NEEDS_QUOTES = re.compile(r'[,"\r\n]')  # RFC 4180: such a field is quoted
_KEPT = re.compile(r"([\t\r\n])")  # kept as they are in a quoted field


def cell(value: str) -> str:
    """``value`` safe for a spreadsheet: control and bidi characters escaped (tabs and line
    breaks stay: the field is quoted), and a leading formula character — also after
    leading spaces — neutralised."""
    if not value.isprintable():
        value = "".join(
            part if _KEPT.fullmatch(part) else printable(part) for part in _KEPT.split(value)
        )
    return "'" + value if value.lstrip(" ")[:1] in _FORMULA_STARTS else value


def csv_line(values: Iterable[str]) -> str:
    """One RFC 4180 record: each value neutralised (:func:`cell`), quoted when it holds a
    comma, quote or line break (quotes doubled), CRLF at the end."""
    fields = []
    for value in values:
        safe = cell(value)
        fields.append('"' + safe.replace('"', '""') + '"' if _NEEDS_QUOTES.search(safe) else safe)
    return ",".join(fields) + "\r\n"


def to_csv(report: AccessReport) -> str:
    """The review as RFC 4180 CSV with a UTF-8 byte-order mark."""
    return "".join(csv_chunks(report))


def csv_chunks(report: AccessReport) -> Iterator[str]:
    """:func:`to_csv` in pieces, so 100k accounts are written without one huge string.

    One row per grant: the role's cells, then the holding's. Most accounts share one
    holding across their roles (nothing ends, nothing pending), so each holding is encoded
    once and reused.
    """
    rows = {row.account: row for row in report.accounts}
    tails: dict[int, str] = {}  # id(holding) -> its encoded cells, the row's end
    lines = [BOM + csv_line(CSV_COLUMNS)]
    for section in report.roles:
        head = csv_line((section.role, section.role_id, "yes" if section.sensitive else "no"))
        head = head[:-2] + ","
        for holding in section.holders:
            tail = tails.get(id(holding))
            if tail is None:
                tail = tails[id(holding)] = _holding_cells(rows[holding.account], holding)
            lines.append(head + tail)
            if len(lines) >= _CHUNK_LINES:
                yield "".join(lines)
                lines.clear()
    held = {holding.account for section in report.roles for holding in section.holders}
    for row in report.accounts:
        if row.account not in held:
            lines.append(",,," + _account_cells(row))
    yield "".join(lines)


def _holding_cells(row: AccountRow, holding: Holding) -> str:
    """The cells after the role's: the account, the holding, its source and pending."""
    return csv_line(
        (
            holding.account,
            row.name,
            row.email,
            holding.status.value,
            holding.last_applied or "",
            str(holding.ends or ""),
            _where(holding.source),
            _commit(holding.source),
            holding.applied_from or "",
            holding.pending,
        )
    )


def _account_cells(row: AccountRow) -> str:
    """The cells of an account that holds no role (the role's cells left empty)."""
    return csv_line(
        (
            row.account,
            row.name,
            row.email,
            row.status.value,
            row.last_applied or "",
            str(row.expires or ""),
            _where(row.source),
            _commit(row.source),
            row.applied_from or "",
            row.pending,
        )
    )


# -- Markdown ---------------------------------------------------------------------------


def _esc(text: str) -> str:
    """One line, no cell separator, no HTML, no code span opened (as in plan Markdown)."""
    escaped = printable(text).replace("|", "\\|").replace("`", "\\`")
    return escaped.replace("<", "&lt;").replace(">", "&gt;")


def _code(text: str) -> str:
    return "`" + printable(text).replace("`", "'").replace("|", "\\|") + "`" if text else ""


def _status(status: Status) -> str:
    return "⚠️ adopted, unverified" if status is Status.ADOPTED else status.value


def to_markdown(report: AccessReport) -> str:
    """The review as Markdown for a ticket: summary, roles (sensitive first), accounts."""
    return "".join(markdown_chunks(report))


def markdown_chunks(report: AccessReport) -> Iterator[str]:
    """:func:`to_markdown` in pieces: one per section."""
    out = [f"### reconciler access review at {report.at} ({_esc(report.timezone)})", ""]
    out += _head(report)
    yield "\n".join(out) + "\n"
    for section in report.roles:
        yield "\n".join(_section(section)) + "\n"
    yield "\n".join(_accounts(report)) + "\n"


def _head(report: AccessReport) -> list[str]:
    plan = report.plan
    where = _code(plan.state_location or "(location not recorded)")
    workspace = f" · workspace {_code(plan.workspace)}" if plan.workspace else ""
    lineage = f"lineage {_code(plan.lineage[:8])} serial {plan.serial}" if plan.lineage else "new"
    out = [
        f"State {where}{workspace} · {lineage} · input {_code(plan.input_path)} "
        f"{_code(plan.input_digest[7:19])}",
        "",
        "| | accounts |",
        "|---|---:|",
        *(f"| {status.value} | {report.count(status)} |" for status in Status),
        f"| pending changes | {report.pending} |",
        "",
    ]
    if not plan.state_exists:
        out += [f"> [!WARNING]\n> **No state at {where}**: nothing was applied there.", ""]
    if report.pending:
        out += [
            f"> [!NOTE]\n> The desired state differs from what was applied for {report.pending} "
            "account(s) (the `pending` column): the plan of this date would change them.",
            "",
        ]
    if report.count(Status.ADOPTED):
        out += [
            "> [!WARNING]\n> Adopted accounts were recorded by `reconciler import`: their "
            "roles are what the YAML declared, never verified on the tenant.",
            "",
        ]
    if report.redacted:
        out += [f"> [!NOTE]\n> Redacted {' and '.join(report.redacted)}: short hashes.", ""]
    return out


def _section(section: RoleSection) -> list[str]:
    role = f"**{_esc(section.role)}** ({_code(section.role_id)})"
    if section.sensitive:
        role = f"⚠️ {role}, sensitive"
    count = len(section.holders)
    out = [
        f"#### {role}: {count} holder{'s' if count != 1 else ''}",
        "",
        "| account | status | last applied | ends | source | commit | applied from | pending |",
        "|---|---|---|---|---|---|---|---|",
    ]
    out += [_holder_row(holding) for holding in section.holders]
    out.append("")
    return out


def _holder_row(holding: Holding) -> str:
    return (
        f"| {_code(holding.account)} | {_status(holding.status)} | {holding.last_applied or ''} | "
        f"{holding.ends or ''} | {_code(_where(holding.source))} | "
        f"{_esc(_commit(holding.source))} | {_code(holding.applied_from or '')} | "
        f"{_esc(holding.pending)} |"
    )


def _accounts(report: AccessReport) -> list[str]:
    out = [
        f"#### Accounts ({len(report.accounts)})",
        "",
        "| account | name | email | status | roles | expires | source | pending |",
        "|---|---|---|---|---|---|---|---|",
    ]
    out += [_account_row(report, row) for row in report.accounts]
    out.append("")
    return out


def _account_row(report: AccessReport, row: AccountRow) -> str:
    roles = ", ".join(report.role_name(role_id) for role_id in row.roles)
    return (
        f"| {_code(row.account)} | {_esc(row.name)} | {_esc(row.email)} | {_status(row.status)} | "
        f"{_esc(roles)} | {row.expires or ''} | {_code(_where(row.source))} | "
        f"{_esc(row.pending)} |"
    )


# -- JSON -------------------------------------------------------------------------------


def to_json(report: AccessReport) -> str:
    """The review as a JSON document (``report_version`` 1)."""
    return "".join(json_chunks(report))


def json_chunks(report: AccessReport) -> Iterator[str]:
    """:func:`to_json` in pieces: the head indented, then one line per holder and account.

    Built item by item (the C encoder, no indent inside an item): a document of 100k
    accounts never exists as one nested value in memory.
    """
    plan = report.plan
    head: dict[str, Any] = {
        "report": "access",
        "report_version": REPORT_VERSION,
        "at": report.at.isoformat(),
        "timezone": report.timezone,
        "state": {
            "location": plan.state_location,
            "workspace": plan.workspace,
            "lineage": plan.lineage,
            "serial": plan.serial,
        },
        "input": {"path": plan.input_path, "digest": plan.input_digest},
        "changes_digest": planfile.changes_digest(plan),
        "summary": {
            **{status.name.lower(): report.count(status) for status in Status},
            "pending": report.pending,
        },
    }
    if report.redacted:
        head["redacted"] = list(report.redacted)
    text = json.dumps(head, indent=2, ensure_ascii=False)
    yield text[: -len("\n}")] + ',\n  "roles": ['
    encoded: dict[int, str] = {}  # id(holding) -> its JSON: most are shared across roles
    for index, section in enumerate(report.roles):
        role = json.dumps(
            {"role_id": section.role_id, "role": section.role, "sensitive": section.sensitive},
            ensure_ascii=False,
        )
        holders = ",\n      ".join(_encoded(h, encoded) for h in section.holders)
        comma = "," if index else ""
        yield f'{comma}\n    {role[:-1]}, "holders": [\n      {holders}\n    ]}}'
    yield '\n  ],\n  "accounts": ['
    for index, row in enumerate(report.accounts):
        comma = "," if index else ""
        yield f"{comma}\n    {json.dumps(_account_json(report, row), ensure_ascii=False)}"
    yield "\n  ]\n}\n"


def _encoded(holding: Holding, encoded: dict[int, str]) -> str:
    """``holding`` as JSON, encoded once however many roles share it."""
    text = encoded.get(id(holding))
    if text is None:
        text = encoded[id(holding)] = json.dumps(_holding_json(holding), ensure_ascii=False)
    return text


def _source_json(source: Source | None) -> dict[str, Any] | None:
    if source is None:
        return None
    found: dict[str, Any] = {"file": source.file, "line": source.line}
    if source.commit is not None:
        commit = source.commit
        found["commit"] = (
            {"uncommitted": True}
            if commit.uncommitted
            else {"hash": commit.hash, "author": commit.author, "date": commit.date}
        )
    return found


def _holding_json(holding: Holding) -> dict[str, Any]:
    return {
        "account": holding.account,
        "status": holding.status.name.lower(),
        "last_applied": holding.last_applied,
        "ends": str(holding.ends) if holding.ends else None,
        "source": _source_json(holding.source),
        "applied_from": holding.applied_from,
        "pending": holding.pending or None,
    }


def _account_json(report: AccessReport, row: AccountRow) -> dict[str, Any]:
    return {
        "account": row.account,
        "name": row.name,
        "email": row.email,
        "status": row.status.name.lower(),
        "roles": [report.role_name(role_id) for role_id in row.roles],
        "expires": str(row.expires) if row.expires else None,
        "source": _source_json(row.source),
        "last_applied": row.last_applied,
        "applied_from": row.applied_from,
        "pending": row.pending or None,
    }
