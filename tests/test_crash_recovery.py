"""Crash safety: ``kill -9`` a real ``reconciler apply`` process mid-run, then recover.

The sandbox is served from this process with slow tasks, so the test can pick its moment
by polling the sandbox's counters and the state file; afterwards ``refresh`` and ``apply``
must converge with every account created exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.cli import main as cli
from reconciler.sandbox import app
from reconciler.sandbox.federation_faults import Endpoint, EndpointFaults
from reconciler.sandbox.federation_rules import FederationSettings
from reconciler.sandbox.server import RunningSandbox
from reconciler.stores.local import LocalStore
from tests.support import sandbox as fx

Served = tuple[app.Sandbox, RunningSandbox]
SLOW = FederationSettings(todo_seconds=0.25, doing_seconds=0.25)
USERS = 600  # six batches


@pytest.fixture(scope="module")
def server() -> Iterator[Served]:
    """One loopback sandbox with slow tasks for the module."""
    with fx.loopback(SLOW) as served:
        yield served


@pytest.fixture
def served(server: Served, monkeypatch: pytest.MonkeyPatch) -> Served:
    """The sandbox reset; this process's CLI points at it too."""
    box, running = server
    fx.point_cli_at(box, running, monkeypatch)
    return box, running


def _spawn(running: RunningSandbox, path: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, **fx.env_for(running)}
    return subprocess.Popen(
        [sys.executable, "-m", "reconciler", *args, str(path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _kill_when(process: subprocess.Popen[bytes], moment: Callable[[], bool]) -> None:
    """SIGKILL ``process`` as soon as ``moment()`` holds (it must still be running)."""
    try:
        fx.wait_for(lambda: moment() or process.poll() is not None, timeout=20)
        assert process.poll() is None, "the apply finished before the chosen moment"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL


def _recorded(path: Path) -> tuple[int, int, int]:
    """(accounts, pending batches, pending batches with a task id) in the state file now."""
    try:
        document = fx.state_document(path)
    except ValueError:  # never expected: writes are atomic; let the caller see it
        raise
    if document is None:
        return 0, 0, 0
    pending = document["pending"]
    return (
        len(document["accounts"]),
        len(pending),
        sum(1 for batch in pending if batch["task_id"] is not None),
    )


def _recover_and_check(box: app.Sandbox, path: Path, specs: list[fx.UserSpec]) -> None:
    """refresh settles, one apply finishes; the tenant, the state and the YAML agree."""
    assert cli.main(["refresh", str(path)]) == 0
    document = fx.state_document(path)
    assert document is not None
    assert document["pending"] == []  # refresh settled every recorded batch
    tenant = fx.tenant_view(box)
    for account, record in fx.state_view(document).items():
        assert tenant[account] == record  # the state never claims more than the tenant has
    assert cli.main(["apply", str(path), "--auto-approve"]) == 0
    assert LocalStore(path / ".reconciler" / "state.json").read() is not None  # schema-valid
    document = fx.state_document(path)
    assert document is not None
    assert document["pending"] == []
    assert fx.tenant_view(box) == fx.desired_view(specs)
    assert fx.state_view(document) == fx.desired_view(specs)
    created = box.federation.stats().created_per_account
    assert sorted(created) == [s.account for s in specs]
    assert set(created.values()) == {1}, "an account was created twice"
    assert cli.main(["plan", str(path), "--detailed-exitcode", "--no-refresh"]) == 0


def test_kill_after_the_first_task_is_accepted(served: Served, tmp_path: Path) -> None:
    """Killed right after createTask was accepted (its id may not be recorded yet)."""
    box, running = served
    specs = fx.users(USERS)
    path = fx.write_desired(tmp_path / "desired", specs)
    process = _spawn(running, path, "apply", "--auto-approve", "--parallel", "3")
    _kill_when(process, lambda: box.federation.stats().create_task_accepted >= 1)
    _recover_and_check(box, path, specs)


def test_kill_after_some_tasks_are_done(served: Served, tmp_path: Path) -> None:
    """Killed with some batches recorded as applied and others still in flight."""
    box, running = served
    specs = fx.users(USERS)
    path = fx.write_desired(tmp_path / "desired", specs)
    process = _spawn(running, path, "apply", "--auto-approve", "--parallel", "2")
    _kill_when(process, lambda: _recorded(path)[0] >= 100 and _recorded(path)[2] >= 1)
    accounts, _pending, followed = _recorded(path)
    assert accounts >= 100
    assert followed >= 1
    _recover_and_check(box, path, specs)


def test_kill_after_intents_before_anything_is_sent(served: Served, tmp_path: Path) -> None:
    """Killed after the intents were written but before any createTask was processed."""
    box, running = served
    # The token comes first; then every createTask is turned away unprocessed (503, retried).
    box.federation.configure_faults(
        {Endpoint.CREATE_TASK: EndpointFaults(fail_next=1000, fail_status=503)}
    )
    specs = fx.users(USERS)
    path = fx.write_desired(tmp_path / "desired", specs)
    process = _spawn(running, path, "apply", "--auto-approve", "--parallel", "3")
    _kill_when(
        process, lambda: _recorded(path)[1] >= 3 and box.federation.stats().calls["createTask"]
    )
    assert box.federation.stats().create_task_accepted == 0
    box.federation.configure_faults({Endpoint.CREATE_TASK: EndpointFaults()})
    _recover_and_check(box, path, specs)


def test_kill_while_a_create_task_response_is_lost(served: Served, tmp_path: Path) -> None:
    """Killed while waiting on a createTask the server processed but will never answer."""
    box, running = served
    box.federation.configure_faults(
        {Endpoint.CREATE_TASK: EndpointFaults(latency_seconds=5.0, drop_after_next=1)}
    )
    specs = fx.users(USERS)
    path = fx.write_desired(tmp_path / "desired", specs)
    process = _spawn(running, path, "apply", "--auto-approve", "--parallel", "3")
    _kill_when(process, lambda: box.federation.stats().create_task_accepted >= 1)
    accounts, pending, followed = _recorded(path)
    assert (accounts, followed) == (0, 0)
    assert pending >= 1  # an intent without a task id: only a probe can settle it
    box.federation.configure_faults({Endpoint.CREATE_TASK: EndpointFaults()})
    _recover_and_check(box, path, specs)


def test_kill_again_during_recovery(served: Served, tmp_path: Path) -> None:
    """Killed twice (the second time while an apply resumes the first); still converges."""
    box, running = served
    specs = fx.users(USERS)
    path = fx.write_desired(tmp_path / "desired", specs)
    first = _spawn(running, path, "apply", "--auto-approve", "--parallel", "3")
    _kill_when(first, lambda: box.federation.stats().create_task_accepted >= 2)
    accepted = box.federation.stats().create_task_accepted
    second = _spawn(running, path, "apply", "--auto-approve", "--parallel", "3")
    _kill_when(second, lambda: box.federation.stats().create_task_accepted >= accepted + 2)
    _recover_and_check(box, path, specs)
