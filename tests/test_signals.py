"""SIGINT and SIGTERM during a real `reconciler apply`: exit 130/143, nothing half-recorded.

The sandbox is served from this process with slow tasks; each test waits (polling with a
deadline) for the moment it needs, signals the subprocess, then recovers with `refresh`
and `apply` and checks every account was created exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.cli import main as cli
from reconciler.sandbox import app
from reconciler.sandbox.federation_faults import Endpoint, EndpointFaults
from reconciler.sandbox.federation_rules import FederationSettings
from reconciler.sandbox.server import RunningSandbox
from tests.support import sandbox as fx

Served = tuple[app.Sandbox, RunningSandbox]
SLOW = FederationSettings(todo_seconds=0.3, doing_seconds=0.3)
USERS = 600  # six batches: far from done when the signal comes


@pytest.fixture(scope="module")
def server() -> Iterator[Served]:
    """One loopback sandbox with slow tasks for the module."""
    with fx.loopback(SLOW) as served:
        yield served


@pytest.fixture
def served(server: Served, monkeypatch: pytest.MonkeyPatch) -> Served:
    """The sandbox reset; this process's CLI points at it too (for the recovery)."""
    box, running = server
    fx.point_cli_at(box, running, monkeypatch)
    return box, running


class _Apply:
    """A `reconciler apply` subprocess; output to files so a full pipe never stalls it."""

    def __init__(self, running: RunningSandbox, path: Path) -> None:
        self.out, self.err = path.parent / "apply.out", path.parent / "apply.err"
        env = {k: v for k, v in os.environ.items() if not k.startswith("VOLCENGINE_")}
        env |= {**fx.env_for(running), "NO_COLOR": "1"}
        command = [sys.executable, "-m", "reconciler", "apply", str(path)]
        with self.out.open("w") as out, self.err.open("w") as err:
            self.process = subprocess.Popen(
                [*command, "--auto-approve", "--parallel", "2", "--no-refresh"],
                env=env,
                stdout=out,
                stderr=err,
            )

    def signal(self, number: int) -> None:
        """Send ``number`` to the process (which must still be running)."""
        assert self.process.poll() is None, "the apply ended before the signal"
        os.kill(self.process.pid, number)

    def finish(self) -> tuple[int, str, str]:
        """Wait (bounded) for the exit; its code, stdout and stderr."""
        try:
            code = self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        return code, self.out.read_text(), self.err.read_text()


def _pending(path: Path) -> list[dict[str, object]]:
    document = fx.state_document(path)
    return [] if document is None else list(document["pending"])


def _recover(box: app.Sandbox, path: Path, specs: list[fx.UserSpec]) -> None:
    """refresh settles what was in flight; apply finishes; every account created once."""
    assert cli.main(["refresh", str(path)]) == 0
    assert _pending(path) == []
    assert cli.main(["apply", str(path), "--auto-approve", "--no-refresh"]) == 0
    assert fx.tenant_view(box) == fx.desired_view(specs)
    created = box.federation.stats().created_per_account
    assert sorted(created) == [s.account for s in specs]
    assert set(created.values()) == {1}, "an account was created twice"


@pytest.mark.parametrize(
    ("number", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
def test_a_signal_stops_sending_records_what_is_in_flight_and_exits_128_plus_n(
    served: Served, tmp_path: Path, number: int, code: int
) -> None:
    """The first signal: no new batch, task ids recorded, exit 130/143 naming the next step."""
    box, running = served
    specs = fx.users(USERS)
    path = fx.write_desired(tmp_path / "desired", specs)
    run = _Apply(running, path)
    fx.wait_for(lambda: box.federation.stats().create_task_accepted >= 1, timeout=30)
    run.signal(number)
    exit_code, out, err = run.finish()
    assert exit_code == code, err
    name = signal.Signals(number).name
    assert f"error: interrupted by {name}" in err
    assert "hint: run `reconciler refresh` (or `reconciler apply`)" in err
    assert "Apply incomplete" in out
    pending = _pending(path)
    assert all(batch["task_id"] is not None for batch in pending)  # nothing half-recorded
    assert box.federation.stats().create_task_accepted < 6  # it stopped sending
    _recover(box, path, specs)


def test_a_second_signal_aborts_at_once_and_recovery_still_converges(
    served: Served, tmp_path: Path
) -> None:
    """Two signals while createTask hangs: abort now; the lost answer is settled by a probe."""
    box, running = served
    box.federation.configure_faults({Endpoint.CREATE_TASK: EndpointFaults(latency_seconds=3.0)})
    specs = fx.users(USERS)
    path = fx.write_desired(tmp_path / "desired", specs)
    run = _Apply(running, path)
    fx.wait_for(lambda: box.federation.stats().create_task_accepted >= 1, timeout=30)
    run.signal(signal.SIGINT)
    # Signals do not queue: the second must come after the first was handled.
    fx.wait_for(lambda: "send it again" in run.err.read_text(), timeout=10)
    run.signal(signal.SIGINT)
    exit_code, _, err = run.finish()
    assert exit_code == 130, err
    assert "aborted by a second SIGINT" in err
    assert [batch["task_id"] for batch in _pending(path)][:1] == [None]  # the intent, unanswered
    box.federation.configure_faults({Endpoint.CREATE_TASK: EndpointFaults()})
    _recover(box, path, specs)


def test_a_signal_before_anything_is_sent_exits_at_once(served: Served, tmp_path: Path) -> None:
    """Interrupted while the token is being fetched: nothing to record, exit 130 at once."""
    box, running = served
    box.federation.configure_faults({Endpoint.TOKEN: EndpointFaults(latency_seconds=5.0)})
    path = fx.write_desired(tmp_path / "desired", fx.users(USERS))
    run = _Apply(running, path)
    fx.wait_for(lambda: box.federation.stats().calls["token"] >= 1, timeout=30)
    run.signal(signal.SIGINT)
    exit_code, _, err = run.finish()
    assert exit_code == 130, err
    assert "error: interrupted by SIGINT before anything was sent" in err
    assert box.federation.stats().calls["createTask"] == 0
    assert fx.state_document(path) is None


# A command that installs no handler (validate here): Ctrl-C is the interpreter's own
# KeyboardInterrupt, which main turns into 130. `signal` is not imported at start-up
# (creating its enums cost every command ~3M instructions): the probe shows it was not
# loaded before the signal came, and that Ctrl-C still ends the command as before.
CTRL_C = """
import os, sys, time
import _signal  # the interpreter's own (not `signal`): a run started with SIGINT ignored
if _signal.getsignal(_signal.SIGINT) == _signal.SIG_IGN:  # (nohup, a background job) is
    _signal.signal(_signal.SIGINT, _signal.default_int_handler)  # given a terminal's Ctrl-C
from reconciler.cli import main, validate_command
def interrupted(options, *, now):
    sys.stdout.write(f"signal loaded: {'signal' in sys.modules}\\n")
    sys.stdout.flush()
    os.kill(os.getpid(), %d)  # what Ctrl-C sends
    time.sleep(30)
validate_command.validate = interrupted
sys.exit(main.main(["validate", "."]))
"""


def test_ctrl_c_in_a_command_without_handlers_exits_130(tmp_path: Path) -> None:
    """SIGINT during validate, with `signal` never imported: `error: interrupted`, exit 130."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", CTRL_C % signal.SIGINT],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout == "signal loaded: False\n"
    assert (done.returncode, done.stderr) == (130, "error: interrupted\n")
