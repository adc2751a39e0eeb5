"""Time state writes and reads against the size of the state, with each backend.

    python benchmarks/state_io.py [--sizes 1000,10000,100000] [--steps 20] [--dsn postgresql://...]

For each size, a state of that many accounts is written whole (the first write: the
file backend's snapshot, PostgreSQL's rows), then ``--steps`` writes follow as an apply
makes them, under the lock: each revises 100 accounts (one batch's results,
``revisions.revise``) and is written as the next serial. A write should cost what it
changes, not the size of the state: the **step** figure should stay flat from 1k to 100k
accounts. Then the state is read back whole (the file backend: snapshot plus journal
replayed) and, for the file backend, compacted (the new snapshot its lock's release
writes when the journal has outgrown the snapshot).

The PostgreSQL rows are measured when the server answers (``--dsn``, else
``RECONCILER_TEST_PG_DSN``, else the local test database), in a throwaway workspace
removed afterwards. Every figure is wall time; CPU time of the whole run is printed at
the end. Exit status 1 when a step at the largest size costs more than ``--flat`` times
(default 3) a step at the smallest: writes would not be proportional to the change.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import installed  # benchmarks/installed.py

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from reconciler.errors import BackendUnavailable  # after the path fix above
from reconciler.stores import Store, revisions
from reconciler.stores.local import LocalStore
from reconciler.stores.model import AccountRecord, State
from reconciler.values import replace

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
BATCH = 100  # accounts one step changes: one createTask's results


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """One backend at one size."""

    backend: str
    accounts: int
    whole: float  # the first write, the whole state
    step: float  # median of the steps
    step_max: float
    read: float
    compact: float | None  # file backend: the journal folded into a new snapshot


def build_state(accounts: int) -> State:
    """A first-write state with ``accounts`` realistic account records."""
    records = {
        f"user{i:06d}": AccountRecord(
            account=f"user{i:06d}",
            name=f"User Number {i}",
            email=f"user{i:06d}@example.com",
            role_ids=tuple(sorted({str(1000 + i % 7), str(2000 + i % 13)})),
            enabled=i % 50 != 0,
            last_task_id=f"task-{i // 100:05d}",
            created_at="2024-01-01T00:00:00Z",
            updated_at="2024-06-01T12:00:00Z",
            source_commit="0123456789abcdef0123456789abcdef01234567",
        )
        for i in range(accounts)
    }
    return State.empty().successor(accounts=records)


def timed(action: Callable[[], object]) -> float:
    """Seconds ``action`` took."""
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def measure(backend: str, store: Store, fresh: Callable[[], Store], size: int, steps: int) -> Row:
    """The first write, ``steps`` batch-sized writes, a read by a new handle, a compaction."""
    state = build_state(size)
    whole = timed(lambda: store.write(state))
    names = list(state.accounts)
    step_times = []
    with store.lock("apply"):  # as apply writes: PostgreSQL on the lock's own session
        for step in range(steps):
            start = (step * BATCH) % max(size - BATCH, 1)
            changed = {
                name: replace(state.accounts[name], name=f"Step {step}", updated_at=f"s{step}")
                for name in names[start : start + BATCH]
            }
            state = state.successor(accounts=revisions.revise(state.accounts, changed))
            step_times.append(timed(lambda current=state: store.write(current)))
    reader = fresh()
    read = timed(reader.read)
    compact = timed(reader.compact) if isinstance(reader, LocalStore) else None
    return Row(
        backend=backend,
        accounts=size,
        whole=whole,
        step=statistics.median(step_times),
        step_max=max(step_times),
        read=read,
        compact=compact,
    )


@contextmanager
def pg_store(dsn: str) -> Iterator[tuple[Store, Callable[[], Store]]]:
    """A throwaway PostgreSQL workspace: a store, and how to open another handle on it."""
    from reconciler.stores.postgres import PostgresStore  # noqa: PLC0415 - optional extra

    workspace = f"bench-{uuid.uuid4().hex[:12]}"
    try:
        yield (
            PostgresStore.from_dsn(dsn, workspace=workspace),
            lambda: PostgresStore.from_dsn(dsn, workspace=workspace),
        )
    finally:
        import psycopg  # noqa: PLC0415 - only reached when the PostgreSQL row is measured

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DELETE FROM reconciler_states WHERE workspace = %s", (workspace,))


def main() -> int:
    """Run the benchmark and print a table."""
    installed.like_an_install()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated accounts")
    parser.add_argument("--steps", type=int, default=20, help="batch-sized writes per size")
    parser.add_argument("--flat", type=float, default=3.0, help="largest/smallest step bound")
    parser.add_argument("--dsn", default=os.environ.get("RECONCILER_TEST_PG_DSN", DEFAULT_DSN))
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    rows: list[Row] = []
    cpu = time.process_time()
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "state.json"
            rows.append(
                measure("file", LocalStore(path), lambda p=path: LocalStore(p), size, args.steps)
            )
        try:
            with pg_store(args.dsn) as (store, fresh):
                rows.append(measure("postgresql", store, fresh, size, args.steps))
        except BackendUnavailable as exc:
            print(f"postgresql skipped: {exc.message}")
    print(
        f"\n{'backend':<11}{'accounts':>9}{'whole write s':>15}{'step ms':>9}{'max ms':>8}"
        f"{'read s':>8}{'compact s':>11}"
    )
    for row in rows:
        compact = "" if row.compact is None else f"{row.compact:.2f}"
        print(
            f"{row.backend:<11}{row.accounts:>9,}{row.whole:>15.2f}{row.step * 1e3:>9.1f}"
            f"{row.step_max * 1e3:>8.1f}{row.read:>8.2f}{compact:>11}"
        )
    flat = True
    for backend in ("file", "postgresql"):
        mine = [row for row in rows if row.backend == backend]
        if len(mine) > 1:
            ratio = mine[-1].step / mine[0].step
            ok = ratio <= args.flat
            flat = flat and ok
            print(
                f"{backend}: a step at {mine[-1].accounts:,} accounts costs {ratio:.2f}x one at "
                f"{mine[0].accounts:,} (target <= {args.flat:g}x: {'met' if ok else 'MISSED'})"
            )
    print(f"CPU {time.process_time() - cpu:.1f} s; each step writes {BATCH} changed accounts")
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
