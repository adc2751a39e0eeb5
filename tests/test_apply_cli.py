"""End-to-end apply through ``reconciler.cli.main`` against the sandbox served on loopback."""

from __future__ import annotations

import io
import json
import math
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import main as cli
from reconciler.sandbox import app
from reconciler.sandbox.control import ManualClock
from reconciler.sandbox.federation_faults import Endpoint, EndpointFaults
from reconciler.sandbox.federation_model import FederatedUser, TenantSeed
from reconciler.sandbox.federation_rules import FederationSettings
from reconciler.sandbox.server import RunningSandbox
from reconciler.stores.local import LocalStore
from reconciler.stores.model import AccountRecord
from tests.support import sandbox as fx
from tests.support.sandbox import UserSpec

Served = tuple[app.Sandbox, RunningSandbox]


# Tasks finish almost at once unless a test slows them: these tests are about outcomes.
FAST = FederationSettings(todo_seconds=0.0, doing_seconds=0.02)
START = 1_700_000_000.0  # where the manual clocks of the timing tests start


@pytest.fixture(scope="module")
def server() -> Iterator[Served]:
    """One loopback sandbox for the module (stopping a server costs half a second)."""
    with fx.loopback(FAST) as served:
        yield served


@pytest.fixture
def served(server: Served, monkeypatch: pytest.MonkeyPatch) -> Served:
    """The sandbox reset to a fresh default tenant; the CLI's variables point at it."""
    box, running = server
    fx.point_cli_at(box, running, monkeypatch)
    return box, running


def _apply(path: Path, *extra: str) -> int:
    return cli.main(["apply", str(path), "--auto-approve", *extra])


def _json_apply(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = _apply(path, "--format", "json", *extra)
    return code, json.loads(capsys.readouterr().out)


def _no_changes_left(path: Path) -> bool:
    return cli.main(["plan", str(path), "--detailed-exitcode", "--no-refresh"]) == 0


def _plan_json(path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert cli.main(["plan", str(path), "--format", "json", "--no-refresh"]) == 0
    plan: dict[str, Any] = json.loads(capsys.readouterr().out)
    return plan


def _planned(plan: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((c["action"], c["account"]) for c in plan["changes"])


def _assert_converged(box: app.Sandbox, path: Path, specs: list[UserSpec]) -> None:
    document = fx.state_document(path)
    assert document is not None
    assert document["pending"] == []
    assert fx.tenant_view(box) == fx.desired_view(specs)
    assert fx.state_view(document) == fx.desired_view(specs)
    created = box.federation.stats().created_per_account
    assert set(created.values()) <= {1}, "an account was created twice"


# -- happy path ------------------------------------------------------------------------


@pytest.mark.parametrize(("count", "batches"), [(1, 1), (100, 1), (101, 2), (250, 3)])
def test_apply_creates_users_in_ceil_n_over_100_tasks(
    served: Served, tmp_path: Path, count: int, batches: int
) -> None:
    """N new users → ceil(N/100) createTask calls; the tenant and the state match the YAML."""
    box, _ = served
    specs = fx.users(count)
    path = fx.write_desired(tmp_path / "desired", specs)
    assert _apply(path) == 0
    stats = box.federation.stats()
    assert batches == math.ceil(count / 100)
    assert stats.calls["createTask"] == batches
    assert stats.create_task_accepted == batches
    assert sum(stats.created_per_account.values()) == count
    _assert_converged(box, path, specs)
    assert _no_changes_left(path)


def test_modify_and_disable_reach_the_tenant(served: Served, tmp_path: Path) -> None:
    """Renames, role changes and removals are applied as MODIFY and DISABLE."""
    box, _ = served
    specs = fx.users(5)
    path = fx.write_desired(tmp_path / "desired", specs)
    assert _apply(path) == 0
    changed = [
        UserSpec(account=specs[0].account, name="Renamed", email=specs[0].email),
        UserSpec(
            account=specs[1].account,
            name=specs[1].name,
            email=specs[1].email,
            roles=("agent", "reporting"),
        ),
        *specs[2:4],
    ]
    fx.write_desired(path, changed)
    assert _apply(path) == 0
    tenant = fx.tenant_view(box)
    assert tenant[specs[0].account]["name"] == "Renamed"
    assert tenant[specs[1].account]["role_ids"] == sorted([fx.ROLE_AGENT, fx.ROLE_REPORTING])
    assert tenant[specs[4].account]["enabled"] is False
    document = fx.state_document(path)
    assert document is not None
    assert fx.state_view(document) == tenant
    assert _no_changes_left(path)


# -- retryable failures ----------------------------------------------------------------

RETRYABLE = {
    "createTask 429": {Endpoint.CREATE_TASK: EndpointFaults(fail_next=1, fail_status=429)},
    "createTask 502": {Endpoint.CREATE_TASK: EndpointFaults(fail_next=1, fail_status=502)},
    "createTask 503": {Endpoint.CREATE_TASK: EndpointFaults(fail_next=2, fail_status=503)},
    "queryTask 503": {Endpoint.QUERY_TASK: EndpointFaults(fail_next=2, fail_status=503)},
    "queryTask 504": {Endpoint.QUERY_TASK: EndpointFaults(fail_next=1, fail_status=504)},
    "token 502": {Endpoint.TOKEN: EndpointFaults(fail_next=1, fail_status=502)},
}


@pytest.mark.parametrize("faults", RETRYABLE.values(), ids=RETRYABLE.keys())
def test_retryable_failures_still_converge(
    served: Served, tmp_path: Path, faults: dict[Endpoint, EndpointFaults]
) -> None:
    """Throttling and gateway errors are retried: the apply still converges, exit 0."""
    box, _ = served
    box.federation.configure_faults(faults)
    specs = fx.users(150)
    path = fx.write_desired(tmp_path / "desired", specs)
    assert _apply(path) == 0
    assert box.federation.stats().create_task_accepted == 2
    _assert_converged(box, path, specs)
    assert _no_changes_left(path)


def test_role_service_failure_100_216_is_retried(served: Served, tmp_path: Path) -> None:
    """100-216 (the role service failed) is transient: resent, converges."""
    box, _ = served
    box.federation.configure_faults(role_service_failures=2)
    specs = fx.users(120)
    path = fx.write_desired(tmp_path / "desired", specs)
    assert _apply(path) == 0
    stats = box.federation.stats()
    assert stats.rejected_codes.get("100-216") == 2
    assert stats.create_task_accepted == 2
    _assert_converged(box, path, specs)


def test_faults_through_the_control_endpoint(served: Served, tmp_path: Path) -> None:
    """Faults set over HTTP (as a demo would) are honoured the same way."""
    import httpx  # noqa: PLC0415 - only this test talks to the control API directly

    box, server = served
    answer = httpx.post(
        f"{server.url}/_sandbox/federation/faults",
        json={"createTask": {"fail_next": 1, "fail_status": 429}},
    )
    assert answer.status_code == 200
    specs = fx.users(3)
    path = fx.write_desired(tmp_path / "desired", specs)
    assert _apply(path) == 0
    assert box.federation.stats().calls["createTask"] == 2
    _assert_converged(box, path, specs)


# -- non-retryable failures ------------------------------------------------------------


def test_role_not_in_tenant_refuses_its_batch_only(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """100-217 refuses a whole batch: those accounts fail, the others are recorded."""
    box, _ = served
    box.federation.change_roles(fx.APP_KEY, remove=(fx.ROLE_REPORTING,))
    good = fx.users(100, prefix="a")
    bad = fx.users(30, prefix="b", roles=("agent", "reporting"))
    path = fx.write_desired(tmp_path / "desired", [*good, *bad])
    code, report = _json_apply(path, capsys)
    assert code == 1
    assert not report["ok"]
    assert sorted(f["account"] for f in report["failed"]) == [s.account for s in bad]
    assert {f["code"] for f in report["failed"]} == {"100-217"}
    assert all(fx.ROLE_REPORTING in f["message"] for f in report["failed"])
    assert len(report["applied"]) == 100
    document = fx.state_document(path)
    assert document is not None
    assert document["pending"] == []
    assert fx.state_view(document) == fx.desired_view(good) == fx.tenant_view(box)
    assert _planned(_plan_json(path, capsys)) == [("CREATE", s.account) for s in bad]


@pytest.mark.parametrize("status", [400, 404])
def test_http_4xx_stops_the_run_once_and_keeps_the_state_truthful(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str], status: int
) -> None:
    """A 400/404 without a resultCode is about the call, not a batch: one error, nothing after."""
    box, _ = served
    box.federation.configure_faults(
        {Endpoint.CREATE_TASK: EndpointFaults(fail_next=1, fail_status=status)}
    )
    specs = fx.users(150)
    path = fx.write_desired(tmp_path / "desired", specs)
    capsys.readouterr()
    code = _apply(path, "--format", "json", "--parallel", "1")
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert code == 1
    assert report["failed"] == []  # said once, not once per account
    assert f"HTTP {status}" in report["error"]["message"]
    assert captured.err.count("error:") == 1
    assert f"HTTP {status}" in captured.err
    assert box.federation.stats().calls["createTask"] == 1  # no batch after it, none resent
    document = fx.state_document(path)
    assert document is not None
    assert (document["pending"], document["accounts"]) == ([], {})
    assert len(_planned(_plan_json(path, capsys))) == 150
    assert _apply(path) == 0
    _assert_converged(box, path, specs)


# -- run-time failures (failDataList) --------------------------------------------------


def test_create_of_an_existing_account_fails_at_run_time(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """CREATE of an account the tenant already has: failCode reported, not recorded."""
    box, _ = served
    box.federation.seed_tenant(
        TenantSeed(
            app_key=fx.APP_KEY,
            app_secret=fx.APP_SECRET,
            role_ids=tuple(fx.ROLES.values()),
            users={"user00001": FederatedUser(name="Already There", email="x@example.com")},
        )
    )
    specs = fx.users(3)
    path = fx.write_desired(tmp_path / "desired", specs)
    code, report = _json_apply(path, capsys)
    assert code == 1
    [failure] = report["failed"]
    assert (failure["account"], failure["action"], failure["code"]) == (
        "user00001",
        "CREATE",
        "100-301",
    )
    assert failure["message"]
    document = fx.state_document(path)
    assert document is not None
    assert sorted(document["accounts"]) == ["user00000", "user00002"]
    assert _planned(_plan_json(path, capsys)) == [("CREATE", "user00001")]


def test_modify_of_an_unknown_account_keeps_the_old_record(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """MODIFY of a verified account the tenant does not know: reported, the record stays.

    (An adopted, unverified account is recorded as absent instead: ``test_adopt.py``.)
    """
    box, _ = served
    specs = fx.users(2)
    path = fx.write_desired(tmp_path / "desired", specs)
    assert _apply(path) == 0
    # A verified record the tenant does not have (someone deleted it there), then a change.
    ghost = UserSpec(account="ghost", name="Ghost", email="ghost@example.com")
    store = LocalStore(path / ".reconciler" / "state.json")
    current = store.read()
    assert current is not None
    record = AccountRecord(
        account="ghost", name="Ghost", email=ghost.email, role_ids=(fx.ROLE_AGENT,), enabled=True
    )
    store.write(current.successor(accounts={**current.accounts, "ghost": record}))
    fx.write_desired(path, [*specs, UserSpec(account="ghost", name="Ghost Two", email=ghost.email)])
    code, report = _json_apply(path, capsys)
    assert code == 1
    [failure] = report["failed"]
    assert (failure["account"], failure["action"], failure["code"]) == (
        "ghost",
        "MODIFY",
        "100-302",
    )
    document = fx.state_document(path)
    assert document is not None
    assert document["accounts"]["ghost"]["name"] == "Ghost"
    assert "ghost" not in fx.tenant_view(box)


@contextmanager
def _held_tasks(
    box: app.Sandbox, clock: ManualClock, *, release_when: Callable[[], bool]
) -> Iterator[None]:
    """While the block runs, tasks move only when ``release_when()`` holds: then by a lifetime.

    The sandbox runs on ``clock``; a thread watches the sandbox (polling with a deadline) and
    moves the clock past every accepted task's lifecycle each time the condition holds.
    """
    stop = threading.Event()
    failures: list[BaseException] = []
    lifetime = 2 * (box.federation.settings.todo_seconds + box.federation.settings.doing_seconds)

    def drive() -> None:
        try:
            while not stop.is_set():
                fx.wait_for(lambda: stop.is_set() or release_when(), timeout=60)
                if not stop.is_set():
                    clock.advance(lifetime)
        except BaseException as exc:  # reported by the caller's thread
            failures.append(exc)

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    try:
        yield
    finally:
        stop.set()
        driver.join(timeout=60)
    assert failures == []


def test_role_removed_after_acceptance_fails_at_run_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A role removed while the task waits: the entry fails with 100-217, the rest land."""
    clock = ManualClock(START)
    specs = [*fx.users(2), *fx.users(1, prefix="sup", roles=("supervisor",))]
    path = fx.write_desired(tmp_path / "desired", specs)
    with fx.loopback(FAST, clock=clock) as (box, running):
        fx.point_cli_at(box, running, monkeypatch)
        removed = threading.Event()

        def accepted_then_removed() -> bool:
            # The task waits on the stopped clock: the role goes before it can run.
            if box.federation.stats().create_task_accepted >= 1 and not removed.is_set():
                box.federation.change_roles(fx.APP_KEY, remove=(fx.ROLE_SUPERVISOR,))
                removed.set()
            return removed.is_set()

        with _held_tasks(box, clock, release_when=accepted_then_removed):
            code, report = _json_apply(path, capsys)
    assert code == 1
    [failure] = report["failed"]
    assert (failure["account"], failure["code"]) == ("sup00000", "100-217")
    assert fx.ROLE_SUPERVISOR in failure["message"]
    document = fx.state_document(path)
    assert document is not None
    assert sorted(document["accounts"]) == ["user00000", "user00001"]


# -- pacing ----------------------------------------------------------------------------


def test_pending_limit_waits_and_resends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--parallel above the tenant's limit: 100-113 is waited out, each batch accepted once."""
    clock = ManualClock(START)
    specs = fx.users(500)
    path = fx.write_desired(tmp_path / "desired", specs)
    settings = FederationSettings(pending_task_limit=2, todo_seconds=0.1, doing_seconds=0.02)
    with fx.loopback(settings, clock=clock) as (box, running):
        fx.point_cli_at(box, running, monkeypatch)
        refusals = [0]

        def refused_or_all_sent() -> bool:
            # Tasks hold until the applier has hit the limit (or sent everything): a 100-113
            # is certain, however fast or slow this machine is.
            stats = box.federation.stats()
            refused = stats.rejected_codes.get("100-113", 0)
            if refused > refusals[0] or stats.create_task_accepted == 5:
                refusals[0] = refused
                return True
            return False

        with _held_tasks(box, clock, release_when=refused_or_all_sent):
            assert _apply(path, "--parallel", "5") == 0
        stats = box.federation.stats()
        assert stats.create_task_accepted == 5
        assert stats.max_pending_observed <= 2
        assert stats.rejected_codes.get("100-113", 0) >= 1
        # The applier learns the limit: it does not hammer createTask while waiting.
        assert stats.rejected_codes["100-113"] <= stats.create_task_accepted
        _assert_converged(box, path, specs)


# -- lost responses --------------------------------------------------------------------


def test_dropped_create_task_response_is_settled_without_double_create(
    served: Served, tmp_path: Path
) -> None:
    """createTask processed but its answer lost: a probe settles it, nobody is created twice."""
    box, _ = served
    box.federation.configure_faults({Endpoint.CREATE_TASK: EndpointFaults(drop_after_next=1)})
    specs = fx.users(250)
    path = fx.write_desired(tmp_path / "desired", specs)
    assert _apply(path) == 0  # probe, then the rest of the plan, in one run
    document = fx.state_document(path)
    assert document is not None
    assert document["pending"] == []  # the probe settled the lost batch
    # The lost batch was settled by one probe task: 3 batches + 1 probe accepted in all.
    _assert_converged(box, path, specs)
    stats = box.federation.stats()
    assert stats.create_task_accepted == 4
    assert sum(stats.created_per_account.values()) == 250
    assert _no_changes_left(path)


# -- saved plans -----------------------------------------------------------------------


def test_saved_plan_applies_exactly(served: Served, tmp_path: Path) -> None:
    """plan --out then apply FILE applies that plan (no confirmation needed)."""
    box, _ = served
    specs = fx.users(120)
    path = fx.write_desired(tmp_path / "desired", specs)
    saved = tmp_path / "plan.json"
    assert cli.main(["plan", str(path), "--out", str(saved), "--no-refresh"]) == 0
    assert cli.main(["apply", str(saved), str(path)]) == 0
    _assert_converged(box, path, specs)


def test_stale_plan_after_the_state_changed(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A saved plan made before another apply is refused: nothing sent."""
    box, _ = served
    specs = fx.users(3)
    path = fx.write_desired(tmp_path / "desired", specs)
    saved = tmp_path / "plan.json"
    assert cli.main(["plan", str(path), "--out", str(saved), "--no-refresh"]) == 0
    assert _apply(path) == 0
    calls = box.federation.stats().calls["createTask"]
    capsys.readouterr()
    assert cli.main(["apply", str(saved), str(path)]) == 1
    assert "stale plan" in capsys.readouterr().err
    assert box.federation.stats().calls["createTask"] == calls


def test_stale_plan_after_the_yaml_changed(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A saved plan whose YAML was edited since is refused; the state is untouched."""
    box, _ = served
    specs = fx.users(3)
    path = fx.write_desired(tmp_path / "desired", specs)
    saved = tmp_path / "plan.json"
    assert cli.main(["plan", str(path), "--out", str(saved), "--no-refresh"]) == 0
    fx.write_desired(path, fx.users(4))
    capsys.readouterr()
    assert cli.main(["apply", str(saved), str(path)]) == 1
    err = capsys.readouterr().err
    assert "stale plan" in err
    assert "desired-state files changed" in err
    assert sum(box.federation.stats().calls.values()) == 0
    assert fx.state_document(path) is None


def test_flow_style_yaml_file_is_the_desired_state_not_a_plan(
    served: Served, tmp_path: Path
) -> None:
    """A .yaml file that starts with ``{`` (flow style) is applied as the desired state."""
    box, _ = served
    flow = tmp_path / "desired.yaml"
    flow.write_text(
        f'{{version: 1, roles: {{agent: {{id: "{fx.ROLE_AGENT}"}}}}, users: [{{account: '
        "flow.user, name: Flow User, email: flow.user@example.com, roles: [agent]}]}\n",
        encoding="utf-8",
    )
    assert cli.main(["apply", str(flow), "--auto-approve", "--no-refresh"]) == 0
    assert set(fx.tenant_view(box)) == {"flow.user"}


def test_a_plan_saved_under_any_other_name_is_read_as_a_plan(
    served: Served, tmp_path: Path
) -> None:
    """Any file that is not .yaml/.yml is a saved plan, whatever its suffix."""
    box, _ = served
    specs = fx.users(2)
    path = fx.write_desired(tmp_path / "desired", specs)
    saved = tmp_path / "reviewed.plan"
    assert cli.main(["plan", str(path), "--out", str(saved), "--no-refresh"]) == 0
    assert cli.main(["apply", str(saved), str(path)]) == 0
    _assert_converged(box, path, specs)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("notes.json", '{"hello": "world"}\n'),
        ("notes.json", "not json at all\n"),
        ("desired.txt", "{version: 1, users: []}\n"),
    ],
)
def test_a_file_that_is_neither_desired_state_nor_plan_is_refused(
    served: Served,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: str,
) -> None:
    """apply FILE with FILE neither .yaml/.yml nor a plan: exit 1 saying so, nothing sent."""
    box, _ = served
    target = tmp_path / name
    target.write_text(content, encoding="utf-8")
    capsys.readouterr()
    assert cli.main(["apply", str(target), "--auto-approve"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"error: {target} is neither a desired-state .yaml/.yml file nor a saved plan"
    )
    assert "\nhint: " in err
    assert sum(box.federation.stats().calls.values()) == 0
    assert not (tmp_path / ".reconciler").exists()


# -- configuration and safety ----------------------------------------------------------


@pytest.mark.parametrize("missing", [fx.ENV_URL, fx.ENV_KEY, fx.ENV_SECRET])
def test_missing_credential_names_the_variable_and_sends_nothing(
    served: Served,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    missing: str,
) -> None:
    """A missing federation variable: exit 1 naming it, no call made, no state written."""
    box, _ = served
    monkeypatch.delenv(missing)
    path = fx.write_desired(tmp_path / "desired", fx.users(3))
    capsys.readouterr()
    assert _apply(path) == 1
    err = capsys.readouterr().err
    assert f"error: missing environment variable: {missing}" in err
    assert sum(box.federation.stats().calls.values()) == 0
    assert fx.state_document(path) is None


def test_secret_is_never_printed(
    served: Served,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Neither the right nor a wrong secret appears in any output, even with --debug."""
    box, _ = served
    path = fx.write_desired(tmp_path / "desired", fx.users(3))
    wrong = "wrong-secret-4c1f9e"
    monkeypatch.setenv(fx.ENV_SECRET, wrong)
    capsys.readouterr()
    assert cli.main(["--debug", "apply", str(path), "--auto-approve"]) == 1
    rejected = capsys.readouterr()
    assert "RECONCILER_FEDERATION_APP_KEY" in rejected.out + rejected.err
    monkeypatch.setenv(fx.ENV_SECRET, fx.APP_SECRET)
    box.federation.configure_faults(
        {Endpoint.CREATE_TASK: EndpointFaults(fail_next=1, fail_status=400)}
    )
    assert cli.main(["--debug", "apply", str(path), "--auto-approve"]) == 1
    assert cli.main(["apply", str(path), "--auto-approve", "--format", "json"]) == 0
    assert cli.main(["refresh", str(path)]) == 0
    captured = capsys.readouterr()
    for text in (rejected.out, rejected.err, captured.out, captured.err):
        assert wrong not in text
        assert fx.APP_SECRET not in text


def test_apply_without_auto_approve_and_no_terminal_is_refused(
    served: Served,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No --auto-approve and stdin is not a terminal: refused, nothing sent."""
    box, _ = served
    monkeypatch.setattr(sys, "stdin", io.StringIO("yes\n"))
    path = fx.write_desired(tmp_path / "desired", fx.users(3))
    capsys.readouterr()
    assert cli.main(["apply", str(path)]) == 1
    assert "needs confirmation" in capsys.readouterr().err
    assert box.federation.stats().calls["createTask"] == 0
    assert fx.state_document(path) is None


def test_guard_rail_blocks_apply_with_exit_3(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Too many disables: exit 3 and not a single call."""
    box, _ = served
    policy = "version: 1\npolicy:\n  max_disable:\n    count: 1\n"
    specs = fx.users(5)
    path = fx.write_desired(tmp_path / "desired", specs, policy=policy)
    assert _apply(path) == 0
    before = box.federation.stats().calls
    fx.write_desired(path, specs[:2], policy=policy)
    capsys.readouterr()
    assert _apply(path) == 3
    assert "guard rail" in capsys.readouterr().err
    assert box.federation.stats().calls == before
    assert all(u["enabled"] for u in fx.tenant_view(box).values())


# -- output ----------------------------------------------------------------------------


def test_json_report(served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--format json prints one machine-readable report on stdout."""
    box, _ = served
    specs = fx.users(150)
    path = fx.write_desired(tmp_path / "desired", specs)
    code, report = _json_apply(path, capsys)
    assert code == 0
    assert report["ok"] is True
    assert report["failed"] == []
    assert report["unresolved"] == []
    assert sorted(a["account"] for a in report["applied"]) == [s.account for s in specs]
    assert {a["action"] for a in report["applied"]} == {"CREATE"}
    counters = report["counters"]
    assert counters["create_task_calls"] == 2
    assert counters["batches_sent"] == counters["tasks_done"] == 2
    assert counters["users_applied"] == 150
    assert counters["query_task_calls"] == box.federation.stats().query_task_calls


def test_progress_lines_on_a_non_terminal(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a non-TTY stderr, progress is plain lines (no carriage returns), ending complete."""
    specs = fx.users(250)
    path = fx.write_desired(tmp_path / "desired", specs)
    capsys.readouterr()
    assert _apply(path) == 0
    captured = capsys.readouterr()
    assert "\r" not in captured.err
    assert "batches 3/3 sent, tasks 3 done, users 250/250 applied, 0 failed" in captured.err
    assert "Apply complete: 250 applied, 0 failed; 3 createTask" in captured.out


def test_refresh_with_nothing_outstanding(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """refresh on a settled state sends nothing and says so."""
    box, _ = served
    path = fx.write_desired(tmp_path / "desired", fx.users(2))
    assert _apply(path) == 0
    before = box.federation.stats().calls
    capsys.readouterr()
    assert cli.main(["refresh", str(path)]) == 0
    assert "Nothing outstanding" in capsys.readouterr().out
    assert box.federation.stats().calls == before


def test_a_console_run_leaves_the_states_and_the_plan_to_the_os(
    served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run as the console script, apply (of a folder or a saved plan) and refresh hand what
    they built to ``exiting.keep``: freeing a 100k-account apply's states and plan took
    0.15-0.2 s after the lock's release. In-process (the tests) nothing is kept."""
    from reconciler.apply.engine import Applier  # noqa: PLC0415 - only this test names them
    from reconciler.cli import exiting  # noqa: PLC0415
    from reconciler.desired.model import DesiredState  # noqa: PLC0415
    from reconciler.plan.model import Plan  # noqa: PLC0415

    specs = fx.users(120)
    path = fx.write_desired(tmp_path / "desired", specs)
    saved = tmp_path / "plan.json"
    kept: list[object] = []
    monkeypatch.setattr(exiting, "_kept", kept)
    assert _apply(path) == 0
    assert {type(value) for value in kept} == {DesiredState, Applier, Plan}
    kept.clear()
    assert cli.main(["plan", str(path), "--out", str(saved), "--no-refresh"]) == 0
    assert cli.main(["apply", str(saved), str(path)]) == 0
    assert {type(value) for value in kept} == {DesiredState, Applier, Plan}
    kept.clear()
    assert cli.main(["refresh", str(path)]) == 0
    assert {type(value) for value in kept} == {Applier}
