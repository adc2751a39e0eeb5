"""End dates in the desired state: syntax, located errors, timezones, and the date rules
(``validate``: past end dates are warnings, ``policy.max_grant_days`` errors)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli.main import main
from reconciler.desired import dates, validation
from reconciler.desired.model import Policy, TimedGrant
from reconciler.errors import Severity, ValidationFailed
from reconciler.problems import Problem

ROLES = """\
version: 1
roles:
  agent: {id: "101"}
  admin: {id: "109", sensitive: true}
"""
AT = dt.date(2026, 12, 10)
NOON = dt.datetime(2026, 12, 10, 12, 0, tzinfo=dt.UTC)


def _write(tmp_path: Path, users: str, policy: str = "") -> Path:
    (tmp_path / "roles.yaml").write_text(ROLES, encoding="utf-8")
    (tmp_path / "users.yaml").write_text("version: 1\nusers:\n" + users, encoding="utf-8")
    if policy:
        (tmp_path / "policy.yaml").write_text("version: 1\npolicy:\n" + policy, encoding="utf-8")
    return tmp_path


def _user(extra: str = "", roles: str = "[agent]") -> str:
    return (
        "  - account: li.wei\n    name: Li Wei\n    email: li.wei@example.com\n"
        f"    roles: {roles}\n{extra}"
    )


def _problems(path: Path, at: dt.date | None = AT) -> list[Problem]:
    today = dates.Today(now=NOON, given=at) if at else None
    try:
        desired = validation.load_desired(path, today=today)
    except ValidationFailed as failed:
        return list(failed.problems)
    return list(desired.warnings)


def _shown(problems: list[Problem]) -> list[str]:
    return [f"{Path(p.file).name}:{p.line}:{p.col}: {p.severity}: {p.message}" for p in problems]


# -- syntax ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("roles", "extra"),
    [
        pytest.param("[agent, {role: admin, until: 2027-01-15}]", "", id="flow-date"),
        pytest.param('[agent, {role: admin, until: "2027-01-15"}]', "", id="quoted"),
        pytest.param(
            "\n      - agent\n      - role: admin\n        until: 2027-01-15", "", id="block"
        ),
    ],
)
def test_a_grant_with_until_and_plain_names_mix(tmp_path: Path, roles: str, extra: str) -> None:
    """A role is a name or {role, until}, flow or block, a YAML date or its quoted text."""
    desired = validation.load_desired(_write(tmp_path, _user(extra, roles)))
    user = desired.users["li.wei"]
    assert user.roles == ("agent", "admin")
    assert user.role_ids == ("101", "109")
    assert user.timed == (TimedGrant(role="admin", until=dt.date(2027, 1, 15)),)
    assert desired.dated == ("li.wei",)


def test_expires_is_read_and_plain_users_are_not_dated(tmp_path: Path) -> None:
    """``expires`` is the account's end date; a user without dates is not in ``dated``."""
    users = _user("    expires: 2027-01-31\n") + _user().replace("li.wei", "ana.b")
    desired = validation.load_desired(_write(tmp_path, users))
    assert desired.users["li.wei"].expires == dt.date(2027, 1, 31)
    assert desired.users["ana.b"].expires is None
    assert desired.dated == ("li.wei",)


@pytest.mark.parametrize(
    ("extra", "roles", "expected"),
    [
        pytest.param(
            '    expires: "2027-02-30"\n',
            "[agent]",
            "users.yaml:7:14: error: expires '2027-02-30' is not a date: there is no such day "
            "(write YYYY-MM-DD)",
            id="impossible-quoted",
        ),
        pytest.param(
            "",
            '[{role: agent, until: "2027-13-01"}]',
            "users.yaml:6:34: error: until '2027-13-01' is not a date: there is no such day "
            "(write YYYY-MM-DD)",
            id="impossible-until",
        ),
        pytest.param(
            "    expires: 2027-02-30\n",
            "[agent]",
            "users.yaml:7:14: error: cannot read '2027-02-30' as a date: there is no such day "
            "(a date is YYYY-MM-DD); quote it to keep it as text",
            id="impossible-yaml-date",
        ),
        pytest.param(
            "    expires: 2027-01-31T12:00:00Z\n",
            "[agent]",
            "users.yaml:7:14: error: '2027-01-31T12:00:00+00:00' is not a date: write YYYY-MM-DD "
            "(a day, without a time), e.g. 2026-12-15",
            id="date-and-time",
        ),
        pytest.param(
            "    expires: tomorrow\n",
            "[agent]",
            "users.yaml:7:14: error: 'tomorrow' is not a date: write YYYY-MM-DD (a day, without a "
            "time), e.g. 2026-12-15",
            id="word",
        ),
        pytest.param(
            "    expires: 20270131\n",
            "[agent]",
            "users.yaml:7:14: error: 20270131 is not a date: write YYYY-MM-DD, e.g. 2026-12-15",
            id="number",
        ),
        pytest.param(
            "",
            "[{role: agent}]",
            "users.yaml:6:13: error: 'until' is required",
            id="grant-without-until",
        ),
        pytest.param(
            "",
            "[{role: agent, until: 2027-01-01, why: ticket}]",
            "users.yaml:6:46: error: unknown key 'why' (allowed: role, until)",
            id="grant-unknown-key",
        ),
        pytest.param(
            "",
            "[7]",
            "users.yaml:6:13: error: a role is a role name, or {role: NAME, until: YYYY-MM-DD} "
            "(got 7)",
            id="number-role",
        ),
        pytest.param(
            "",
            "[agent, {role: agent, until: 2027-01-01}]",
            "users.yaml:6:20: error: role 'agent' is listed twice",
            id="listed-twice",
        ),
    ],
)
def test_what_is_not_a_date_is_a_located_error(
    tmp_path: Path, extra: str, roles: str, expected: str
) -> None:
    """Impossible days, a time of day, words and numbers are errors at their place."""
    assert _shown(_problems(_write(tmp_path, _user(extra, roles)))) == [expected]


def test_yaml_dates_elsewhere_are_still_refused(tmp_path: Path) -> None:
    """Only end dates take a date: a name that YAML reads as one stays an error."""
    users = _user().replace("name: Li Wei", "name: 2027-01-01")
    assert _shown(_problems(_write(tmp_path, users))) == [
        "users.yaml:4:11: error: expected string, got date"
    ]


# -- timezone and today ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "zone", ["Mars/Olympus", "../../etc/passwd", "utc+2", "localtime", "posixrules"]
)
def test_an_unknown_timezone_is_refused(tmp_path: Path, zone: str) -> None:
    """policy.timezone must be an IANA name this system knows; ``localtime`` and
    ``posixrules`` are files of the database that name the machine's own setting."""
    path = _write(tmp_path, _user(), policy=f"  timezone: {json.dumps(zone)}\n")
    shown = _shown(_problems(path))
    assert len(shown) == 1
    assert "is not a time zone this system knows" in shown[0]
    assert shown[0].startswith("policy.yaml:3:13: error: timezone")


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("UTC", dt.date(2026, 12, 31)),
        ("Asia/Tokyo", dt.date(2027, 1, 1)),
        ("America/Lima", dt.date(2026, 12, 31)),
    ],
)
def test_today_is_the_clock_in_the_policy_timezone(zone: str, expected: dt.date) -> None:
    """23:30 UTC on New Year's Eve is already the next day in Tokyo."""
    now = dt.datetime(2026, 12, 31, 23, 30, tzinfo=dt.UTC)
    assert dates.Today(now=now).date(zone) == expected


def test_a_given_date_wins_over_the_clock() -> None:
    """``--at`` is taken as it is, whatever the clock and the timezone."""
    assert dates.Today(now=NOON, given=dt.date(2030, 1, 1)).date("Asia/Tokyo") == dt.date(
        2030, 1, 1
    )


def test_validation_records_the_date_in_the_policy_timezone(tmp_path: Path) -> None:
    """The desired state says which date its end dates were checked at."""
    path = _write(tmp_path, _user(), policy="  timezone: Pacific/Kiritimati\n")
    late = dt.datetime(2026, 12, 10, 23, 0, tzinfo=dt.UTC)  # already the 11th at UTC+14
    assert validation.load_desired(path, today=dates.Today(now=late)).at == dt.date(2026, 12, 11)


# -- the date rules ---------------------------------------------------------------------------


def test_end_dates_on_or_before_the_date_are_warnings(tmp_path: Path) -> None:
    """An end date already come is a warning at its place; the input stays valid."""
    users = _user("", "[agent, {role: admin, until: 2026-12-10}]") + _user(
        "    expires: 2026-12-01\n"
    ).replace("li.wei", "ana.b")
    shown = _shown(_problems(_write(tmp_path, users)))
    assert shown == [
        "users.yaml:6:41: warning: the grant of admin ended on 2026-12-10 (today): li.wei no "
        "longer has it; remove it from the list, or set a later date to keep it",
        "users.yaml:11:14: warning: expires 2026-12-01 has passed (9 days ago): ana.b is "
        "disabled from that day; remove the entry, or set a later date to keep the account",
    ]


def test_a_future_end_date_is_no_warning(tmp_path: Path) -> None:
    """The day after the date is still ahead: nothing to say."""
    users = _user("    expires: 2026-12-11\n", "[agent, {role: admin, until: 2026-12-11}]")
    assert _problems(_write(tmp_path, users)) == []


def test_without_a_date_the_date_rules_do_not_run(tmp_path: Path) -> None:
    """Loading without ``today`` (import, the sandbox's roles) checks no end date."""
    users = _user("    expires: 2000-01-01\n")
    desired = validation.load_desired(_write(tmp_path, users))
    assert (desired.at, desired.warnings) == (None, ())


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        pytest.param(
            "[agent, admin]",
            "users.yaml:6:20: error: admin may be granted for at most 30 days "
            "(policy.max_grant_days) and this grant has no end date: write "
            "{role: admin, until: 2027-01-09} or earlier",
            id="no-end-date",
        ),
        pytest.param(
            "[agent, {role: admin, until: 2027-01-10}]",
            "users.yaml:6:41: error: admin may be granted for at most 30 days "
            "(policy.max_grant_days), but until 2027-01-10 is 31 days away: end it on "
            "2027-01-09 or earlier",
            id="too-far",
        ),
        pytest.param("[agent, {role: admin, until: 2027-01-09}]", None, id="exactly-the-limit"),
        pytest.param("[agent]", None, id="not-granted"),
        pytest.param(
            "[agent, {role: admin, until: 2026-12-01}]",
            "users.yaml:6:41: warning: the grant of admin ended on 2026-12-01 (9 days ago): "
            "li.wei no longer has it; remove it from the list, or set a later date to keep it",
            id="already-ended",
        ),
    ],
)
def test_max_grant_days_makes_long_grants_errors(
    tmp_path: Path, roles: str, expected: str | None
) -> None:
    """A limited role needs an end date within the limit; an ended grant is only a warning."""
    path = _write(tmp_path, _user("", roles), policy="  max_grant_days: {admin: 30}\n")
    assert _shown(_problems(path)) == ([expected] if expected else [])


def test_max_grant_days_names_defined_roles(tmp_path: Path) -> None:
    """A role of max_grant_days that is not defined is an error: a typo lifts no limit."""
    path = _write(tmp_path, _user(), policy="  max_grant_days: {admni: 30}\n")
    assert _shown(_problems(path)) == [
        "policy.yaml:3:20: error: max_grant_days names role 'admni', which is not defined "
        "under `roles`"
    ]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("  max_grant_days: {admin: 0}\n", "max_grant_days must be at least 1 day (got 0)"),
        ("  max_grant_days: {admin: soon}\n", "max_grant_days takes a whole number of days"),
        ("  expiry_notice_days: -1\n", "-1 is less than the minimum of 0"),
        ("  timezone: 5\n", "expected string, got number 5"),
    ],
)
def test_policy_keys_are_checked(tmp_path: Path, policy: str, expected: str) -> None:
    """The new policy keys have types and bounds."""
    shown = _shown(_problems(_write(tmp_path, _user(), policy=policy)))
    assert len(shown) == 1
    assert expected in shown[0]


def test_policy_defaults() -> None:
    """Without the keys: UTC, 14 days' notice, no limits."""
    policy = Policy()
    assert (policy.timezone, policy.expiry_notice_days, dict(policy.max_grant_days)) == (
        "UTC",
        14,
        {},
    )


def test_an_ended_account_is_not_held_to_the_limits(tmp_path: Path) -> None:
    """An account whose expires has come holds nothing: its grants are not checked against
    max_grant_days, and the only finding is the warning."""
    users = _user("    expires: 2026-12-01\n", "[agent, admin]")
    path = _write(tmp_path, users, policy="  max_grant_days: {admin: 30}\n")
    assert [p.severity for p in _problems(path)] == [Severity.WARNING]


# -- validate on the command line -------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def past(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> Path:
    """A valid desired state whose only grant of admin ended on 2026-12-01."""
    clean_env.chdir(tmp_path)
    return _write(tmp_path, _user("", "[agent, {role: admin, until: 2026-12-01}]"))


def test_validate_text_marks_warnings_and_exits_0(
    past: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Warnings are marked ``warning:`` and counted; validate still passes."""
    code, out, _ = _cli(capsys, "validate", "--at", "2026-12-10")
    assert code == 0
    assert out.splitlines() == [
        "users.yaml:6:41: warning: the grant of admin ended on 2026-12-01 (9 days ago): li.wei "
        "no longer has it; remove it from the list, or set a later date to keep it",
        "Valid: 1 users, 2 roles in 2 file(s); 1 warning.",
    ]


def test_validate_before_the_end_date_has_nothing_to_say(
    past: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same input at an earlier date: no warning."""
    code, out, _ = _cli(capsys, "validate", "--at", "2026-11-30")
    assert (code, out) == (0, "Valid: 1 users, 2 roles in 2 file(s).\n")


def test_validate_json_carries_the_severity(past: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """JSON: valid, the warning with ``severity``, and a count."""
    code, out, _ = _cli(capsys, "validate", "--format", "json", "--at", "2026-12-10")
    assert code == 0
    report: dict[str, Any] = json.loads(out)
    assert (report["valid"], report["warnings"]) == (True, 1)
    assert report["problems"][0]["severity"] == "warning"
    assert report["problems"][0]["rule"] == "expiry"
    assert report["problems"][0]["path"] == ["users", 0, "roles", 1, "until"]


def test_validate_github_annotates_a_warning(
    past: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """GitHub: a ``::warning`` command at the place, exit 0."""
    code, out, _ = _cli(capsys, "validate", "--format", "github", "--at", "2026-12-10")
    assert code == 0
    assert out.startswith("::warning file=users.yaml,line=6,col=41,title=reconciler%3A ")


def test_validate_sarif_gives_the_warning_level(
    past: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SARIF: a result at level warning."""
    code, out, _ = _cli(capsys, "validate", "--format", "sarif", "--at", "2026-12-10")
    assert code == 0
    (result,) = json.loads(out)["runs"][0]["results"]
    assert (result["level"], result["ruleId"]) == ("warning", "expiry")


def test_validate_fails_on_a_limit_and_lists_warnings_too(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An error fails validate (exit 1, errors counted) and the warnings are listed with it."""
    clean_env.chdir(tmp_path)
    users = _user("", "[agent, {role: admin, until: 2026-12-01}]") + _user(
        "", "[agent, admin]"
    ).replace("li.wei", "ana.b")
    _write(tmp_path, users, policy="  max_grant_days: {admin: 7}\n")
    code, out, err = _cli(capsys, "validate", "--at", "2026-12-10")
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("users.yaml:6:41: warning: the grant of admin ended on 2026-12-01")
    assert lines[1].startswith(
        "users.yaml:10:20: admin may be granted for at most 7 days (policy.max_grant_days)"
    )
    assert err.startswith("error: 1 problem in the desired state\n")
