"""PostgreSQL backend (like Terraform's ``pg`` backend): one row per workspace.

The only module that imports psycopg (the ``reconciler[postgres]`` extra). Tables are
created on first use, under a transaction-level advisory lock so two first runs do not
race; ``reconciler_meta.schema_version`` lets later versions migrate, and a database
whose schema is newer than this code knows is refused without being touched::

    reconciler_meta(key text primary key, value text)          -- ('schema_version', '1')
    reconciler_states(workspace text primary key, lineage text, serial bigint,
                      document text, updated_at timestamptz)
    reconciler_locks(workspace text primary key, lock_id text, holder jsonb,
                     backend_pid integer, created_at timestamptz)

The document is ``text`` holding the same JSON the file backend stores, not ``jsonb``:
what is pulled is exactly what was pushed, a hand-broken document stays visible as
broken (and is refused like a broken file), and a 100k-account state is not re-parsed
by the server on every write. ``document::jsonb`` still serves ad-hoc queries.
``lineage`` and ``serial`` are copied into columns so that a write is a compare-and-swap
in SQL, inside a transaction holding the row (``SELECT ... FOR UPDATE``).

Forced writes skip the compare-and-swap but, as in the file backend, never replace a
document that cannot be parsed: a corrupt state is evidence, so the user moves it aside
with one ``UPDATE`` (named in the error's hint) and then pushes a good state.

Locking is a session-level advisory lock held on a dedicated connection for the whole
``lock()`` block: when the holder dies or loses its connection the server ends the
session and the lock goes with it. The holder's details sit in ``reconciler_locks`` so a
refused runner can name who holds the lock; a row whose backend no longer holds the
advisory lock is stale and ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

from reconciler.errors import (
    BackendUnavailable,
    ConfigError,
    StateConflict,
    StateCorrupt,
    StateError,
    StateLocked,
)
from reconciler.stores import LockInfo, check_successor, locked_error, pg_dsn
from reconciler.stores import model as state_codec
from reconciler.stores.model import State

try:
    import psycopg
except ImportError:  # the optional extra is missing: from_dsn says how to install it
    _PSYCOPG_MISSING = True
else:
    _PSYCOPG_MISSING = False

SCHEMA_VERSION = 1  # _CREATE_TABLES records it
DEFAULT_WORKSPACE = "default"
_WORKSPACE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_POLL_SECONDS = 0.2
_UNLOCK_WAIT_SECONDS = 10.0


def _key(text: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``text``."""
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


_SCHEMA_LOCK_KEY = _key("reconciler:create-schema")

_CREATE_META = """
CREATE TABLE IF NOT EXISTS reconciler_meta (key text PRIMARY KEY, value text NOT NULL)"""
_CREATE_TABLES = """
CREATE TABLE IF NOT EXISTS reconciler_states (workspace text PRIMARY KEY, lineage text NOT NULL,
    serial bigint NOT NULL, document text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS reconciler_locks (workspace text PRIMARY KEY, lock_id text NOT NULL,
    holder jsonb NOT NULL, backend_pid integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO reconciler_meta (key, value) VALUES ('schema_version', '1')"""
_HOLDER_BACKEND = """
SELECT pid FROM pg_locks
WHERE locktype = 'advisory' AND granted AND objsubid = 1
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND classid::bigint = %s AND objid::bigint = %s"""


class PostgresStore:
    """One workspace's state in a PostgreSQL database (several workspaces per database)."""

    def __init__(
        self, *, dsn: str, redacted: str, workspace: str, secrets: tuple[str, ...] = ()
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
        self._redacted = redacted
        self._secrets = tuple(sorted(set(secrets), key=len, reverse=True))
        self.workspace = workspace
        self._schema: str | None = None  # current_schema() once the tables are known good
        # (xmin, lineage, serial) of the row we last parsed or wrote: when the row still
        # has that xmin nobody touched it, so a write needs no re-parse of the document.
        self._known: tuple[str, str, int] | None = None

    @classmethod
    def from_dsn(cls, dsn: str, workspace: str | None = None) -> PostgresStore:
        """The store for ``dsn``; the workspace comes from ``?workspace=`` or the argument."""
        connect, named, redacted, secrets = pg_dsn.split(dsn)
        if workspace and named and workspace != named:
            raise ConfigError(
                f"workspace {workspace!r} given, but the DSN names workspace {named!r}",
                hint="name the workspace in one place only",
            )
        return cls(
            dsn=connect,
            redacted=redacted,
            workspace=workspace or named or DEFAULT_WORKSPACE,
            secrets=secrets,
        )

    def describe(self) -> str:
        """The DSN with its password masked, and the workspace."""
        joiner = "&" if urllib.parse.urlsplit(self._redacted).query else "?"
        return f"{self._redacted}{joiner}workspace={self.workspace}"

    # -- connections and errors -----------------------------------------------------

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return " ".join(text.split())  # libpq messages span lines; ours are one line

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        """Turn psycopg errors into reconciler's, with the password scrubbed."""
        try:
            yield
        except psycopg.OperationalError as exc:
            raise BackendUnavailable(
                f"PostgreSQL state {self.describe()}: {self._scrub(str(exc))}",
                hint="check that the server is reachable and the DSN is right",
            ) from exc
        except psycopg.Error as exc:
            raise StateError(
                f"PostgreSQL state {self.describe()}: {self._scrub(str(exc))}"
            ) from exc

    @contextlib.contextmanager
    def _connect(self) -> Iterator[psycopg.Connection[Any]]:
        """An autocommit connection with the tables checked; closed afterwards."""
        try:
            conn = psycopg.connect(self._dsn, autocommit=True)
        except psycopg.Error as exc:
            raise BackendUnavailable(
                f"cannot connect to PostgreSQL state {self.describe()}: {self._scrub(str(exc))}",
                hint="check that the server is running and the DSN (RECONCILER_STATE) is right",
            ) from exc
        try:
            with self._translated():
                self._ensure_schema(conn)
                yield conn
        finally:
            conn.close()

    def _ensure_schema(self, conn: psycopg.Connection[Any]) -> None:
        """Create the tables on first use; refuse a schema newer than this code."""
        if self._schema is not None:
            return
        version = self._schema_version(conn)
        if version != SCHEMA_VERSION:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
                conn.execute(_CREATE_META)
                version = self._schema_version(conn)
                if version is None:
                    conn.execute(_CREATE_TABLES)
                # Migrations from older schema versions go here once there is a version 2.
        row = conn.execute("SELECT current_schema()").fetchone()
        self._schema = str(row[0]) if row else ""

    def _schema_version(self, conn: psycopg.Connection[Any]) -> int | None:
        row = conn.execute("SELECT to_regclass('reconciler_meta') IS NOT NULL").fetchone()
        if not row or not row[0]:
            return None
        row = conn.execute(
            "SELECT value FROM reconciler_meta WHERE key = 'schema_version'"
        ).fetchone()
        if row is None:
            return None
        try:
            version = int(row[0])
        except ValueError:
            version = -1
        if version > SCHEMA_VERSION or version < 1:
            raise StateCorrupt(
                f"PostgreSQL state {self.describe()}: reconciler_meta has schema_version "
                f"{row[0]!r}; this reconciler understands {SCHEMA_VERSION}",
                hint="upgrade reconciler (or point it at another database); nothing was changed",
            )
        return version

    # -- state ----------------------------------------------------------------------

    def _corrupt_hint(self) -> str:
        ws = self.workspace
        return (
            "it was not modified; fix the row by hand, or move it aside with "
            f"UPDATE reconciler_states SET workspace = '{ws}.corrupt' WHERE workspace = '{ws}' "
            "and then push a good state"
        )

    def _parse(self, document: str, lineage: str, serial: int) -> State:
        """Parse a stored document exactly as the file backend does; StateCorrupt if bad."""
        where = self.describe()
        try:
            data = json.loads(document)
        except json.JSONDecodeError as exc:
            raise StateCorrupt(
                f"state {where} is not valid JSON ({exc})", hint=self._corrupt_hint()
            ) from exc
        loaded = state_codec.from_json(data, where=where, repair_hint=self._corrupt_hint())
        if (loaded.lineage, loaded.serial) != (lineage, serial):
            raise StateCorrupt(
                f"state {where}: the document says lineage {loaded.lineage} serial "
                f"{loaded.serial}, its row says lineage {lineage} serial {serial}",
                hint=self._corrupt_hint(),
            )
        return loaded

    def read(self) -> State | None:
        """The workspace's state; None when none was ever written."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT xmin::text, lineage, serial, document FROM reconciler_states "
                "WHERE workspace = %s",
                (self.workspace,),
            ).fetchone()
        if row is None:
            return None
        xmin, lineage, serial, document = row
        loaded = self._parse(document, lineage, serial)
        self._known = (xmin, lineage, serial)
        return loaded

    def write(self, state: State, *, force: bool = False) -> None:
        """Store ``state`` in one transaction: compare-and-swap on serial unless forced."""
        where = self.describe()
        payload = json.dumps(state_codec.to_json(state), ensure_ascii=False, separators=(",", ":"))
        with self._connect() as conn, conn.transaction():
            row = conn.execute(
                "SELECT xmin::text, lineage, serial FROM reconciler_states "
                "WHERE workspace = %s FOR UPDATE",
                (self.workspace,),
            ).fetchone()
            current: State | None = None
            if row is not None:
                xmin, lineage, serial = row
                if self._known == (xmin, lineage, serial):
                    current = State(lineage=lineage, serial=serial)
                else:
                    # Someone else wrote the row: a corrupt document is refused, even forced.
                    doc = conn.execute(
                        "SELECT document FROM reconciler_states WHERE workspace = %s",
                        (self.workspace,),
                    ).fetchone()
                    current = self._parse(doc[0] if doc else "", lineage, serial)
            if not force:
                check_successor(current, state, where=where)
            current_key = (current.lineage, current.serial) if current else None
            if current_key is None:
                done = conn.execute(
                    "INSERT INTO reconciler_states (workspace, lineage, serial, document) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT (workspace) DO NOTHING "
                    "RETURNING xmin::text",
                    (self.workspace, state.lineage, state.serial, payload),
                ).fetchone()
            else:
                done = conn.execute(
                    "UPDATE reconciler_states SET lineage = %s, serial = %s, document = %s, "
                    "updated_at = now() WHERE workspace = %s AND lineage = %s AND serial = %s "
                    "RETURNING xmin::text",
                    (state.lineage, state.serial, payload, self.workspace, *current_key),
                ).fetchone()
            if done is None:
                raise StateConflict(
                    f"state {where} was written by someone else meanwhile; nothing was written",
                    hint="run `reconciler plan` again",
                )
        self._known = (done[0], state.lineage, state.serial)

    # -- locking --------------------------------------------------------------------

    def _lock_key(self) -> int:
        # Namespaced by schema: the same workspace in two schemas is two states.
        return _key(f"reconciler:{self._schema}:{self.workspace}")

    def _holder_backend(self, conn: psycopg.Connection[Any]) -> int | None:
        """The server pid of the session holding this workspace's advisory lock."""
        key = self._lock_key()
        row = conn.execute(_HOLDER_BACKEND, ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF)).fetchone()
        return int(row[0]) if row else None

    def _recorded_holder(
        self, conn: psycopg.Connection[Any], *, for_update: bool = False
    ) -> tuple[LockInfo | None, int | None]:
        row = conn.execute(
            "SELECT holder, backend_pid FROM reconciler_locks WHERE workspace = %s"
            + (" FOR UPDATE" if for_update else ""),
            (self.workspace,),
        ).fetchone()
        if row is None:
            return None, None
        return LockInfo.from_json(row[0]), int(row[1])

    @contextlib.contextmanager
    def lock(self, operation: str, *, timeout: float = 0.0) -> Iterator[LockInfo]:
        """Hold the workspace's advisory lock on a dedicated session for the block."""
        with self._connect() as conn:
            key = self._lock_key()
            # The server must notice a vanished holder host, not only a dead process.
            conn.execute(
                "SELECT set_config('application_name', %s, false), "
                "set_config('tcp_keepalives_idle', '60', false), "
                "set_config('tcp_keepalives_interval', '10', false), "
                "set_config('tcp_keepalives_count', '6', false)",
                (f"reconciler lock {self.workspace}"[:63],),
            )
            deadline = time.monotonic() + timeout
            while True:
                row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
                if row and row[0]:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._locked_error(conn)
                time.sleep(min(_POLL_SECONDS, remaining))
            info = LockInfo.new(operation)
            try:
                # A row left by a holder that died is stale: we hold the lock now.
                conn.execute(
                    "INSERT INTO reconciler_locks (workspace, lock_id, holder, backend_pid) "
                    "VALUES (%s, %s, %s::jsonb, pg_backend_pid()) ON CONFLICT (workspace) DO "
                    "UPDATE SET lock_id = excluded.lock_id, holder = excluded.holder, "
                    "backend_pid = excluded.backend_pid, created_at = now()",
                    (self.workspace, info.lock_id, json.dumps(info.to_json())),
                )
                yield info
            finally:
                # The session may be gone already (force-unlock, network): then the
                # server released the lock with it and there is nothing left to do.
                with contextlib.suppress(psycopg.Error):
                    conn.execute(
                        "DELETE FROM reconciler_locks WHERE workspace = %s AND lock_id = %s",
                        (self.workspace, info.lock_id),
                    )
                    conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    def _locked_error(self, conn: psycopg.Connection[Any]) -> StateLocked:
        pid = self._holder_backend(conn)
        holder, holder_pid = self._recorded_holder(conn)
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
        loses its lock session only; its state writes stay compare-and-swap protected.
        A row whose backend no longer holds the lock is just removed.
        """
        with self._connect() as conn:
            with conn.transaction():
                holder, holder_pid = self._recorded_holder(conn, for_update=True)
                pid = self._holder_backend(conn)
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
            deadline = time.monotonic() + _UNLOCK_WAIT_SECONDS
            while terminate and self._holder_backend(conn) == pid:
                if time.monotonic() >= deadline:
                    raise StateError(
                        f"PostgreSQL backend {pid} was asked to end but still holds the lock",
                        hint="try again in a moment",
                    )
                time.sleep(_POLL_SECONDS / 4)
