"""Time writing and reading a 100k-account state with each backend.

    python benchmarks/state_io.py [--accounts N] [--dsn postgresql://...]

The PostgreSQL row is measured when the server answers (``--dsn``, else
``RECONCILER_TEST_PG_DSN``, else the local test database), in a throwaway workspace
that is removed afterwards. Each figure is the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from reconciler.errors import BackendUnavailable  # after the path fix above
from reconciler.stores import Store
from reconciler.stores.local import LocalStore
from reconciler.stores.model import AccountRecord, State

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


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


def best_of(repeat: int, action: Callable[[], object]) -> float:
    """The fastest of ``repeat`` timed runs of ``action``, in seconds."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(store: Store, state: State, repeat: int) -> tuple[float, float]:
    """(write seconds, read seconds); every write is a compare-and-swap successor."""
    store.write(state)
    current = [state]

    def write_next() -> None:
        current[0] = current[0].successor()
        store.write(current[0])

    write = best_of(repeat, write_next)
    read = best_of(repeat, store.read)
    return write, read


def main() -> int:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dsn", default=os.environ.get("RECONCILER_TEST_PG_DSN", DEFAULT_DSN))
    args = parser.parse_args()

    started = time.perf_counter()
    state = build_state(args.accounts)
    print(f"built {args.accounts} accounts in {time.perf_counter() - started:.2f} s")
    rows: list[tuple[str, float, float, float]] = []

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.json"
        write, read = measure(LocalStore(path), state, args.repeat)
        rows.append(("file", write, read, path.stat().st_size / 1e6))

    try:
        from reconciler.stores.postgres import PostgresStore  # noqa: PLC0415 - optional extra

        workspace = f"bench-{uuid.uuid4().hex[:12]}"
        store = PostgresStore.from_dsn(args.dsn, workspace=workspace)
        try:
            write, read = measure(store, state, args.repeat)
            rows.append(("postgresql", write, read, stored_mb(args.dsn, workspace)))
        finally:
            drop_workspace(args.dsn, workspace)
    except BackendUnavailable as exc:
        print(f"postgresql skipped: {exc.message}")

    print(f"\n{'backend':<12}{'write s':>10}{'read s':>10}{'MB':>10}")
    for name, write, read, size in rows:
        print(f"{name:<12}{write:>10.3f}{read:>10.3f}{size:>10.1f}")
    return 0


def stored_mb(dsn: str, workspace: str) -> float:
    """Size of the stored document in MB (as text; TOAST compresses it on disk)."""
    import psycopg  # noqa: PLC0415 - only reached when the PostgreSQL row is measured

    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT octet_length(document), pg_column_size(document) "
            "FROM reconciler_states WHERE workspace = %s",
            (workspace,),
        ).fetchone()
    assert row is not None
    print(f"postgresql document: {row[0] / 1e6:.1f} MB as text, {row[1] / 1e6:.1f} MB stored")
    return float(row[0]) / 1e6


def drop_workspace(dsn: str, workspace: str) -> None:
    """Remove the benchmark's rows (a failed run leaves none behind either)."""
    import psycopg  # noqa: PLC0415 - only reached when the PostgreSQL row is measured

    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in ("reconciler_states", "reconciler_locks"):
            conn.execute(f"DELETE FROM {table} WHERE workspace = %s", (workspace,))


if __name__ == "__main__":
    sys.exit(main())
