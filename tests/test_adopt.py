"""Import adopts only what it can stand behind: recorded unverified, verified by apply.

The federation API cannot read accounts, so ``import`` records each one as adopted
(attributes unverified); the next plan adopts it (a MODIFY carrying every attribute,
counted apart), apply verifies it, and an account the tenant does not have is recorded as
absent and created by the plan after. End to end against the sandbox, plus the pure
rules: planner, guard rails, ledger.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.apply import ledger
from reconciler.apply.ledger import Failure
from reconciler.cli import main as cli
from reconciler.desired.model import Policy
from reconciler.plan import planner
from reconciler.plan.model import Action, Kind, Reason
from reconciler.sandbox import app
from reconciler.sandbox.federation_model import FederatedUser, TenantSeed
from reconciler.sandbox.federation_rules import Code, FederationSettings
from reconciler.sandbox.server import RunningSandbox
from reconciler.stores.model import PendingBatch, PendingEntry
from reconciler.values import replace
from tests.support import sandbox as fx
from tests.support.builders import desired, record, state, user
from tests.support.sandbox import UserSpec

Served = tuple[app.Sandbox, RunningSandbox]
OLGA = UserSpec(account="olga.ivanova", name="Olga Ivanova", email="olga@example.com")


@pytest.fixture(scope="module")
def server() -> Iterator[Served]:
    """One loopback sandbox for the module."""
    with fx.loopback(FederationSettings(todo_seconds=0.0, doing_seconds=0.02)) as served:
        yield served


@pytest.fixture
def served(server: Served, monkeypatch: pytest.MonkeyPatch) -> Served:
    """The sandbox reset to a fresh default tenant; the CLI's variables point at it."""
    box, running = server
    fx.point_cli_at(box, running, monkeypatch)
    return box, running


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _plan(path: Path, capsys: pytest.CaptureFixture[str], fmt: str = "json") -> Any:
    code, out, _ = _run(capsys, "plan", str(path), "--no-refresh", "--format", fmt)
    assert code == 0
    return json.loads(out) if fmt == "json" else out


def _apply(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code, out, _ = _run(
        capsys, "apply", str(path), "--auto-approve", "--no-refresh", "--format", "json"
    )
    return code, json.loads(out)


# -- end to end -------------------------------------------------------------------------


def test_an_imported_account_that_exists_nowhere_is_created_by_the_plan_after(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """import → adopt planned → apply: 100-302, recorded absent → next plan creates her."""
    box, _ = served
    path = fx.write_desired(tmp_path / "desired", [OLGA])
    code, out, _ = _run(capsys, "import", str(path), "--account", OLGA.account)
    assert code == 0
    assert "Imported 1 account(s) into " in out
    assert "recorded as adopted, attributes unverified" in out
    document = fx.state_document(path)
    assert document is not None
    assert document["accounts"][OLGA.account]["adopted"] is True

    planned = _plan(path, capsys)
    [change] = planned["changes"]
    assert (change["action"], change["reason"]) == ("MODIFY", "adopt")
    assert change["wire"] == {
        "action": "MODIFY",
        "userAccount": OLGA.account,
        "userName": OLGA.name,
        "email": OLGA.email,
        "roleIds": [fx.ROLE_AGENT],
    }
    assert (planned["summary"]["adopt"], planned["summary"]["modify"]) == (1, 0)
    text = _plan(path, capsys, "text")
    assert f"~ account {OLGA.account} (adopt: apply checks it exists" in text
    assert "Plan: 0 to create, 1 to adopt, 0 to modify, 0 to disable; 1 batch." in text
    assert "| 📥 adopt | 1 |" in _plan(path, capsys, "markdown")

    code, report = _apply(path, capsys)
    assert code == 1
    [failure] = report["failed"]
    assert (failure["account"], failure["action"], failure["code"]) == (
        OLGA.account,
        "MODIFY",
        "100-302",
    )
    assert "recorded as absent, the next plan creates it" in failure["message"]
    document = fx.state_document(path)
    assert document is not None
    assert OLGA.account not in document["accounts"]

    [create] = _plan(path, capsys)["changes"]
    assert (create["action"], create["reason"]) == ("CREATE", "new")
    assert _apply(path, capsys)[0] == 0
    assert fx.tenant_view(box) == fx.desired_view([OLGA])
    assert box.federation.stats().created_per_account == {OLGA.account: 1}


def test_an_imported_account_that_exists_is_verified_and_converged(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The tenant's account differs from the YAML: the adopt sets every declared attribute."""
    box, _ = served
    box.federation.seed_tenant(
        TenantSeed(
            app_key=fx.APP_KEY,
            app_secret=fx.APP_SECRET,
            role_ids=tuple(fx.ROLES.values()),
            users={
                OLGA.account: FederatedUser(
                    name="Olga I", email="old@example.com", role_ids=(fx.ROLE_REPORTING,)
                )
            },
        )
    )
    path = fx.write_desired(tmp_path / "desired", [OLGA])
    assert _run(capsys, "import", str(path), "--all")[0] == 0
    code, report = _apply(path, capsys)
    assert code == 0
    assert report["applied"] == [{"account": OLGA.account, "action": "MODIFY"}]
    assert fx.tenant_view(box) == fx.desired_view([OLGA])
    document = fx.state_document(path)
    assert document is not None
    assert "adopted" not in document["accounts"][OLGA.account]
    assert _plan(path, capsys)["changes"] == []
    assert box.federation.stats().created_per_account == {}


def test_an_imported_account_declared_disabled_is_disabled_on_the_tenant(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """enabled: false and imported: a DISABLE verifies it, the guard counts it."""
    box, _ = served
    box.federation.seed_tenant(
        TenantSeed(
            app_key=fx.APP_KEY,
            app_secret=fx.APP_SECRET,
            role_ids=tuple(fx.ROLES.values()),
            users={OLGA.account: FederatedUser(name=OLGA.name, email=OLGA.email)},
        )
    )
    path = fx.write_desired(tmp_path / "desired", [replace(OLGA, enabled=False)])
    assert _run(capsys, "import", str(path), "--account", OLGA.account)[0] == 0
    planned = _plan(path, capsys)
    [change] = planned["changes"]
    assert (change["action"], change["reason"]) == ("DISABLE", "adopt")
    assert planned["guard"]["disables"] == 1
    assert _apply(path, capsys)[0] == 0
    assert fx.tenant_view(box)[OLGA.account]["enabled"] is False
    assert _plan(path, capsys)["changes"] == []


def test_removing_an_imported_account_from_the_yaml_disables_it(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An adopted account removed from the YAML is a DISABLE like any other."""
    specs = fx.users(2)
    path = fx.write_desired(tmp_path / "desired", specs)
    assert _apply(path, capsys)[0] == 0
    fx.write_desired(path, [*specs, OLGA])
    assert _run(capsys, "import", str(path), "--account", OLGA.account)[0] == 0
    fx.write_desired(path, specs)
    [change] = _plan(path, capsys)["changes"]
    assert (change["action"], change["account"], change["reason"]) == (
        "DISABLE",
        OLGA.account,
        "removed",
    )
    # The tenant never had her: the DISABLE fails with 100-302 and she is recorded absent.
    code, report = _apply(path, capsys)
    assert code == 1
    assert [f["code"] for f in report["failed"]] == ["100-302"]
    document = fx.state_document(path)
    assert document is not None
    assert sorted(document["accounts"]) == [s.account for s in specs]
    assert _plan(path, capsys)["changes"] == []


def test_import_all_of_many_accounts_names_a_few_and_counts_the_rest(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """import --all on thousands of accounts prints a count and five names, one short line."""
    path = fx.write_desired(tmp_path / "desired", fx.users(2_000))
    code, out, _ = _run(capsys, "import", str(path), "--all")
    assert code == 0
    first = out.splitlines()[0]
    assert first.startswith("Imported 2,000 account(s) into ")
    assert first.endswith(": user00000, user00001, user00002, user00003, user00004 and 1,995 more")
    assert len(out) < 1_000


# -- pure rules -------------------------------------------------------------------------


def test_the_failcode_taken_for_absence_is_the_sandboxs_user_not_found() -> None:
    """The assumed "does not exist" failCode is the one the sandbox answers."""
    assert Code.USER_NOT_FOUND.value == ledger.ACCOUNT_NOT_FOUND


def test_the_planner_adopts_every_attribute_and_counts_adopts_apart() -> None:
    """An adopted account gives a MODIFY with every attribute, even when nothing differs."""
    adopted = replace(record("olga", "agent"), adopted=True)
    made = planner.plan(desired(user("olga", "agent"), user("pia", "agent")), state(adopted))
    [adopt, create] = sorted(made.changes, key=lambda c: c.account)
    assert (adopt.action, adopt.reason, adopt.kind) == (Action.MODIFY, Reason.ADOPT, Kind.ADOPT)
    assert adopt.wire() == {
        "action": "MODIFY",
        "userAccount": "olga",
        "userName": "Olga",
        "email": "olga@example.com",
        "roleIds": ["101"],
    }
    assert adopt.roles_added == ("101",)
    assert adopt.after.adopted is False
    assert (made.tally(Kind.ADOPT), made.tally(Kind.MODIFY), made.count(Action.MODIFY)) == (
        1,
        0,
        1,
    )
    assert create.kind is Kind.CREATE


def test_adopted_accounts_never_raise_the_disable_limit() -> None:
    """200 imported accounts, 10 verified: removing 15 imported ones is over the limit of 10."""
    adopted = [replace(record(f"imp{i:03d}", "agent"), adopted=True) for i in range(200)]
    verified = [record(f"ver{i:03d}", "agent") for i in range(10)]
    kept = [user(r.account, "agent") for r in (*adopted[15:], *verified)]
    made = planner.plan(desired(*kept), state(*adopted, *verified))
    assert made.managed == 10
    assert made.count(Action.DISABLE) == 15
    assert made.guard.limit == 10
    assert made.guard.blocked
    # The same accounts verified: 10% of 210 managed would have let the 15 through.
    as_verified = [replace(r, adopted=False) for r in adopted]
    assert not planner.plan(desired(*kept), state(*as_verified, *verified)).guard.blocked


def test_a_protected_imported_account_is_never_disabled() -> None:
    """Removing a protected adopted account is blocked like any other disable."""
    adopted = replace(record("boss", "admin"), adopted=True)
    policy = Policy(protected_accounts=frozenset({"boss"}))
    made = planner.plan(desired(policy=policy), state(adopted))
    assert made.guard.protected_hits == ("boss",)


def _done(entries: tuple[PendingEntry, ...]) -> PendingBatch:
    return PendingBatch(batch_id="b1", entries=entries, task_id="t1")


@pytest.mark.parametrize(
    ("adopted", "code", "kept"),
    [
        pytest.param(True, "100-302", False, id="adopted-not-found-is-absent"),
        pytest.param(True, "100-217", True, id="adopted-other-failure-stays"),
        pytest.param(False, "100-302", True, id="verified-not-found-stays"),
    ],
)
def test_only_an_adopted_account_the_tenant_lacks_is_recorded_absent(
    adopted: bool, code: str, kept: bool
) -> None:
    """with_results forgets an adopted account on 100-302, and keeps every other failure."""
    before = replace(record("olga", "agent"), adopted=adopted)
    change = planner.plan(desired(user("olga", "agent", name="Olga Two")), state(before))
    [entry] = ledger.new_batch(change.changes, "now").entries
    failure = Failure(account="olga", action=Action.MODIFY, code=code, message="failed")
    current = state(before)
    current = replace(current, pending=(_done((entry,)),))
    after, applied, failed = ledger.with_results(
        current, [(current.pending[0], {"olga": failure})], "later"
    )
    assert applied == []
    assert [f.code for f in failed] == [code]
    assert ("olga" in after.accounts) is kept
    if kept:
        assert after.accounts["olga"] == before
    else:
        assert "recorded as absent" in failed[0].message
    assert after.pending == ()
