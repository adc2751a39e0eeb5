"""``reconciler report access``: the access review from the state and the dated plan."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli.main import main
from reconciler.plan import expiry, report
from reconciler.plan.report import Status
from reconciler.render import access
from reconciler.stores.local import LocalStore
from reconciler.stores.model import AccountRecord, State
from reconciler.values import replace
from tests.support.builders import desired, record, state, user

Golden = Callable[[str, str], None]
D = dt.date
AT = D(2026, 12, 10)
ADMIN, AGENT, REPORTING = "109", "101", "103"


def _applied(account: str, *roles: str, **changes: Any) -> AccountRecord:
    return replace(
        record(account, *roles),
        updated_at="2026-11-02T09:00:00Z",
        source_commit="1a2b3c4",
        **changes,
    )


WANTED = desired(
    user("ana", "agent", "admin", line=3, until={"admin": D(2026, 12, 20)}),
    user("ben", "agent", line=7, expires=D(2027, 1, 31)),
    user("cid", "agent", "admin", line=11, until={"admin": D(2026, 12, 1)}),
    user("dee", "reporting", line=15),
    user("eve", "agent", line=19),
)
RECORDED = state(
    _applied("ana", "agent", "admin"),
    _applied("ben", "agent"),
    _applied("cid", "agent", "admin"),
    replace(record("eve", "agent"), adopted=True, updated_at="2026-11-03T09:00:00Z"),
    _applied("gus", "reporting", enabled=False),
    _applied("hal", "agent"),
)


def _report() -> report.AccessReport:
    plan = expiry.plan_at(
        WANTED, RECORDED, at=AT, input_path="desired", state_location="state.json"
    )
    return report.build(WANTED, RECORDED, plan, commits={})


def _holders(built: report.AccessReport, role_id: str) -> dict[str, report.Holding]:
    section = next(s for s in built.roles if s.role_id == role_id)
    return {h.account: h for h in section.holders}


def test_sensitive_roles_come_first_and_hold_what_was_applied() -> None:
    """admin (sensitive) leads; each role lists the applied holders, not the YAML's."""
    built = _report()
    assert [s.role for s in built.roles] == ["admin", "agent", "reporting"]
    assert built.roles[0].sensitive is True
    admins = _holders(built, ADMIN)
    assert set(admins) == {"ana", "cid"}
    assert admins["ana"].last_applied == "2026-11-02T09:00:00Z"
    assert admins["ana"].ends == D(2026, 12, 20)
    assert admins["ana"].applied_from == "1a2b3c4"
    assert admins["ana"].source is not None
    assert admins["ana"].source.render() == "users.yaml:3"


def test_where_the_yaml_differs_the_holding_is_pending() -> None:
    """An ended grant still on the tenant, a grant not applied yet, an account removed from
    the YAML: each says what the plan of the date would do."""
    built = _report()
    assert _holders(built, ADMIN)["cid"].pending == "to be removed: expired on 2026-12-01"
    dee = _holders(built, REPORTING)["dee"]
    assert (dee.status, dee.pending) == (Status.NOT_APPLIED, "to be granted (create)")
    hal = _holders(built, AGENT)["hal"]
    assert hal.pending == "to be removed: account to be disabled (removed from the desired state)"
    assert hal.source is None
    assert built.pending == 4  # cid, dee, eve (adopt), hal


def test_adopted_accounts_are_marked_unverified() -> None:
    """An account recorded by import: adopted, unverified, never 'last applied'."""
    built = _report()
    eve = _holders(built, AGENT)["eve"]
    assert (eve.status, eve.last_applied) == (Status.ADOPTED, None)
    row = next(r for r in built.accounts if r.account == "eve")
    assert row.status is Status.ADOPTED
    assert row.pending.startswith("to be adopted")


def test_disabled_accounts_hold_no_role() -> None:
    """gus is disabled: listed as an account, in no role."""
    built = _report()
    assert all("gus" not in _holders(built, s.role_id) for s in built.roles)
    gus = next(r for r in built.accounts if r.account == "gus")
    assert (gus.status, gus.roles) == (Status.DISABLED, ())


def test_redaction_hides_names_and_emails_everywhere() -> None:
    """--redact emails,names: the values are hashes in every format."""
    built = report.redact(_report(), "emails,names")
    for rendered in (access.to_markdown(built), access.to_csv(built), access.to_json(built)):
        assert "ana@example.com" not in rendered
        assert "Ana" not in rendered
        assert "email:" in rendered


def test_csv_is_rfc4180_utf8_with_bom_and_neutralises_formulas() -> None:
    """CRLF rows, a BOM, quoted commas; a cell starting = + - @ gets a leading quote."""
    hostile = desired(
        user("-x", "agent", name="+Bob", email="=cmd@example.com"),
        user("@y", "agent", name="Zed, Jr"),
    )
    plan = expiry.plan_at(hostile, None, at=AT, state_location="s.json")
    text = access.to_csv(report.build(hostile, None, plan, commits={}))
    assert text.startswith("\ufeffrole,role_id,sensitive,account,")
    assert text.endswith("\r\n")
    assert "\n" not in text.replace("\r\n", "")
    rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline="")))
    by_account = {row[3]: row for row in rows[1:]}
    assert set(by_account) == {"'-x", "'@y"}
    assert by_account["'-x"][4:6] == ["'+Bob", "'=cmd@example.com"]
    assert by_account["'@y"][4] == "Zed, Jr"
    assert '"Zed, Jr"' in text


def test_json_names_the_state_the_date_and_every_holding() -> None:
    """JSON: at, state, summary by status, roles with holders, accounts."""
    document = json.loads(access.to_json(_report()))
    assert (document["report"], document["report_version"], document["at"]) == (
        "access",
        1,
        "2026-12-10",
    )
    assert document["summary"] == {
        "applied": 4,
        "adopted": 1,
        "disabled": 1,
        "not_applied": 1,
        "pending": 4,
    }
    admin = document["roles"][0]
    assert (admin["role"], admin["sensitive"]) == ("admin", True)
    assert [h["account"] for h in admin["holders"]] == ["ana", "cid"]


def test_markdown_golden(golden: Golden) -> None:
    """The Markdown review, as a reviewer reads it in a ticket."""
    golden("access-review.md", access.to_markdown(_report()))


# -- the command ------------------------------------------------------------------------------


ROLES_YAML = """\
version: 1
roles:
  agent: {id: "101"}
  admin: {id: "109", sensitive: true}
"""
USERS_YAML = """\
version: 1
users:
  - account: ana
    name: Ana
    email: ana@example.com
    roles: [agent, {role: admin, until: 2026-12-20}]
  - account: ben
    name: Ben
    email: ben@example.com
    roles: [agent]
"""


@pytest.fixture
def reviewed(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> Path:
    """A git work tree with a desired state and a state where ana and ben were applied."""
    clean_env.chdir(tmp_path)
    desired_dir = tmp_path / "desired"
    desired_dir.mkdir()
    (desired_dir / "roles.yaml").write_text(ROLES_YAML, encoding="utf-8")
    (desired_dir / "users.yaml").write_text(USERS_YAML, encoding="utf-8")
    for args in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=Ada", "-c", "user.email=ada@example.com", "commit", "-qm", "grant"],
    ):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)
    records = {
        "ana": _applied("ana", "agent", "admin"),
        "ben": replace(_applied("ben", "agent"), adopted=True),
    }
    LocalStore(tmp_path / "state.json").write(
        State.empty().successor(accounts={a: replace(r, account=a) for a, r in records.items()})
    )
    return tmp_path


@pytest.mark.parametrize("fmt", ["markdown", "csv", "json"])
def test_report_access_command(
    reviewed: Path, capsysbinary: pytest.CaptureFixture[bytes], fmt: str
) -> None:
    """Each format names ana's admin grant with its end date, source and commit, and ben
    as adopted, unverified."""
    code = main(
        [
            "report",
            "access",
            "desired",
            "--state",
            "state.json",
            "--format",
            fmt,
            "--at",
            "2026-12-10",
        ]
    )
    out = capsysbinary.readouterr().out.decode("utf-8")
    assert code == 0
    assert "2026-12-20" in out
    assert "adopted" in out
    if fmt != "json":
        assert "desired/users.yaml:3" in out
        assert " Ada 20" in out  # the entry's commit: short hash, author, date
    else:
        holder = json.loads(out)["roles"][0]["holders"][0]
        assert (holder["source"]["file"], holder["source"]["line"]) == ("desired/users.yaml", 3)
        assert holder["source"]["commit"]["author"] == "Ada"


def test_report_access_redacts(reviewed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--redact works as in plan."""
    code = main(
        [
            "report",
            "access",
            "desired",
            "--state",
            "state.json",
            "--redact",
            "emails",
            "--at",
            "2026-12-10",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "ana@example.com" not in out
    assert "Redacted emails" in out


@pytest.mark.parametrize(
    ("values", "line"),
    [
        (["a", "b"], "a,b\r\n"),
        (["Zed, Jr", 'say "hi"', "two\nlines"], '"Zed, Jr","say ""hi""","two\nlines"\r\n'),
        (["=1+1", "+x", "-y", "@z", "\tt", "ok=1"], "'=1+1,'+x,'-y,'@z,'\tt,ok=1\r\n"),
        (["", "=a,b"], ',"\'=a,b"\r\n'),
    ],
)
def test_csv_line_quotes_as_rfc4180_and_neutralises(values: list[str], line: str) -> None:
    """Commas, quotes and line breaks are quoted (quotes doubled); formulas neutralised."""
    assert access.csv_line(values) == line
    parsed = next(csv.reader(io.StringIO(line, newline="")))
    assert [v.removeprefix("'") for v in parsed] == values
