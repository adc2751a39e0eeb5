"""End dates end to end: the real CLI against the sandbox on loopback, at fixed dates.

Dates lie in 2099 so that ``apply`` (which never evaluates before today) accepts them
whenever the suite runs; ``--at`` fixes every date, and nothing depends on the clock.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import main as cli
from reconciler.sandbox import app
from reconciler.sandbox.server import RunningSandbox
from tests.support import sandbox as fx
from tests.support.sandbox import ROLE_REPORTING, ROLE_SUPERVISOR

Served = tuple[app.Sandbox, RunningSandbox]

ROLES = """\
version: 1
roles:
  agent: {id: "1672380646005741601"}
  supervisor: {id: "1672380646005741602", sensitive: true}
  reporting: {id: "1672380646005741603"}
"""
USERS = """\
version: 1
users:
  - account: alice
    name: Alice
    email: alice@example.com
    roles: [agent, {role: supervisor, until: 2099-06-15}]
  - account: bob
    name: Bob
    email: bob@example.com
    roles:
      - agent
      - role: reporting
        until: "2099-06-20"
  - account: carol
    name: Carol
    email: carol@example.com
    roles: [agent]
    expires: 2099-06-18
  - account: dave
    name: Dave
    email: dave@example.com
    roles: [agent]
"""


@pytest.fixture(scope="module")
def server() -> Iterator[Served]:
    """One loopback sandbox for the module."""
    with fx.loopback() as served:
        yield served


@dataclass
class World:
    """A desired-state folder and a state file, driven through the CLI against the sandbox."""

    box: app.Sandbox
    desired: Path
    state: Path
    capsys: pytest.CaptureFixture[str]

    def run(self, *argv: str) -> tuple[int, str, str]:
        """``reconciler ARGV --state STATE`` → exit code, stdout, stderr."""
        code = cli.main([*argv, "--state", str(self.state)])
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err

    def plan_json(self, at: str, *argv: str) -> dict[str, Any]:
        """``plan --format json --at AT`` parsed (exit 0)."""
        code, out, err = self.run(
            "plan", str(self.desired), "--no-refresh", "--format", "json", "--at", at, *argv
        )
        assert code == 0, err
        document: dict[str, Any] = json.loads(out)
        return document

    def apply(self, at: str, *argv: str) -> tuple[int, str, str]:
        """``apply PATH --auto-approve --no-refresh --at AT``."""
        return self.run(
            "apply", str(self.desired), "--auto-approve", "--no-refresh", "--at", at, *argv
        )

    def tenant(self) -> dict[str, dict[str, Any]]:
        """The sandbox tenant's accounts."""
        return fx.tenant_view(self.box)


@pytest.fixture
def world(
    server: Served,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> World:
    """The four users applied on 2099-06-10 (every grant still running)."""
    box, running = server
    fx.point_cli_at(box, running, monkeypatch)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("RECONCILER_AT", raising=False)
    desired = tmp_path / "desired"
    desired.mkdir()
    (desired / "roles.yaml").write_text(ROLES, encoding="utf-8")
    (desired / "users.yaml").write_text(USERS, encoding="utf-8")
    found = World(box=box, desired=desired, state=tmp_path / "state.json", capsys=capsys)
    code, _, err = found.apply("2099-06-10")
    assert code == 0, err
    assert ROLE_SUPERVISOR in found.tenant()["alice"]["role_ids"]
    return found


def test_plan_removes_expired_grants_and_disables_expired_accounts(world: World) -> None:
    """At 2099-06-19: alice's supervisor grant ended on the 15th (a role removal), carol's
    account on the 18th (a disable); bob's reporting ends tomorrow (expiring soon)."""
    document = world.plan_json("2099-06-19")
    assert document["at"] == "2099-06-19"
    assert document["timezone"] == "UTC"
    changes = {c["account"]: c for c in document["changes"]}
    assert set(changes) == {"alice", "carol"}
    assert changes["alice"]["action"] == "MODIFY"
    assert changes["alice"]["reason"] == "grant_expired"
    assert changes["alice"]["roles_removed"] == [ROLE_SUPERVISOR]
    assert changes["alice"]["expired"] == [{"role_id": ROLE_SUPERVISOR, "on": "2099-06-15"}]
    assert (changes["carol"]["action"], changes["carol"]["reason"]) == ("DISABLE", "expired")
    assert changes["carol"]["expired"] == [{"role_id": None, "on": "2099-06-18"}]
    assert changes["carol"]["why"][0].startswith("expired on 2099-06-18 (")
    assert changes["carol"]["why"][0].endswith("users.yaml:14)")
    assert changes["alice"]["why"][0].startswith("supervisor expired on 2099-06-15 (")
    assert document["summary"]["expired_grants"] == 1
    assert document["summary"]["expired_accounts"] == 1
    assert document["guard"]["disables"] == 1  # counted like any other disable
    soon = document["expiring"]["items"]
    assert [(i["account"], i["role"], i["on"], i["days_left"]) for i in soon] == [
        ("bob", "reporting", "2099-06-20", 1)
    ]


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("text", "expired on 2099-06-18 (desired/users.yaml:14)"),
        ("markdown", "expired on 2099-06-18 (desired/users.yaml:14)"),
        ("text", "supervisor expired on 2099-06-15 (desired/users.yaml:3)"),
        ("markdown", "supervisor expired on 2099-06-15 (desired/users.yaml:3)"),
        ("text", "Expiring soon: 1 grant"),
        ("markdown", "#### Expiring soon: 1 grant"),
        ("text", "end dates at 2099-06-19 (UTC)"),
        ("markdown", "end dates at `2099-06-19` (UTC)"),
    ],
)
def test_every_format_says_why_and_when(
    world: World, monkeypatch: pytest.MonkeyPatch, fmt: str, expected: str
) -> None:
    """Text and Markdown give each expiry its reason with file:line, and the plan's date."""
    monkeypatch.chdir(world.desired.parent)
    code, out, err = world.run(
        "plan", "desired", "--no-refresh", "--format", fmt, "--at", "2099-06-19"
    )
    assert code == 0, err
    assert expected in out


def test_apply_carries_out_end_dates_on_the_tenant(world: World) -> None:
    """Applying at 2099-06-19 removes the role and disables the account on the tenant."""
    code, _, err = world.apply("2099-06-19")
    assert code == 0, err
    tenant = world.tenant()
    assert ROLE_SUPERVISOR not in tenant["alice"]["role_ids"]
    assert tenant["carol"]["enabled"] is False
    assert ROLE_REPORTING in tenant["bob"]["role_ids"]
    assert world.plan_json("2099-06-19")["changes"] == []


def test_a_saved_plan_is_stale_once_a_grant_expired(world: World, tmp_path: Path) -> None:
    """A plan made on the 12th, applied on the 16th, would keep alice's supervisor grant
    that ended on the 15th: refused as stale in those words, and nothing is sent."""
    plan = tmp_path / "plan.json"
    code, _, err = world.run(
        "plan", str(world.desired), "--no-refresh", "--at", "2099-06-12", "--out", str(plan)
    )
    assert code == 0, err
    calls = world.box.federation.stats().calls.get("createTask", 0)
    code, _, err = world.run(
        "apply", str(plan), str(world.desired), "--no-refresh", "--at", "2099-06-16"
    )
    assert code == 1
    assert (
        "error: stale plan: 1 grant expired since the plan was made (2099-06-12 → 2099-06-16)"
        in err
    )
    assert "supervisor of alice on 2099-06-15" in err
    assert world.box.federation.stats().calls.get("createTask", 0) == calls


def test_a_saved_plan_without_dates_passing_still_applies(world: World, tmp_path: Path) -> None:
    """Made on the 16th and applied on the 17th (nothing ends in between): applied."""
    plan = tmp_path / "plan.json"
    code, _, err = world.run(
        "plan", str(world.desired), "--no-refresh", "--at", "2099-06-16", "--out", str(plan)
    )
    assert code == 0, err
    code, _, err = world.run(
        "apply", str(plan), str(world.desired), "--no-refresh", "--at", "2099-06-17"
    )
    assert code == 0, err
    assert ROLE_SUPERVISOR not in world.tenant()["alice"]["role_ids"]


def test_a_plan_made_for_a_later_date_is_refused_before_it(world: World, tmp_path: Path) -> None:
    """A plan previewing the 19th cannot be applied on the 12th: what it removes has not
    ended yet."""
    plan = tmp_path / "plan.json"
    code, _, err = world.run(
        "plan", str(world.desired), "--no-refresh", "--at", "2099-06-19", "--out", str(plan)
    )
    assert code == 0, err
    code, _, err = world.run(
        "apply", str(plan), str(world.desired), "--no-refresh", "--at", "2099-06-12"
    )
    assert code == 1
    assert "it was made for 2099-06-19, a later date than this apply's 2099-06-12" in err
    assert "1 grant and 1 account it carries out have not ended yet" in err


def test_apply_never_evaluates_before_today(world: World) -> None:
    """An --at before today could give back access that has ended: refused, nothing sent."""
    code, _, err = world.apply("2000-01-01")
    assert code == 1
    assert "before today" in err
    assert "could give back access that has ended" in err


def test_reconciler_at_stands_in_for_at(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """RECONCILER_AT is the default of --at (a pipeline sets it once)."""
    monkeypatch.setenv("RECONCILER_AT", "2099-06-19")
    code, out, err = world.run("plan", str(world.desired), "--no-refresh", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["at"] == "2099-06-19"
    monkeypatch.setenv("RECONCILER_AT", "next week")
    code, _, err = world.run("plan", str(world.desired), "--no-refresh")
    assert code == 1
    assert "RECONCILER_AT must be a calendar date YYYY-MM-DD, not 'next week'" in err


@pytest.mark.parametrize("value", ["2099-02-30", "19.06.2099", "2099-6-1", "today"])
def test_at_takes_a_calendar_date(world: World, value: str) -> None:
    """--at refuses what is not a day of the calendar, as a usage error (exit 1)."""
    code, _, err = world.run("plan", str(world.desired), "--at", value)
    assert code == 1
    assert "--at takes a calendar date YYYY-MM-DD" in err


# -- --revocations-only -------------------------------------------------------------------


def test_revocations_only_applies_removals_and_disables(world: World) -> None:
    """A plan of role removals and disables only goes through --revocations-only."""
    code, out, err = world.apply("2099-06-19", "--revocations-only")
    assert code == 0, err
    assert world.tenant()["carol"]["enabled"] is False
    assert "Apply complete" in out


def test_revocations_only_refuses_a_grant_and_sends_nothing(world: World) -> None:
    """A plan that also grants (dave gains reporting) is refused with exit 3; the expiries
    in the same plan are not sent either."""
    users = world.desired / "users.yaml"
    users.write_text(
        users.read_text(encoding="utf-8").replace(
            "    roles: [agent]\n", "    roles: [agent, reporting]\n"
        ),
        encoding="utf-8",
    )
    calls = world.box.federation.stats().calls.get("createTask", 0)
    code, _, err = world.apply("2099-06-19", "--revocations-only")
    assert code == 3
    assert "--revocations-only: the plan also grants or changes access" in err
    assert "modify dave (+reporting)" in err
    assert "nothing was sent" in err
    assert world.box.federation.stats().calls.get("createTask", 0) == calls
    assert world.tenant()["carol"]["enabled"] is True


def test_revocations_only_refuses_a_create(world: World) -> None:
    """A new account is a grant: refused, exit 3."""
    users = world.desired / "users.yaml"
    users.write_text(
        users.read_text(encoding="utf-8")
        + "  - account: erin\n    name: Erin\n    email: erin@example.com\n    roles: [agent]\n",
        encoding="utf-8",
    )
    code, _, err = world.apply("2099-06-11", "--revocations-only")
    assert code == 3
    assert "create erin (+agent)" in err
