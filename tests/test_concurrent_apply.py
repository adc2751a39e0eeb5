"""Two real `reconciler apply` processes against one PostgreSQL state.

One holds the lock for its whole apply; the other fails fast naming the holder, or
waits with --lock-timeout and then finds nothing left to do. Never do both write:
every account is created exactly once on the tenant.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from reconciler.sandbox.federation_rules import FederationSettings
from reconciler.stores.postgres import PostgresStore
from tests.support.pg import pg_dsn, unique_workspace, with_query
from tests.support.sandbox import env_for, loopback, users, wait_for, write_desired

SLOW = FederationSettings(todo_seconds=0.4, doing_seconds=0.4)


class _Apply:
    """A `reconciler apply` subprocess whose output goes to files.

    Not pipes: a full pipe would stall the apply before it sends anything.
    """

    def __init__(self, desired: Path, env: dict[str, str], *extra: str) -> None:
        base = desired.parent / f"apply-{len(list(desired.parent.glob('apply-*.out')))}"
        self.out_path, self.err_path = Path(f"{base}.out"), Path(f"{base}.err")
        command = [sys.executable, "-m", "reconciler", "apply", str(desired)]
        command += ["--auto-approve", "--parallel", "2", *extra]
        with self.out_path.open("w") as out, self.err_path.open("w") as err:
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=err)
        self.pid = self.process.pid

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        """Wait for the process; its exit code, stdout and stderr."""
        code = self.process.wait(timeout=timeout)
        return code, self.out_path.read_text(), self.err_path.read_text()


def _env(server_env: dict[str, str], state: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOLCENGINE_")}
    return {**env, **server_env, "RECONCILER_STATE": state, "NO_COLOR": "1"}


def _lock_holder_pid(dsn: str, workspace: str) -> int | None:
    # Through the store, as any command would: on a database that never saw reconciler
    # this runs before the first apply has created the tables, and must work.
    holder = PostgresStore.from_dsn(dsn, workspace=workspace).holder()
    return holder.pid if holder is not None else None


def test_second_apply_fails_fast_naming_the_holder_then_a_waiter_finds_nothing(
    tmp_path: Path,
) -> None:
    """The holder applies; a second apply names it and exits 1; a waiter gets the lock later."""
    dsn = pg_dsn()
    workspace = unique_workspace()
    desired = write_desired(tmp_path / "desired", users(450))
    with loopback(SLOW) as (box, server):
        env = _env(env_for(server), with_query(dsn, workspace=workspace))
        first = _Apply(desired, env)
        try:
            assert wait_for(lambda: _lock_holder_pid(dsn, workspace), timeout=30) == first.pid
            code, _, err = _Apply(desired, env).finish(timeout=60)
            assert code == 1
            assert "locked" in err
            assert f"pid {first.pid}" in err
            assert "for `apply`" in err
            waiter = _Apply(desired, env, "--lock-timeout", "120")
            code, _, err_first = first.finish()
            assert code == 0, err_first
            code, out_waiter, err_waiter = waiter.finish()
            assert code == 0, err_waiter
            assert "Nothing to apply" in out_waiter
        finally:
            if first.process.poll() is None:
                first.process.kill()
        stats = box.federation.stats()
        assert stats.create_task_accepted == 5  # ceil(450 / 100): nobody sent twice
        assert set(stats.created_per_account.values()) == {1}
        assert len(stats.created_per_account) == 450


def test_kill_9_of_the_holder_frees_the_lock_and_the_next_apply_converges(
    tmp_path: Path,
) -> None:
    """A holder killed mid-apply releases the lock by itself; the next apply finishes the job."""
    dsn = pg_dsn()
    desired = write_desired(tmp_path / "desired", users(300))
    with loopback(SLOW) as (box, server):
        env = _env(env_for(server), with_query(dsn, workspace=unique_workspace()))
        first = _Apply(desired, env)
        wait_for(lambda: box.federation.stats().create_task_accepted >= 1, timeout=30)
        os.kill(first.pid, signal.SIGKILL)
        first.process.wait(timeout=30)
        code, _, err = _Apply(desired, env, "--lock-timeout", "30").finish()
        assert code == 0, err
        stats = box.federation.stats()
        assert set(stats.created_per_account.values()) == {1}
        assert len(stats.created_per_account) == 300
        assert len(box.federation.users("sandbox-app-key")) == 300
