"""A saved plan is a proof, not a command; apply never plans on top of unsettled work.

End to end through ``reconciler.cli.main`` against the sandbox on loopback: a saved plan
edited after review is refused naming the first difference and nothing is sent; the
fields apply does not compare are never read; an override is never taken from a file;
an apply whose earlier work stays unsettled sends nothing new.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import main as cli
from reconciler.plan import planfile
from reconciler.sandbox import app
from reconciler.sandbox.federation_faults import Endpoint, EndpointFaults
from reconciler.sandbox.federation_rules import FederationSettings
from reconciler.sandbox.server import RunningSandbox
from tests.support import sandbox as fx
from tests.support.sandbox import UserSpec

Served = tuple[app.Sandbox, RunningSandbox]
FAST = FederationSettings(todo_seconds=0.0, doing_seconds=0.02)
ROLE_ADMIN = "1672380646005741609"
ROLES_YAML = f"""\
version: 1
roles:
  agent: {{id: "{fx.ROLE_AGENT}"}}
  reporting: {{id: "{fx.ROLE_REPORTING}"}}
  tenant-admin: {{id: "{ROLE_ADMIN}", sensitive: true}}
"""
ALICE = UserSpec(account="alice", name="Alice", email="alice@example.com")
BOB = UserSpec(account="bob", name="Bob", email="bob@example.com")


@pytest.fixture(scope="module")
def server() -> Iterator[Served]:
    """One loopback sandbox for the module."""
    with fx.loopback(FAST) as served:
        yield served


@pytest.fixture
def served(server: Served, monkeypatch: pytest.MonkeyPatch) -> Served:
    """A fresh default tenant that also has the sensitive tenant-admin role."""
    box, running = server
    fx.point_cli_at(box, running, monkeypatch)
    box.federation.change_roles(fx.APP_KEY, add=(ROLE_ADMIN,))
    return box, running


def _write(path: Path, specs: list[UserSpec], policy: str = "") -> Path:
    """The desired state with the roles above (tenant-admin is sensitive)."""
    fx.write_desired(path, specs, policy=policy)
    (path / "roles.yaml").write_text(ROLES_YAML, encoding="utf-8")
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _reviewed_rename(tmp_path: Path) -> tuple[Path, Path]:
    """alice and bob applied; alice renamed in the YAML; that plan saved for review."""
    path = _write(tmp_path / "desired", [ALICE, BOB])
    assert cli.main(["apply", str(path), "--auto-approve", "--no-refresh"]) == 0
    _write(path, [UserSpec(account="alice", name="Alice Liddell", email=ALICE.email), BOB])
    saved = tmp_path / "plan.json"
    assert cli.main(["plan", str(path), "--out", str(saved), "--no-refresh"]) == 0
    return path, saved


def _edit(saved: Path, edit: Callable[[dict[str, Any]], None], *, redigest: bool) -> None:
    """Edit the saved plan's JSON; ``redigest`` recomputes its changes digest as a forger would."""
    document = json.loads(saved.read_text(encoding="utf-8"))
    edit(document)
    if redigest:
        document["changes_digest"] = planfile.digest(document["changes"])
    saved.write_text(json.dumps(document, indent=2), encoding="utf-8")


def _grant_admin(document: dict[str, Any]) -> None:
    [change] = document["changes"]
    change["wire"]["roleIds"] = [fx.ROLE_AGENT, ROLE_ADMIN]
    change["after"]["role_ids"] = [fx.ROLE_AGENT, ROLE_ADMIN]


def _grant_admin_on_the_wire(document: dict[str, Any]) -> None:
    [change] = document["changes"]
    change["wire"]["roleIds"] = [fx.ROLE_AGENT, ROLE_ADMIN]


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(
            (
                _grant_admin,
                False,
                "its changes or provisioning retries do not match its changes_digest "
                "(the file was edited)",
            ),
            id="digest-left-alone",
        ),
        pytest.param(
            (
                _grant_admin,
                True,
                f'change 1 (alice): after.role_ids is ["{fx.ROLE_AGENT}", "{ROLE_ADMIN}"] in '
                f'the saved plan, but ["{fx.ROLE_AGENT}"] when planned again',
            ),
            id="digest-recomputed",
        ),
        pytest.param(
            (
                _grant_admin_on_the_wire,
                True,
                f'change 1 (alice): wire.roleIds is ["{fx.ROLE_AGENT}", "{ROLE_ADMIN}"] in the '
                "saved plan, but absent when planned again",
            ),
            id="wire-only",
        ),
    ],
)
def test_a_plan_edited_to_grant_a_sensitive_role_is_refused_and_nothing_is_sent(
    served: Served,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    tamper: tuple[Callable[[dict[str, Any]], None], bool, str],
) -> None:
    """tenant-admin added to a reviewed MODIFY: refused naming the difference, nothing sent."""
    edit, redigest, message = tamper
    box, _ = served
    path, saved = _reviewed_rename(tmp_path)
    calls = dict(box.federation.stats().calls)
    state_before = fx.state_document(path)
    _edit(saved, edit, redigest=redigest)
    code, _, err = _run(capsys, "apply", str(saved), str(path))
    assert code == 1
    assert message in err
    assert "neither a desired-state" not in err
    assert "\nhint: " in err
    assert box.federation.stats().calls == calls
    assert fx.tenant_view(box)["alice"]["role_ids"] == [fx.ROLE_AGENT]
    assert fx.tenant_view(box)["alice"]["name"] == "Alice"
    assert fx.state_document(path) == state_before


def test_a_reviewed_plan_applies_and_what_apply_never_reads_is_ignored(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Summary, notes, guard, access, roles and batches of the file are not what apply uses."""
    box, _ = served
    path, saved = _reviewed_rename(tmp_path)

    def dress_up(document: dict[str, Any]) -> None:
        document["summary"].update(create=0, modify=0)
        document["notes"] = ["reviewed and approved by security"]
        document["guard"].update(limit=10_000, override=99, blocked=False)
        document["access"] = []
        document["roles"][fx.ROLE_AGENT]["name"] = "read-only"
        document["batches"] = [{"index": 1, "accounts": ["alice", "bob"]}]

    _edit(saved, dress_up, redigest=False)
    code, out, _ = _run(capsys, "apply", str(saved), str(path))
    assert code == 0
    assert "reviewed and approved by security" not in out
    assert "Plan: 0 to create, 1 to modify, 0 to disable; 1 batch." in out
    assert "read-only" not in out
    assert fx.tenant_view(box)["alice"]["name"] == "Alice Liddell"
    assert fx.tenant_view(box)["bob"] == fx.desired_view([BOB])["bob"]
    assert box.federation.stats().create_task_accepted == 2  # the first apply and this one


def test_an_override_is_never_taken_from_the_plan_file(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A plan saved with --allow-disables is applied only with the same flag on apply."""
    box, _ = served
    policy = "version: 1\npolicy:\n  max_disable: {count: 1}\n"
    specs = fx.users(3)
    path = _write(tmp_path / "desired", specs, policy)
    assert cli.main(["apply", str(path), "--auto-approve", "--no-refresh"]) == 0
    _write(path, specs[:1], policy)
    saved = tmp_path / "plan.json"
    plan = ["plan", str(path), "--out", str(saved), "--no-refresh", "--allow-disables", "2"]
    assert cli.main(plan) == 0
    calls = dict(box.federation.stats().calls)
    code, _, err = _run(capsys, "apply", str(saved), str(path))
    assert code == 3
    assert "would disable 2 accounts, over the limit of 1" in err
    assert "apply never takes an override from a file" in err
    assert box.federation.stats().calls == calls
    assert _run(capsys, "apply", str(saved), str(path), "--allow-disables", "2")[0] == 0
    assert [u["enabled"] for _, u in sorted(fx.tenant_view(box).items())] == [True, False, False]


def test_a_plan_of_an_older_reconciler_is_refused_plainly(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A format-1 plan (no digest, no state location) is refused: plan again."""
    box, _ = served
    path = _write(tmp_path / "desired", [ALICE])
    saved = tmp_path / "plan.json"
    assert cli.main(["plan", str(path), "--out", str(saved), "--no-refresh"]) == 0

    def make_old(document: dict[str, Any]) -> None:
        document["format_version"] = 1
        del document["changes_digest"]
        document["state"] = {"lineage": None, "serial": 0}

    _edit(saved, make_old, redigest=False)
    code, _, err = _run(capsys, "apply", str(saved))
    assert code == 1
    assert err.startswith(f"error: {saved} was made by an older reconciler (format_version 1;")
    assert "hint: plan again with `reconciler plan --out FILE`" in err
    assert sum(box.federation.stats().calls.values()) == 0


def test_a_plan_never_chooses_its_input_or_state(
    served: Served,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """C1: a plan file (an artifact) made from another folder and state than the reviewed
    ones cannot point apply at them: apply reads PATH (default .) and the state every
    command would use, and refuses naming both when the plan records others."""
    box, _ = served
    path = _write(tmp_path / "desired", [ALICE])
    assert cli.main(["apply", str(path), "--auto-approve", "--no-refresh"]) == 0
    calls = dict(box.federation.stats().calls)
    state_before = fx.state_document(path)
    # The forged artifact: made from a folder granting tenant-admin, against an empty state.
    evil = _write(tmp_path / "evil", [ALICE])
    (evil / "users.yaml").write_text(
        (evil / "users.yaml").read_text(encoding="utf-8").replace("agent", "tenant-admin"),
        encoding="utf-8",
    )
    forged = tmp_path / "plan.json"
    empty = tmp_path / "empty-state.json"
    made = ["plan", str(evil), "--out", str(forged), "--no-refresh", "--state", str(empty)]
    assert cli.main(made) == 0
    code, _, err = _run(capsys, "apply", str(forged), str(path))
    assert code == 1
    assert f"the plan was made from the desired state at {evil}, but this apply reads {path}" in err
    assert f"hint: reconciler apply {forged} {evil} --state {empty} (from the" in err
    # Even from the folder it names, its state is not the one every command uses there.
    code, _, err = _run(capsys, "apply", str(forged), str(evil))
    assert code == 1
    assert f"the plan was made against state {empty}, but this apply would use state {evil}" in err
    assert box.federation.stats().calls == calls
    assert fx.state_document(path) == state_before
    assert not empty.exists()
    # PATH defaults to ".", never to the plan's path.
    saved = tmp_path / "reviewed.json"
    assert cli.main(["plan", str(path), "--out", str(saved), "--no-refresh"]) == 0
    monkeypatch.chdir(tmp_path)
    code, _, err = _run(capsys, "apply", str(saved))
    assert code == 1
    assert f"made from the desired state at {path}, but this apply reads ." in err
    # The hint is the whole command: PATH alone would be refused next on the state.
    state = path / ".reconciler" / "state.json"
    assert f"hint: reconciler apply {saved} {path} --state {state} (from the" in err
    assert box.federation.stats().calls == calls


def test_a_plan_whose_desired_input_is_gone_is_refused(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """apply plans again from PATH: without the input there, it refuses and sends nothing."""
    box, _ = served
    path = _write(tmp_path / "desired", [ALICE])
    saved = tmp_path / "plan.json"
    assert cli.main(["plan", str(path), "--out", str(saved), "--no-refresh"]) == 0
    shutil.move(path, tmp_path / "elsewhere")
    code, _, err = _run(capsys, "apply", str(saved), str(path))
    assert code == 1
    assert str(path) in err
    assert sum(box.federation.stats().calls.values()) == 0


def test_apply_a_desired_path_takes_no_second_path(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`apply PATH PATH` is a usage error (exit 1), not a silently ignored operand."""
    box, _ = served
    path = _write(tmp_path / "desired", [ALICE])
    code, _, err = _run(capsys, "apply", str(path), str(path), "--auto-approve", "--no-refresh")
    assert code == 1
    assert "one too many" in err
    assert sum(box.federation.stats().calls.values()) == 0


def test_apply_stops_when_earlier_work_stays_unsettled(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two lost createTask answers in a row: the next apply sends only its probe, no CREATE."""
    box, _ = served
    specs = fx.users(100)
    path = _write(tmp_path / "desired", specs)
    # The batch's answer is lost, then its probe's: the first apply leaves it unsettled.
    box.federation.configure_faults({Endpoint.CREATE_TASK: EndpointFaults(drop_after_next=2)})
    assert _run(capsys, "apply", str(path), "--auto-approve", "--no-refresh")[0] == 1
    document = fx.state_document(path)
    assert document is not None
    assert len(document["pending"]) == 1
    assert document["accounts"] == {}
    # The lost batch did create everyone (once its task ran); settling it fails once more.
    fx.wait_for(lambda: len(fx.tenant_view(box)) == len(specs))
    accepted = box.federation.stats().create_task_accepted
    box.federation.configure_faults({Endpoint.CREATE_TASK: EndpointFaults(drop_after_next=1)})
    code, out, err = _run(capsys, "apply", str(path), "--auto-approve", "--no-refresh")
    assert code == 1
    assert "an earlier apply left 1 batch(es) unsettled" in err
    assert "nothing new was sent" in err
    assert "hint: run `reconciler refresh` later" in err
    assert "reconciler will perform" not in out  # no plan was made
    assert box.federation.stats().create_task_accepted == accepted + 1  # the probe only
    assert box.federation.stats().rejected_codes.get("100-301", 0) == 0
    # Later, refresh settles it and nothing is left to do; nobody was created twice.
    box.federation.configure_faults({Endpoint.CREATE_TASK: EndpointFaults()})
    assert cli.main(["refresh", str(path)]) == 0
    assert cli.main(["plan", str(path), "--detailed-exitcode", "--no-refresh"]) == 0
    assert set(box.federation.stats().created_per_account.values()) == {1}


GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("name", sorted(p.name for p in GOLDEN.glob("plan-*.json")))
def test_each_change_is_encoded_as_canonical_json(name: str) -> None:
    """The digest's text of each change (built with its keys in sorted order, encoded
    without sorting) is the canonical JSON of the change's document, sorted keys and all:
    every kind of change the golden plans hold (create, modify, adopt, disable, expired
    grants, policy and guard rails), with and without ``adopted``."""
    plan = planfile.loads((GOLDEN / name).read_text(encoding="utf-8"), where=name)
    for change in plan.changes:
        document = planfile._reviewed_json(change)
        fast = planfile._canonical_presorted(document)
        assert fast == planfile._canonical(document), change.account


def test_a_key_out_of_order_would_not_pass_for_canonical() -> None:
    """Why the test above matters: encoding without sorting keeps the order it is given."""
    assert planfile._canonical_presorted({"b": 1, "a": 2}) != planfile._canonical({"b": 1, "a": 2})
