"""PostgreSQL backend (like Terraform's ``pg`` backend): a head row and rows per workspace.

The only module that imports psycopg (the ``reconciler[postgres]`` extra); its SQL is in
``pg_sql``, its tables (created, and migrated, by whatever command comes first) in
``pg_tables``, and how a state maps to its rows in ``pg_state``.

A workspace's state is a head row in ``reconciler_states`` (lineage, serial, and the
document without its accounts, pending batches and events) and a ``jsonb`` row per
account, pending batch and event. A write changes only the rows of what changed, in one
transaction that compares-and-swaps the head row's serial (``SELECT ... FOR UPDATE``), so
it costs the change, not the size of the state; reading assembles the same document the
file backend stores, and parses it the same way. Ad-hoc queries read the rows directly
(``SELECT account, record->>'email' FROM reconciler_accounts WHERE workspace = 'prod'``).

Forced writes skip the compare-and-swap but, as in the file backend, never replace a
state that cannot be parsed: a corrupt state is evidence, so the user moves it aside
with one ``UPDATE`` of its head row (named in the error's hint; its rows follow) and then
pushes a good state.

Locking is a session-level advisory lock held on a dedicated connection for the whole
``lock()`` block: when the holder dies or loses its connection the server ends the
session and the lock goes with it. The holder's details sit in ``reconciler_locks`` so a
refused runner can name who holds the lock; a row whose backend no longer holds the
advisory lock is stale and ignored. While it holds the lock a store reads and writes on
that very session, and each write first checks, in its transaction, that the holder row
still names its lock id: a holder whose session was ended (force-unlock, network) gets
StateLockLost instead of reconnecting and writing.

Every session has a ``lock_timeout`` and a ``statement_timeout`` (``pg_dsn.Timeouts``),
so a row locked by another session fails a command with a clear error, never hangs it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from reconciler.errors import (
    BackendUnavailable,
    ConfigError,
    StateConflict,
    StateError,
    StateLocked,
)
from reconciler.stores import (
    Expected,
    Lock,
    LockInfo,
    check_serial,
    check_successor,
    lock_lost,
    locked_error,
    pg_dsn,
    pg_sql,
    pg_state,
    pg_tables,
)
from reconciler.stores.location import Backend, Location
from reconciler.stores.model import Names, State
from reconciler.values import frozen

try:
    import psycopg
except ImportError:  # the optional extra is missing: from_dsn says how to install it
    _PSYCOPG_MISSING = True
else:
    _PSYCOPG_MISSING = False

SCHEMA_VERSION = pg_tables.SCHEMA_VERSION
DEFAULT_WORKSPACE = "default"
_WORKSPACE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_POLL_SECONDS = 0.2
_UNLOCK_WAIT_SECONDS = 10.0


@frozen
class _Held:
    """The lock this store holds: the session that holds it, and its lock id."""

    conn: psycopg.Connection[Any]
    lock_id: str


def _refuse_empty(name: str, source: str) -> None:
    """ConfigError for an empty workspace name: it is never the default workspace."""
    if not name:
        raise ConfigError(
            f"{source} is empty: an empty workspace is not the default workspace "
            f"{DEFAULT_WORKSPACE!r}",
            hint=f"name the workspace (e.g. --workspace {DEFAULT_WORKSPACE}), or leave it out "
            "for the default",
        )


class PostgresStore:
    """One workspace's state in a PostgreSQL database (several workspaces per database)."""

    def __init__(
        self,
        *,
        dsn: pg_dsn.Dsn,
        workspace: str,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if _PSYCOPG_MISSING:
            raise BackendUnavailable(
                "the PostgreSQL state backend needs psycopg, which is not installed",
                hint="pip install 'reconciler[postgres]'",
            )
        if not _WORKSPACE.fullmatch(workspace):
            raise ConfigError(
                f"invalid workspace name {workspace!r}",
                hint="use 1-64 letters, digits, '_', '.' or '-'",
            )
        self._dsn = dsn
        self._secrets = tuple(sorted(set(dsn.secrets), key=len, reverse=True))
        self.workspace = workspace
        self._monotonic, self._sleep = monotonic, sleep
        self._schema: str | None = None  # current_schema() once the tables are known good
        self._held: _Held | None = None
        # The state we last read or wrote, with its head row's xmin: while the row still
        # has that xmin nobody touched it, so a write needs no re-read, and writes its delta.
        self._known: pg_state.Stored | None = None

    @classmethod
    def from_dsn(
        cls,
        dsn: str,
        workspace: str | None = None,
        *,
        timeouts: pg_dsn.Timeouts | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> PostgresStore:
        """The store for ``dsn``; the workspace comes from ``?workspace=`` or the argument."""
        parsed = pg_dsn.split(dsn, timeouts=timeouts)
        named = parsed.workspace
        for source, name in (("--workspace", workspace), ("the DSN's workspace=", named)):
            if name is not None:
                _refuse_empty(name, source)
        if workspace and named and workspace != named:
            raise ConfigError(
                f"workspace {workspace!r} given, but the DSN names workspace {named!r}",
                hint="name the workspace in one place only",
            )
        return cls(
            dsn=parsed,
            workspace=workspace or named or DEFAULT_WORKSPACE,
            monotonic=monotonic,
            sleep=sleep,
        )

    @property
    def location(self) -> Location:
        """The DSN with its password masked, and the workspace."""
        return Location(
            backend=Backend.POSTGRES, where=self._dsn.redacted, workspace=self.workspace
        )

    def describe(self) -> str:
        """The DSN with its password masked and ``workspace=``: pasteable into --state."""
        return self.location.describe()

    # -- connections and errors -----------------------------------------------------

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return " ".join(text.split())  # libpq messages span lines; ours are one line

    @contextlib.contextmanager
    def _translated(self, *, lock_id: str | None = None) -> Iterator[None]:
        """Turn psycopg errors into reconciler's, with the password scrubbed.

        With ``lock_id`` the session is the lock's: losing it is losing the lock.
        """
        where = self.describe()
        timeouts = self._dsn.timeouts
        try:
            yield
        except psycopg.errors.LockNotAvailable as exc:
            raise pg_tables.timed_out(
                where, "lock_timeout", timeouts.lock, "waiting for a lock"
            ) from exc
        except psycopg.errors.QueryCanceled as exc:
            raise pg_tables.timed_out(
                where, "statement_timeout", timeouts.statement, "running"
            ) from exc
        except psycopg.OperationalError as exc:
            if lock_id is not None:
                why = f"its PostgreSQL session ended ({self._scrub(str(exc))})"
                raise lock_lost(where, lock_id, why) from exc
            raise BackendUnavailable(
                f"PostgreSQL state {where}: {self._scrub(str(exc))}",
                hint="check that the server is reachable and the DSN is right",
            ) from exc
        except psycopg.Error as exc:
            raise StateError(f"PostgreSQL state {where}: {self._scrub(str(exc))}") from exc

    @contextlib.contextmanager
    def _connect(self) -> Iterator[psycopg.Connection[Any]]:
        """A new autocommit connection with timeouts set and the tables checked; closed after."""
        try:
            conn = psycopg.connect(self._dsn.connect, autocommit=True)
        except psycopg.Error as exc:
            raise BackendUnavailable(
                f"cannot connect to PostgreSQL state {self.describe()}: {self._scrub(str(exc))}",
                hint="check that the server is running and the DSN (RECONCILER_STATE) is right",
            ) from exc
        try:
            with self._translated():
                timeouts = self._dsn.timeouts
                conn.execute(pg_sql.SET_TIMEOUTS, (timeouts.lock, timeouts.statement))
                if self._schema is None:
                    self._schema = pg_tables.ensure(conn, where=self.describe())
                yield conn
        finally:
            conn.close()

    @contextlib.contextmanager
    def _session(self) -> Iterator[psycopg.Connection[Any]]:
        """The lock's session while this store holds the lock, else a new connection."""
        held = self._held
        if held is None:
            with self._connect() as conn:
                yield conn
            return
        with self._translated(lock_id=held.lock_id):
            yield held.conn

    # -- state ----------------------------------------------------------------------

    def _corrupt_hint(self) -> str:
        ws = self.workspace
        return (
            "it was not modified; fix the rows by hand, or move it aside (its rows follow) "
            f"with UPDATE reconciler_states SET workspace = '{ws}.corrupt' WHERE workspace = "
            f"'{ws}' and then push a good state"
        )

    def read(self, *, names: Names | None = None) -> State | None:
        """The workspace's state; None when none was ever written. ``names``: its records
        take their equal strings once decoded (``decoding.shared_names``)."""
        with self._session() as conn:
            stored = pg_state.read(
                conn,
                self.workspace,
                where=self.describe(),
                repair_hint=self._corrupt_hint(),
                names=names,
            )
        self._known = stored
        return None if stored is None else stored.state

    def write(self, state: State, *, force: bool = False, expected: Expected | None = None) -> None:
        """Store ``state`` in one transaction: fenced, compare-and-swap unless forced.

        Only the rows that changed are written, unless the write replaces the state (forced,
        or a push naming what it replaces) or the head row still holds a whole document.
        """
        where = self.describe()
        check_serial(state, where=where)
        known, self._known = self._known, None  # until the write commits
        with self._session() as conn, conn.transaction():
            self._fence_in(conn)
            stored = self._current(conn, known)
            current = stored.state if stored is not None else None
            if not force:
                check_successor(current, state, where=where, expected=expected)
            bulk = functools.partial(_copy, conn)
            if stored is None:
                xmin = pg_state.insert(conn, bulk, self.workspace, state)
            elif force or expected is not None or not stored.split:
                xmin = pg_state.replace_all(conn, bulk, self.workspace, state, was=stored.state)
            else:
                xmin = pg_state.update(conn, self.workspace, state, was=stored.state)
            if xmin is None:
                raise StateConflict(
                    f"state {where} was written by someone else meanwhile; nothing was written",
                    hint="run `reconciler plan` again",
                )
        self._known = pg_state.Stored(xmin=xmin, state=state, split=True)

    def _current(
        self, conn: psycopg.Connection[Any], known: pg_state.Stored | None
    ) -> pg_state.Stored | None:
        """The stored state, its head row locked for the write's transaction (read if new)."""
        row = conn.execute(pg_sql.ROW_FOR_UPDATE, (self.workspace,)).fetchone()
        if row is None:
            return None
        if known is not None and known.xmin == row[0]:
            return known
        # Someone else wrote the row: read it all again; a corrupt state is refused, even forced.
        return pg_state.read(
            conn, self.workspace, where=self.describe(), repair_hint=self._corrupt_hint()
        )

    # -- locking --------------------------------------------------------------------

    def _lock_key(self) -> int:
        # Namespaced by schema: the same workspace in two schemas is two states.
        return pg_tables.advisory_key(f"reconciler:{self._schema}:{self.workspace}")

    @contextlib.contextmanager
    def lock(self, operation: str, *, timeout: float = 0.0) -> Iterator[Lock]:
        """Hold the workspace's advisory lock on a dedicated session for the block."""
        if self._held is not None:
            raise StateError(f"state {self.describe()} is already locked by this process")
        with self._connect() as conn:
            key = self._lock_key()
            conn.execute(pg_sql.SET_LOCK_SESSION, (f"reconciler lock {self.workspace}"[:63],))
            self._acquire(conn, key, timeout)
            info = LockInfo.new(operation)
            try:
                conn.execute(
                    pg_sql.RECORD_HOLDER,
                    (self.workspace, info.lock_id, json.dumps(info.to_json())),
                )
                self._held = _Held(conn=conn, lock_id=info.lock_id)
                yield Lock(info=info, check=self.fence)
            finally:
                self._held = None
                # The session may be gone already (force-unlock, network): then the
                # server released the lock with it and there is nothing left to do.
                with contextlib.suppress(psycopg.Error):
                    conn.execute(
                        "DELETE FROM reconciler_locks WHERE workspace = %s AND lock_id = %s",
                        (self.workspace, info.lock_id),
                    )
                    conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    def _acquire(self, conn: psycopg.Connection[Any], key: int, timeout: float) -> None:
        """Take the advisory lock, trying until ``timeout`` seconds have passed."""
        deadline = self._monotonic() + timeout
        while True:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            if row and row[0]:
                return
            remaining = deadline - self._monotonic()
            if remaining <= 0:
                raise self._locked_error(conn)
            self._sleep(min(_POLL_SECONDS, remaining))

    def _fence_in(self, conn: psycopg.Connection[Any]) -> None:
        """On the lock's session: StateLockLost unless the holder row still names our id."""
        held = self._held
        if held is None:
            return
        row = conn.execute(pg_sql.FENCE, (self.workspace,)).fetchone()
        if row is None or row[0] != held.lock_id:
            why = "its holder row was removed" if row is None else f"{row[0]} holds it now"
            raise lock_lost(self.describe(), held.lock_id, why)

    def fence(self) -> None:
        """StateLockLost unless our lock session is alive and the holder row names our id."""
        if self._held is not None:
            with self._session() as conn:
                self._fence_in(conn)

    def holder(self) -> LockInfo | None:
        """The holder recorded in ``reconciler_locks`` (maybe stale), or None."""
        with self._session() as conn:
            return pg_tables.recorded_holder(conn, self.workspace)[0]

    def _locked_error(self, conn: psycopg.Connection[Any]) -> StateLocked:
        pid = pg_tables.holder_backend(conn, self._lock_key())
        holder, holder_pid = pg_tables.recorded_holder(conn, self.workspace)
        if holder_pid != pid:
            holder = None  # the row belongs to an older holder: this one has not recorded itself
        detail = f"PostgreSQL backend pid {pid}" if pid else ""
        return locked_error(self.describe(), holder, detail=detail)

    def force_unlock(self, lock_id: str) -> None:
        """Release the lock recorded as ``lock_id`` by ending its holder's session.

        An advisory lock belongs to the session that took it; no other session can
        release it. So when the recorded holder's backend (found in ``pg_locks``) still
        holds it, it is terminated with ``pg_terminate_backend`` (this needs the same
        database role as the holder, or ``pg_signal_backend``), which frees the lock;
        then the holder's row is removed. A holder process that is in fact still alive
        loses its lock session, and with it the lock: its next write or createTask stops
        with StateLockLost. A row whose backend no longer holds the lock is just removed.
        """
        with self._connect() as conn:
            with conn.transaction():
                pid, terminate = self._end_holder(conn, lock_id)
            deadline = self._monotonic() + _UNLOCK_WAIT_SECONDS
            while terminate and pg_tables.holder_backend(conn, self._lock_key()) == pid:
                if self._monotonic() >= deadline:
                    raise StateError(
                        f"PostgreSQL backend {pid} was asked to end but still holds the lock",
                        hint="try again in a moment",
                    )
                self._sleep(_POLL_SECONDS / 4)

    def _end_holder(self, conn: psycopg.Connection[Any], lock_id: str) -> tuple[int | None, bool]:
        """In force-unlock's transaction: end the holder's session, remove its row."""
        holder, holder_pid = pg_tables.recorded_holder(conn, self.workspace, for_update=True)
        pid = pg_tables.holder_backend(conn, self._lock_key())
        if holder is None:
            raise StateError(
                f"state {self.describe()} has no recorded lock holder"
                + (f" (PostgreSQL backend pid {pid} holds the lock)" if pid else ""),
                hint="nothing to unlock" if pid is None else "wait for it to finish",
            )
        if holder.lock_id != lock_id:
            raise StateError(
                f"lock id {lock_id} does not match the current {holder.describe()}",
                hint=f"pass the id of the current holder: {holder.lock_id}",
            )
        terminate = pid is not None and pid == holder_pid
        if terminate:
            try:
                conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
            except psycopg.errors.InsufficientPrivilege as exc:
                raise StateError(
                    f"not allowed to end PostgreSQL backend {pid} holding "
                    f"{holder.describe()}: {self._scrub(str(exc))}",
                    hint=f"ask an administrator to run SELECT pg_terminate_backend({pid})",
                ) from exc
        conn.execute(
            "DELETE FROM reconciler_locks WHERE workspace = %s AND lock_id = %s",
            (self.workspace, lock_id),
        )
        return pid, terminate


def _copy(
    conn: psycopg.Connection[Any],
    table: str,
    columns: Sequence[str],
    rows: Iterable[tuple[Any, ...]],
) -> None:
    """Many rows into ``table`` with COPY (several times faster than one big INSERT)."""
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)
