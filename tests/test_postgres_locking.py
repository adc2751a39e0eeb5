"""PostgreSQL locking and compare-and-swap between real processes.

Every runner here is a separate ``python -c`` process talking to the test database, so
the lock is exercised across sessions exactly as two CI jobs would: fail fast naming the
holder, wait with a timeout, survive ``kill -9`` of the holder, stop a force-unlocked
holder before it writes, and let exactly one of several racing writers win. A runner
that waits for the lock has a fake clock: its timeout passes without the test waiting.
"""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.errors import StateLocked
from reconciler.stores.postgres import PostgresStore
from tests.support.builders import sample_state
from tests.support.pg import drop_workspaces, pg_dsn, unique_workspace

REPO = Path(__file__).resolve().parent.parent
WAIT = 30.0  # generous deadline for a process to report; reached only when broken

# Takes the lock, says so, holds it until a line arrives on stdin; then, with argv[3],
# writes the state's successor as a holder would after a batch.
HOLDER = """
import sys
from reconciler.errors import StateLockLost
from reconciler.stores.model import State
from reconciler.stores.postgres import PostgresStore
store = PostgresStore.from_dsn(sys.argv[1], workspace=sys.argv[2])
with store.lock("apply") as lock:
    print("locked", lock.lock_id, flush=True)
    sys.stdin.readline()
    if len(sys.argv) > 3:
        try:
            store.write((store.read() or State.empty()).successor())
            print("wrote", flush=True)
        except StateLockLost:
            print("lock-lost", flush=True)
print("released", flush=True)
"""

# Tries once without waiting, then (when argv[3] > 0) waits up to argv[3] seconds of a
# fake clock: each poll's sleep moves it on at once.
CONTENDER = """
import sys
from reconciler.errors import StateLocked
from reconciler.stores.postgres import PostgresStore
now = [0.0]
def sleep(seconds):
    now[0] += seconds
store = PostgresStore.from_dsn(
    sys.argv[1], workspace=sys.argv[2], monotonic=lambda: now[0], sleep=sleep
)
try:
    with store.lock("plan"):
        print("acquired-at-once", flush=True)
        sys.exit(0)
except StateLocked as exc:
    print("busy", exc.lock_id, exc.message.replace("\\n", " "), flush=True)
timeout = float(sys.argv[3])
if timeout > 0:
    try:
        with store.lock("plan", timeout=timeout):
            print("acquired", flush=True)
    except StateLocked:
        print("timed-out", round(now[0], 2), flush=True)
        sys.exit(3)
"""

# Reads the state, says which serial, writes its successor when told to go.
WRITER = """
import sys
from reconciler.errors import StateConflict
from reconciler.stores.model import AccountRecord
from reconciler.stores.postgres import PostgresStore
store = PostgresStore.from_dsn(sys.argv[1], workspace=sys.argv[2])
current = store.read()
print("read", current.serial, flush=True)
sys.stdin.readline()
record = AccountRecord(account=sys.argv[3], name="n", email="", role_ids=(), enabled=True)
try:
    store.write(current.successor(accounts={sys.argv[3]: record}))
    print("ok", flush=True)
except StateConflict:
    print("conflict", flush=True)
"""


class Runner:
    """A ``python -c`` process whose stdout lines are collected by a reader thread."""

    def __init__(self, code: str, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, prefix: str) -> str:
        """The next output line, which must start with ``prefix`` (waits up to WAIT)."""
        try:
            line = self.lines.get(timeout=WAIT)
        except queue.Empty:
            pytest.fail(f"no output within {WAIT}s; stderr: {self._stderr()}")
        assert line.startswith(prefix), f"{line!r}; stderr: {self._stderr()}"
        return line

    def send(self, line: str = "go") -> None:
        """Write one line to the process's stdin."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def finish(self) -> int:
        """Wait for the exit code."""
        return self.proc.wait(timeout=WAIT)

    def _stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return "(still running)"
        return self.proc.stderr.read()[-2000:]

    def stop(self) -> None:
        """Kill the process if it still runs."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=WAIT)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def workspace() -> Iterator[tuple[str, str]]:
    """(DSN, a fresh workspace), cleaned up afterwards."""
    dsn = pg_dsn()
    name = unique_workspace()
    yield dsn, name
    drop_workspaces(dsn, name)


@pytest.fixture
def runners() -> Iterator[list[Runner]]:
    """Processes started by a test; killed at its end whatever happened."""
    started: list[Runner] = []
    yield started
    for runner in started:
        runner.stop()


def start(runners: list[Runner], code: str, *args: str) -> Runner:
    """Start a runner and register it for cleanup."""
    runner = Runner(code, *args)
    runners.append(runner)
    return runner


def test_second_process_fails_fast_naming_the_holder(
    workspace: tuple[str, str], runners: list[Runner]
) -> None:
    """A runner that does not wait is refused with the holder's host, pid, operation, id."""
    holder = start(runners, HOLDER, *workspace)
    lock_id = holder.expect("locked").split()[1]
    contender = start(runners, CONTENDER, *workspace, "0")
    line = contender.expect("busy")
    assert contender.finish() == 0
    assert line.split()[1] == lock_id
    for part in (lock_id, f"pid {holder.proc.pid}", socket.gethostname(), "`apply`"):
        assert part in line


def test_waiting_process_times_out(workspace: tuple[str, str], runners: list[Runner]) -> None:
    """A runner waiting with a timeout gives up at it (its clock) while the holder holds on."""
    holder = start(runners, HOLDER, *workspace)
    holder.expect("locked")
    contender = start(runners, CONTENDER, *workspace, "1.0")
    contender.expect("busy")
    waited = float(contender.expect("timed-out").split()[1])
    assert waited == 1.0
    assert contender.finish() == 3


def test_waiting_process_gets_the_lock_on_release(
    workspace: tuple[str, str], runners: list[Runner]
) -> None:
    """A runner that found the lock busy and waits gets it once the holder releases."""
    holder = start(runners, HOLDER, *workspace)
    holder.expect("locked")
    contender = start(runners, CONTENDER, *workspace, "1e9")  # a fake clock: polls, never waits
    contender.expect("busy")
    holder.send()
    holder.expect("released")
    contender.expect("acquired")
    assert contender.finish() == 0
    assert holder.finish() == 0


def test_kill_9_of_the_holder_frees_the_lock(
    workspace: tuple[str, str], runners: list[Runner]
) -> None:
    """The server ends a killed holder's session, and its lock with it."""
    holder = start(runners, HOLDER, *workspace)
    lock_id = holder.expect("locked").split()[1]
    store = PostgresStore.from_dsn(workspace[0], workspace=workspace[1])
    with pytest.raises(StateLocked) as caught, store.lock("plan"):
        pass
    assert caught.value.lock_id == lock_id
    holder.proc.kill()  # SIGKILL: no cleanup code runs in the holder
    holder.finish()
    started = time.monotonic()
    with store.lock("plan", timeout=WAIT) as lock:  # polls until the server noticed
        assert lock.lock_id != lock_id
    assert time.monotonic() - started < WAIT


def test_force_unlock_ends_a_live_holders_session(
    workspace: tuple[str, str], runners: list[Runner]
) -> None:
    """force-unlock with the right id frees the lock of a hung holder, which survives it."""
    holder = start(runners, HOLDER, *workspace)
    lock_id = holder.expect("locked").split()[1]
    store = PostgresStore.from_dsn(workspace[0], workspace=workspace[1])
    store.force_unlock(lock_id)
    with store.lock("plan") as lock:
        assert lock.lock_id != lock_id
    holder.send()
    holder.expect("released")  # its own release finds the session gone and moves on
    assert holder.finish() == 0


def test_a_force_unlocked_holder_stops_before_it_writes(
    workspace: tuple[str, str], runners: list[Runner]
) -> None:
    """The unlocked holder wakes up and tries to write: refused, it does not reconnect."""
    store = PostgresStore.from_dsn(workspace[0], workspace=workspace[1])
    store.write(sample_state())
    holder = start(runners, HOLDER, *workspace, "write")
    lock_id = holder.expect("locked").split()[1]
    store.force_unlock(lock_id)
    with store.lock("apply"):  # the next runner holds the state now
        holder.send()
        holder.expect("lock-lost")
    holder.expect("released")
    assert holder.finish() == 0
    stored = store.read()
    assert stored is not None
    assert stored.serial == 1


@pytest.mark.parametrize("writers", [2, 4])
def test_racing_writers_exactly_one_wins(
    workspace: tuple[str, str], runners: list[Runner], writers: int
) -> None:
    """Writers that all read serial 1 and all write serial 2: one succeeds, the rest conflict."""
    store = PostgresStore.from_dsn(workspace[0], workspace=workspace[1])
    store.write(sample_state())
    racers = [start(runners, WRITER, *workspace, f"racer{i}") for i in range(writers)]
    for racer in racers:
        racer.expect("read 1")
    for racer in racers:
        racer.send()
    results = [racer.expect("") for racer in racers]
    assert sorted(results) == ["conflict"] * (writers - 1) + ["ok"]
    winner = f"racer{results.index('ok')}"
    stored = store.read()
    assert stored is not None
    assert stored.serial == 2
    assert set(stored.accounts) == {winner}
