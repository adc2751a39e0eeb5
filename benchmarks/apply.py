"""Time ``reconciler apply`` against the sandbox, next to the sandbox's own cap-limited minimum.

    python benchmarks/apply.py                       # both rows of issue 14, file state
    python benchmarks/apply.py --rows new            # one row: 50,000 new users
    python benchmarks/apply.py --rows modify         # one row: 10,000 changes in 100,000
    python benchmarks/apply.py --backend postgres    # the state in PostgreSQL (--dsn)
    python benchmarks/apply.py --users 10000 --todo 0.5 --doing 1   # the earlier figure

Rows (sandbox default timings: tasks TODO 0.05 s + DOING 0.1 s; ``--parallel 10`` = the
tenant's pending-task limit):

- **new**: ``--users`` (50,000) new users against an empty state;
- **modify**: a recorded state of ``--accounts`` (100,000) accounts, all on the tenant,
  and a desired state renaming ``--modify`` (10,000) of them.

The sandbox is served from this process on loopback; apply runs as a real subprocess
(``python -m reconciler apply DIR --auto-approve --parallel P --format json``), so the two
do not share a GIL. The sandbox notes when the first createTask arrives: everything before
it is start-up, parsing, reading the state and planning (the plan benchmark's subject);
from it to the process's exit is the **apply phase**, which includes every state write and
whatever the store does when the lock is released. The lower bound is
``minimum_apply_seconds``: full waves of the pending cap, each lasting one task's TODO +
DOING time. The target: the apply phase within 1.25x of it. CPU is the apply process's
user + system time (``wait4``), and the part of it spent in the apply phase, next to the
sandbox's own (this process) over the apply phase: on a busy machine the wall times
stretch, the CPU times much less. ``--profile FILE`` runs apply under cProfile. Exit
status 1 when a target is missed. What this process set up (the tenant, the recorded state)
is frozen (``gc.freeze``) while apply runs, so that the sandbox is not paused by full
collections rescanning it.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import installed  # benchmarks/installed.py

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from reconciler.sandbox import app  # after the path fix above
from reconciler.sandbox.federation import minimum_apply_seconds
from reconciler.sandbox.federation_model import FederatedUser, TenantSeed
from reconciler.sandbox.federation_rules import FederationSettings
from reconciler.sandbox.server import RunningSandbox
from reconciler.sandbox.wire import Request, Response
from reconciler.stores import Store
from reconciler.stores.local import LocalStore
from reconciler.stores.model import AccountRecord, State

ROLE_ID = "1672380646005741601"
TARGET = 1.25
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """One row: the recorded accounts (also on the tenant) and the desired changes."""

    name: str
    title: str
    recorded: int  # accounts user000000.. recorded and on the tenant
    desired: int  # accounts declared
    renamed: int  # of the recorded ones, the first N get a new name


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What one measured apply took and did."""

    wall: float  # process start to exit
    before_first_send: float  # process start to the first createTask the sandbox saw
    cpu: float  # user + system seconds of the apply process
    apply_cpu: float  # of which in the apply phase
    sandbox_cpu: float  # this process (the sandbox) in the apply phase
    changed: int
    counters: dict[str, int]
    create_calls: int
    create_accepted: int
    query_calls: int
    max_pending: int
    state_note: str

    @property
    def apply_phase(self) -> float:
        """From the first createTask to the process's exit."""
        return self.wall - self.before_first_send


class FirstCreate:
    """A sandbox handler that answers nothing and notes when the first createTask arrives:
    the time, the apply process's CPU time then, and this process's (the sandbox's)."""

    def __init__(self) -> None:
        self.at: float | None = None
        self.pid = 0  # the apply process, once started
        self.apply_cpu = 0.0
        self.sandbox_cpu = 0.0
        self._lock = threading.Lock()

    def handle(self, request: Request) -> Response | None:
        """Note the first createTask; let the federation sandbox answer."""
        if request.path.endswith("/createTask"):
            with self._lock:
                if self.at is None:
                    self.at = time.perf_counter()
                    self.apply_cpu = process_cpu(self.pid)
                    self.sandbox_cpu = time.process_time()
        return None


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def account(i: int) -> str:
    """The i-th account name."""
    return f"user{i:06d}"


def display_name(i: int, *, renamed: bool) -> str:
    """The i-th user's name (at most 20 characters)."""
    return f"Renamed {i}" if renamed else f"User {i}"


def write_desired(directory: Path, case: Case) -> None:
    """The desired-state folder: ``case.desired`` users holding one role."""
    lines = ["version: 1", "roles:", "  agent:", f'    id: "{ROLE_ID}"', "users:"]
    for i in range(case.desired):
        lines += [
            f"  - account: {account(i)}",
            f"    name: {display_name(i, renamed=i < case.renamed)}",
            f"    email: {account(i)}@example.com",
            "    roles: [agent]",
        ]
    (directory / "users.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def recorded_state(case: Case) -> State:
    """The state an earlier apply left: ``case.recorded`` accounts as the tenant has them."""
    records = {
        account(i): AccountRecord(
            account=account(i),
            name=display_name(i, renamed=False),
            email=f"{account(i)}@example.com",
            role_ids=(ROLE_ID,),
            enabled=True,
            last_task_id=f"{9_000_000 + i // 100}",
            created_at="2024-01-01T00:00:00Z",
            updated_at="2024-06-01T12:00:00Z",
        )
        for i in range(case.recorded)
    }
    return State.empty().successor(accounts=records)


def tenant_users(case: Case) -> dict[str, FederatedUser]:
    """The tenant's users before the apply: the recorded ones."""
    return {
        account(i): FederatedUser(
            name=display_name(i, renamed=False),
            email=f"{account(i)}@example.com",
            role_ids=(ROLE_ID,),
        )
        for i in range(case.recorded)
    }


@contextmanager
def state_location(backend: str, dsn: str, directory: Path) -> Iterator[tuple[str, Store]]:
    """A fresh, empty state of ``backend``: its --state value and a store on it."""
    if backend == "file":
        path = directory.parent / "state" / "state.json"
        yield str(path), LocalStore(path)
        return
    from reconciler.stores.postgres import PostgresStore  # noqa: PLC0415 - optional extra

    workspace = f"bench-{uuid.uuid4().hex[:12]}"
    try:
        yield f"{dsn}?workspace={workspace}", PostgresStore.from_dsn(dsn, workspace=workspace)
    finally:
        drop_workspace(dsn, workspace)


def drop_workspace(dsn: str, workspace: str) -> None:
    """Remove the benchmark's workspace from every table that has one."""
    import psycopg  # noqa: PLC0415 - only reached when the PostgreSQL state is measured

    with psycopg.connect(dsn, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.columns WHERE column_name = 'workspace' "
            "AND table_schema = current_schema() AND table_name LIKE 'reconciler_%'"
        ).fetchall()
        for (table,) in tables:
            conn.execute(f"DELETE FROM {table} WHERE workspace = %s", (workspace,))


def state_note(backend: str, state: str) -> str:
    """What the state looks like on disk afterwards (file backend: snapshot and journal)."""
    if backend != "file":
        return ""
    path = Path(state)
    sizes = [
        f"{p.name} {p.stat().st_size / 1e6:.1f} MB"
        for p in sorted(path.parent.glob(path.name + "*"))
        if p.is_file() and not p.name.endswith(".lock")
    ]
    return ", ".join(sizes)


def run_case(case: Case, args: argparse.Namespace) -> Outcome:
    """Set up ``case`` (state, tenant, desired files), run apply once, and measure it."""
    settings = FederationSettings(
        pending_task_limit=args.parallel, todo_seconds=args.todo, doing_seconds=args.doing
    )
    box = app.build(settings, role_ids=[ROLE_ID])
    box.federation.seed_tenant(
        TenantSeed(
            app_key=app.SANDBOX_APP_KEY,
            app_secret=app.SANDBOX_APP_SECRET,
            role_ids=(ROLE_ID,),
            users=tenant_users(case),
        )
    )
    first = FirstCreate()
    server = RunningSandbox((first, *box.handlers()), "127.0.0.1", 0).start()
    try:
        with tempfile.TemporaryDirectory() as temp:
            directory = Path(temp) / "desired"
            directory.mkdir()
            write_desired(directory, case)
            with state_location(args.backend, args.dsn, directory) as (state, store):
                if case.recorded:
                    store.write(recorded_state(case))
                env = {
                    **os.environ,
                    "RECONCILER_FEDERATION_URL": server.url,
                    "RECONCILER_FEDERATION_APP_KEY": app.SANDBOX_APP_KEY,
                    "RECONCILER_FEDERATION_APP_SECRET": app.SANDBOX_APP_SECRET,
                    "RECONCILER_STATE": state,
                }
                profile = ["-m", "cProfile", "-o", str(args.profile)] if args.profile else []
                # The sandbox's tenant (100,000 users) and the store's copy of the state are
                # set up for good: frozen, a full collection of this process does not rescan
                # them while the apply runs (one took 57 ms, the sandbox answering nothing).
                gc.freeze()
                command = [sys.executable, *profile, "-m", "reconciler", "apply", str(directory)]
                command += ["--auto-approve", "--parallel", str(args.parallel)]
                command += ["--format", "json"]
                with tempfile.TemporaryFile() as output, tempfile.TemporaryFile() as errors:
                    started = time.perf_counter()
                    child = subprocess.Popen(command, env=env, stdout=output, stderr=errors)
                    first.pid = child.pid
                    _, status, usage = os.wait4(child.pid, 0)
                    wall = time.perf_counter() - started
                    sandbox_cpu = time.process_time() - first.sandbox_cpu
                    output.seek(0)
                    errors.seek(0)
                    stdout, stderr = output.read().decode(), errors.read().decode()
                note = state_note(args.backend, state)
    finally:
        gc.unfreeze()
        server.stop()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.stderr.write(stderr[-3000:])
        raise SystemExit(f"apply failed with exit code {code}")
    stats = box.federation.stats()
    return Outcome(
        wall=wall,
        before_first_send=(first.at or started) - started,
        cpu=usage.ru_utime + usage.ru_stime,
        apply_cpu=usage.ru_utime + usage.ru_stime - first.apply_cpu,
        sandbox_cpu=sandbox_cpu,
        changed=max(case.desired - case.recorded, 0) + case.renamed,
        counters=json.loads(stdout)["counters"],
        create_calls=stats.calls["createTask"],
        create_accepted=stats.create_task_accepted,
        query_calls=stats.query_task_calls,
        max_pending=stats.max_pending_observed,
        state_note=note,
    )


def report(case: Case, outcome: Outcome, args: argparse.Namespace) -> bool:
    """Print one row's figures; True when its target is met."""
    settings = FederationSettings(
        pending_task_limit=args.parallel, todo_seconds=args.todo, doing_seconds=args.doing
    )
    tasks = math.ceil(outcome.changed / 100)
    floor = minimum_apply_seconds(tasks, settings)
    ratio = outcome.apply_phase / floor
    complete = (
        outcome.create_accepted == tasks
        and outcome.counters["users_applied"] == outcome.changed
        and outcome.counters["users_failed"] == 0
    )
    met = complete and ratio <= TARGET
    print(f"\n{case.title}")
    print(
        f"  --parallel {args.parallel} = pending limit, tasks TODO {args.todo:g} s + DOING "
        f"{args.doing:g} s, {args.backend} state"
    )
    print(f"  start to 1st createTask {outcome.before_first_send:8.2f} s   (start-up, parse, plan)")
    print(f"  apply phase             {outcome.apply_phase:8.2f} s   (1st createTask to exit)")
    print(f"  sandbox minimum         {floor:8.2f} s   ({math.ceil(tasks / args.parallel)} waves)")
    verdict = "met" if met else "MISSED"
    print(f"  ratio                   {ratio:8.2f} x   target <= {TARGET:g}x: {verdict}")
    print(f"  end to end              {outcome.wall:8.2f} s   ({outcome.wall / floor:.2f}x)")
    print(
        f"  CPU (user + system)     {outcome.cpu:8.2f} s   (apply phase: {outcome.apply_cpu:.2f} s;"
        f" the sandbox {outcome.sandbox_cpu:.2f} s)"
    )
    print(
        f"  createTask {outcome.create_calls} (accepted {outcome.create_accepted}), "
        f"queryTask {outcome.query_calls}, max pending {outcome.max_pending}"
    )
    if outcome.state_note:
        print(f"  state afterwards: {outcome.state_note}")
    if not complete:
        print(f"  INCOMPLETE: {outcome.counters}")
    return met


def main() -> int:
    """Run the chosen rows; exit 1 when a target is missed."""
    installed.like_an_install()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="new,modify", help="comma-separated: new, modify")
    parser.add_argument("--users", type=int, default=50_000, help="new users (row new)")
    parser.add_argument("--accounts", type=int, default=100_000, help="recorded (row modify)")
    parser.add_argument("--modify", type=int, default=10_000, help="renamed (row modify)")
    parser.add_argument("--parallel", type=int, default=10, help="also the tenant's task limit")
    defaults = FederationSettings()
    parser.add_argument("--todo", type=float, default=defaults.todo_seconds)
    parser.add_argument("--doing", type=float, default=defaults.doing_seconds)
    parser.add_argument("--backend", choices=("file", "postgres"), default="file")
    parser.add_argument("--dsn", default=os.environ.get("RECONCILER_TEST_PG_DSN", DEFAULT_DSN))
    parser.add_argument("--profile", type=Path, help="run apply under cProfile, stats to this file")
    args = parser.parse_args()
    cases = {
        "new": Case(
            name="new",
            title=f"apply {args.users:,} new users into an empty state",
            recorded=0,
            desired=args.users,
            renamed=0,
        ),
        "modify": Case(
            name="modify",
            title=f"apply {args.modify:,} modifications in a {args.accounts:,}-account state",
            recorded=args.accounts,
            desired=args.accounts,
            renamed=args.modify,
        ),
    }
    met = True
    for name in args.rows.split(","):
        case = cases[name.strip()]
        met = report(case, run_case(case, args), args) and met
    print(f"\nPython {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
