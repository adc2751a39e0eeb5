"""Store test helpers: a fake clock for lock polling, the backends under test, a lock held in
another thread. The ``backend`` and ``fresh_database`` fixtures built on them are in
``tests/conftest.py``."""

from __future__ import annotations

import contextlib
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.stores import LockInfo, Store
from reconciler.stores.local import LocalStore
from reconciler.stores.model import AccountRecord, State
from reconciler.values import frozen
from tests.support.pg import drop_workspaces, pg_dsn, pg_execute, unique_workspace


@dataclass(slots=True)
class FakeClock:
    """monotonic() and sleep() for a store: sleeping moves the clock, never waits.

    ``on_sleep`` is called with the number of sleeps so far, after each one: a test makes
    something happen "while the store waits" there.
    """

    now: float = 0.0
    slept: list[float] = field(default_factory=list)
    on_sleep: Callable[[int], None] | None = None

    def monotonic(self) -> float:
        """The fake time."""
        return self.now

    def sleep(self, seconds: float) -> None:
        """Advance the fake time; run ``on_sleep``."""
        self.slept.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep(len(self.slept))


@frozen
class Backend:
    """A store under test plus what the contract needs to poke at its storage."""

    kind: str
    store: Store
    reopen: Callable[..., Store]  # another handle on the same state ("another runner")
    put_raw: Callable[[str], None]  # replace the stored document with raw text
    raw: Callable[[], str | None]  # the stored document as text


def local_backend(tmp_path: Path) -> Backend:
    path = tmp_path / "state" / "state.json"

    def put_raw(text: str) -> None:
        path.write_text(text, encoding="utf-8")

    return Backend(
        kind="local",
        store=LocalStore(path),
        reopen=lambda **clock: LocalStore(path, **clock),
        put_raw=put_raw,
        raw=lambda: path.read_text(encoding="utf-8") if path.exists() else None,
    )


_PG_PARTS = ("reconciler_accounts", "reconciler_pending", "reconciler_events")


def pg_backend(dsn: str, workspace: str) -> Backend:
    from reconciler.stores.postgres import PostgresStore  # noqa: PLC0415 - optional extra

    def raw() -> str | None:
        """The head row's document, then every row of the workspace (none: the head alone)."""
        rows = pg_execute(
            dsn, "SELECT document FROM reconciler_states WHERE workspace = %s", (workspace,)
        )
        if not rows:
            return None
        parts = [
            " ".join(str(value) for value in (table, *row))
            for table in _PG_PARTS
            for row in pg_execute(
                dsn, f"SELECT * FROM {table} WHERE workspace = %s ORDER BY 2", (workspace,)
            )
        ]
        return "\n".join([str(rows[0][0]), *parts])

    def put_raw(text: str) -> None:
        """The head row holds ``text`` as its whole document, the workspace's rows go."""
        for table in _PG_PARTS:
            pg_execute(dsn, f"DELETE FROM {table} WHERE workspace = %s", (workspace,))
        pg_execute(
            dsn,
            "UPDATE reconciler_states SET document = %s WHERE workspace = %s",
            (text, workspace),
        )

    return Backend(
        kind="postgres",
        store=PostgresStore.from_dsn(dsn, workspace=workspace),
        reopen=lambda **clock: PostgresStore.from_dsn(dsn, workspace=workspace, **clock),
        put_raw=put_raw,
        raw=raw,
    )


def with_account(state: State, account: str) -> State:
    """The successor of ``state`` with one more account."""
    record = AccountRecord(account=account, name=account, email="", role_ids=(), enabled=True)
    return state.successor(accounts={**state.accounts, account: record})


@frozen
class Holder:
    """A lock held by another thread: its details, and the events that end it."""

    info: LockInfo
    release: threading.Event  # set it: the thread leaves its lock block
    released: threading.Event  # set by the thread once it has left the block


@contextlib.contextmanager
def held_in_thread(store: Store, operation: str = "apply") -> Iterator[Holder]:
    """Hold ``store``'s lock in another thread until the yielded ``release`` is set."""
    held, release, released = threading.Event(), threading.Event(), threading.Event()
    infos: list[LockInfo] = []

    def run() -> None:
        try:
            with store.lock(operation) as lock:
                infos.append(lock.info)
                held.set()
                release.wait(30)
        finally:
            released.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert held.wait(10), "the holder thread did not get the lock"
    try:
        yield Holder(info=infos[0], release=release, released=released)
    finally:
        release.set()
        thread.join(10)


def with_database(dsn: str, name: str) -> str:
    """``dsn`` pointing at database ``name`` on the same server."""
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(dsn)._replace(path=f"/{name}"))


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """The DSN of a brand-new database that has never seen reconciler, dropped afterwards."""
    dsn = pg_dsn()
    name = f"reconciler_fresh_{uuid.uuid4().hex[:12]}"
    pg_execute(dsn, f'CREATE DATABASE "{name}"')
    try:
        yield with_database(dsn, name)
    finally:
        pg_execute(dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def backend(kind: str, tmp_path: Path) -> Iterator[Backend]:
    """A store of ``kind`` (local or postgres), empty and private to the caller."""
    if kind == "local":
        yield local_backend(tmp_path)
        return
    dsn = pg_dsn()
    workspace = unique_workspace()
    yield pg_backend(dsn, workspace)
    drop_workspaces(dsn, workspace)
