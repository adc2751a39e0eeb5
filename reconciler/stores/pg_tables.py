"""The PostgreSQL backend's tables: created on first use, and the lock holder read from them.

Works through any connection with psycopg's ``execute`` and ``transaction`` (so it needs
no psycopg import: ``postgres`` stays the one module that does, and translates errors).
Whatever command comes first on a new database creates the tables — a read, a lock, a
force-unlock, a push — under a transaction-level advisory lock so two first runs do not
race, and the same way migrates an older schema (1: one document per workspace) to the
current one; a schema newer than this code knows is refused without being touched.
"""

from __future__ import annotations

import hashlib
from contextlib import AbstractContextManager
from typing import Any, Protocol

from reconciler.errors import StateCorrupt, StateError
from reconciler.stores import LockInfo, pg_sql

SCHEMA_VERSION = pg_sql.SCHEMA_VERSION


class Cursor(Protocol):
    """What the backend reads from a cursor."""

    def fetchone(self) -> Any:
        """The next row, or None."""
        ...


class Connection(Protocol):
    """What the backend uses of a psycopg connection."""

    def execute(self, query: str, params: tuple[Any, ...] | None = None) -> Cursor:
        """Run one statement."""
        ...

    def transaction(self) -> AbstractContextManager[Any]:
        """A transaction for the block."""
        ...


def advisory_key(text: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``text``."""
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


_SCHEMA_LOCK_KEY = advisory_key("reconciler:create-schema")


def ensure(conn: Connection, *, where: str) -> str:
    """Create the tables unless they exist; the schema they live in (``current_schema()``)."""
    version = schema_version(conn, where=where)
    if version != SCHEMA_VERSION:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
            conn.execute(pg_sql.CREATE_META)
            version = schema_version(conn, where=where)
            if version is None:
                conn.execute(pg_sql.CREATE_TABLES)
                version = 1
            if version < 2:  # schema 2: rows per account, batch and event
                conn.execute(pg_sql.MIGRATE_TO_2)
    row = conn.execute("SELECT current_schema()").fetchone()
    return str(row[0]) if row else ""


def schema_version(conn: Connection, *, where: str) -> int | None:
    """The recorded schema version, None before the tables exist; StateCorrupt if unknown."""
    row = conn.execute("SELECT to_regclass('reconciler_meta') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return None
    row = conn.execute("SELECT value FROM reconciler_meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        return None
    try:
        version = int(row[0])
    except ValueError:
        version = -1
    if version > SCHEMA_VERSION or version < 1:
        raise StateCorrupt(
            f"PostgreSQL state {where}: reconciler_meta has schema_version "
            f"{row[0]!r}; this reconciler understands {SCHEMA_VERSION}",
            hint="upgrade reconciler (or point it at another database); nothing was changed",
        )
    return version


def holder_backend(conn: Connection, key: int) -> int | None:
    """The server pid of the session holding the advisory lock ``key``, or None."""
    halves = ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF)
    row = conn.execute(pg_sql.HOLDER_BACKEND, halves).fetchone()
    return int(row[0]) if row else None


def recorded_holder(
    conn: Connection, workspace: str, *, for_update: bool = False
) -> tuple[LockInfo | None, int | None]:
    """The holder row of ``workspace`` (maybe stale): who, and the backend pid it recorded."""
    row = conn.execute(
        "SELECT holder, backend_pid FROM reconciler_locks WHERE workspace = %s"
        + (" FOR UPDATE" if for_update else ""),
        (workspace,),
    ).fetchone()
    if row is None:
        return None, None
    return LockInfo.from_json(row[0]), int(row[1])


def timed_out(where: str, setting: str, value: str, doing: str) -> StateError:
    """The error for a statement PostgreSQL cancelled after one of our timeouts."""
    return StateError(
        f"PostgreSQL state {where}: a statement gave up after {setting} {value} {doing} "
        "(another session holds a lock it needs, or the server is overloaded); "
        "nothing was changed by it",
        hint=f"find the session holding it: {pg_sql.WHO_BLOCKS}; end it or let it finish, "
        f"or raise the limit with ?{setting}=... in the DSN "
        f"(or RECONCILER_PG_{setting.upper()})",
    )
