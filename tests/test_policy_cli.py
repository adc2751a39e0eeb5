"""End to end: apply records the policy in force (file and PostgreSQL state), a policy-only
change is a change, and a loosened policy is shown first and stops --revocations-only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import main as cli
from reconciler.sandbox import app
from reconciler.sandbox.federation_rules import FederationSettings
from reconciler.sandbox.server import RunningSandbox
from tests.support import sandbox as fx
from tests.support.pg import pg_dsn, unique_workspace, with_query

Served = tuple[app.Sandbox, RunningSandbox]
FAST = FederationSettings(todo_seconds=0.0, doing_seconds=0.02)
PROTECTED = "version: 1\npolicy:\n  protected_accounts: [user00000]\n"
TIGHTER = "version: 1\npolicy:\n  protected_accounts: [user00000, user00001]\n"
LOOSER = "version: 1\npolicy:\n  protected_accounts: [user00001]\n"


@pytest.fixture(scope="module")
def server() -> Iterator[Served]:
    """One loopback sandbox for the module."""
    with fx.loopback(FAST) as served:
        yield served


@pytest.fixture(params=["local", "postgres"])
def served(
    request: pytest.FixtureRequest, server: Served, monkeypatch: pytest.MonkeyPatch
) -> Served:
    """A fresh tenant; the state in a file, or in a PostgreSQL workspace of its own."""
    box, running = server
    fx.point_cli_at(box, running, monkeypatch)
    if request.param == "postgres":
        monkeypatch.setenv("RECONCILER_STATE", with_query(pg_dsn(), workspace=unique_workspace()))
    else:
        monkeypatch.delenv("RECONCILER_STATE", raising=False)
    return box, running


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _recorded(path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code, out, _ = _run(capsys, "state", "pull", str(path))
    assert code == 0
    document: dict[str, Any] = json.loads(out)
    assert document["format_version"] == 3
    policy: dict[str, Any] = document["policy"]
    return policy


def test_apply_records_the_policy_and_a_policy_only_change_is_applied(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first apply records the policy; a tighter one alone is a change (exit 2), shown,
    applied without a createTask, and then no change."""
    box, _ = served
    specs = fx.users(5)
    path = fx.write_desired(tmp_path / "desired", specs, policy=PROTECTED)
    assert _run(capsys, "apply", str(path), "--auto-approve")[0] == 0
    assert _recorded(path, capsys)["protected_accounts"] == ["user00000"]
    assert _run(capsys, "plan", str(path), "--detailed-exitcode", "--no-refresh")[0] == 0

    fx.write_desired(path, specs, policy=TIGHTER)
    code, out, _ = _run(capsys, "plan", str(path), "--detailed-exitcode", "--no-refresh")
    assert code == 2
    assert "policy.protected_accounts[user00001]: - -> protected" in out
    assert "No account changes. Apply records the changed policy." in out
    calls = box.federation.stats().calls["createTask"]
    assert _run(capsys, "apply", str(path), "--auto-approve", "--no-refresh")[0] == 0
    assert box.federation.stats().calls["createTask"] == calls
    assert _recorded(path, capsys)["protected_accounts"] == ["user00000", "user00001"]
    assert _run(capsys, "plan", str(path), "--detailed-exitcode", "--no-refresh")[0] == 0


def test_a_loosened_policy_is_shown_first_and_stops_revocations_only(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """user00000 leaves protected_accounts and is removed in the same change: the plan says
    so first and at the disable; the unreviewed scheduled run refuses with exit 3."""
    box, _ = served
    specs = fx.users(5)
    path = fx.write_desired(tmp_path / "desired", specs, policy=PROTECTED)
    assert _run(capsys, "apply", str(path), "--auto-approve")[0] == 0

    fx.write_desired(path, specs[1:], policy=LOOSER)
    code, out, _ = _run(capsys, "plan", str(path), "--no-refresh")
    assert code == 0
    assert out.index("Policy changes since the last apply") < out.index("- account user00000")
    assert "! policy.protected_accounts[user00000]: protected -> - (loosened)" in out
    assert "passes only because the policy loosened: was protected" in out

    code, out, _ = _run(capsys, "plan", str(path), "--no-refresh", "--format", "json")
    policy = json.loads(out)["policy"]
    assert policy["loosened"] is True
    assert [(c["setting"], c["loosened"]) for c in policy["changes"]] == [
        ("protected_accounts[user00000]", True),
        ("protected_accounts[user00001]", False),
    ]
    assert [u["account"] for u in policy["uses"]] == ["user00000"]

    calls = box.federation.stats().calls["createTask"]
    code, _, err = _run(
        capsys, "apply", str(path), "--auto-approve", "--revocations-only", "--no-refresh"
    )
    assert code == 3
    assert "--revocations-only: the policy loosened since the last apply" in err
    assert box.federation.stats().calls["createTask"] == calls
    assert _recorded(path, capsys)["protected_accounts"] == ["user00000"]

    assert _run(capsys, "apply", str(path), "--auto-approve", "--no-refresh")[0] == 0
    assert _recorded(path, capsys)["protected_accounts"] == ["user00001"]
    assert _run(capsys, "plan", str(path), "--detailed-exitcode", "--no-refresh")[0] == 0


def test_a_saved_plan_of_a_policy_only_change_applies_it(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """plan --out of a policy-only change, then apply PLANFILE: the policy is recorded."""
    specs = fx.users(3)
    path = fx.write_desired(tmp_path / "desired", specs, policy=PROTECTED)
    assert _run(capsys, "apply", str(path), "--auto-approve")[0] == 0
    fx.write_desired(path, specs, policy=TIGHTER)
    saved = tmp_path / "plan.json"
    code, _, _ = _run(capsys, "plan", str(path), "--no-refresh", "--out", str(saved))
    assert code == 0
    assert _run(capsys, "apply", str(saved), str(path), "--no-refresh")[0] == 0
    assert _recorded(path, capsys)["protected_accounts"] == ["user00000", "user00001"]
