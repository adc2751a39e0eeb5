"""Where the recorded state lives: the narrow store interface and backend selection.

Every backend implements :class:`Store` (read / write / lock / force-unlock) and passes
the same contract test suite (``tests/test_store_contract.py``).

Writes cost what they change. ``write(state)`` still takes the whole new state, so the
interface and its contract stay whole-state; a store remembers the state it last read or
wrote and writes only the difference (``delta.between``): the file backend appends it to
a journal beside its snapshot (``local``, ``journal``), PostgreSQL updates the rows of
what changed (``pg_state``). Finding that difference costs the change, not the size of
the state, when the new state's mappings are revisions of the stored one's
(``revisions.revise``, as the engine makes them); any other state is compared in full,
which is only slower. A store re-reads before writing whenever someone else wrote since
(the compare-and-swap needs it anyway), and a write that replaces the state (``force``,
or an ``expected`` version: ``state push``) is written whole.

Fencing: ``lock()`` yields a :class:`Lock`; while a store holds one, each of its writes
first confirms the lock is still its own (the file backend: the lock file is still the
inode it locked and names its lock id; PostgreSQL: its lock session is alive and the
holder row names its lock id, in the write's own transaction), and ``fence()`` does the
same for a caller about to act outside the store (apply, before every createTask). A
runner whose lock was force-unlocked or whose session ended gets StateLockLost and stops.
"""

from __future__ import annotations

import getpass
import os
import socket
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from reconciler.errors import ConfigError, StateConflict, StateError, StateLocked, StateLockLost
from reconciler.seals import Seal
from reconciler.stores.location import Backend, Location, classify
from reconciler.stores.model import LAST_STARTING_SERIAL, MAX_SERIAL, Names, State, utc_now
from reconciler.values import frozen

DEFAULT_STATE = Path(".reconciler") / "state.json"
STATE_ENV = "RECONCILER_STATE"


@frozen
class LockInfo:
    """Who holds a state lock."""

    lock_id: str
    operation: str
    host: str
    pid: int
    user: str
    created_at: str

    @staticmethod
    def new(operation: str) -> LockInfo:
        """Lock information for this process."""
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
        return LockInfo(
            lock_id=str(uuid.uuid4()),
            operation=operation,
            host=socket.gethostname(),
            pid=os.getpid(),
            user=user,
            created_at=utc_now(),
        )

    def to_json(self) -> dict[str, Any]:
        """As a JSON object."""
        return {
            "lock_id": self.lock_id,
            "operation": self.operation,
            "host": self.host,
            "pid": self.pid,
            "user": self.user,
            "created_at": self.created_at,
        }

    @staticmethod
    def from_json(data: Any) -> LockInfo | None:
        """Parse lock information; None when it is unreadable."""
        try:
            return LockInfo(
                lock_id=str(data["lock_id"]),
                operation=str(data["operation"]),
                host=str(data["host"]),
                pid=int(data["pid"]),
                user=str(data.get("user", "unknown")),
                created_at=str(data["created_at"]),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def describe(self) -> str:
        """One line naming the holder."""
        return (
            f"lock {self.lock_id} held by {self.user}@{self.host} pid {self.pid} "
            f"for `{self.operation}` since {self.created_at}"
        )


def locked_error(where: str, holder: LockInfo | None, *, detail: str = "") -> StateLocked:
    """What a backend raises when the lock is taken: the holder and how to free it.

    ``holder`` is None when the backend cannot tell who holds the lock (not recorded
    yet, or unreadable); ``detail`` then adds what it does know.
    """
    if holder is None:
        return StateLocked(
            f"state {where} is locked by another process" + (f" ({detail})" if detail else ""),
            lock_id="",
            hint="wait for it to finish, or pass --lock-timeout SECONDS to wait",
        )
    return StateLocked(
        f"state {where} is locked: {holder.describe()}",
        lock_id=holder.lock_id,
        hint=(
            "wait for it to finish (--lock-timeout SECONDS waits), or if that process is "
            f"gone: reconciler force-unlock {holder.lock_id}"
        ),
    )


@frozen
class Lock:
    """The lock a store holds for a block: who holds it, and a check it still does."""

    info: LockInfo
    check: Callable[[], None]  # the store's fence(): StateLockLost when no longer ours

    @property
    def lock_id(self) -> str:
        """The holder's lock id."""
        return self.info.lock_id

    @property
    def operation(self) -> str:
        """What the holder is doing."""
        return self.info.operation

    def verify(self) -> None:
        """Raise StateLockLost unless this lock is still held by this process."""
        self.check()


def lock_lost(where: str, lock_id: str, why: str) -> StateLockLost:
    """What a backend raises when the lock it held is no longer its own."""
    return StateLockLost(
        f"lost the lock {lock_id} on state {where}: {why}; stopped before writing the state "
        "or sending anything more",
        hint="another run may hold the state now: let it finish, then run `reconciler "
        "refresh` and plan again (what this run recorded is kept and settled there)",
    )


@frozen
class Expected:
    """What a write expects to find stored (its compare-and-swap): nothing, or a version."""

    lineage: str | None = None  # None: the store must be empty
    serial: int = 0

    @staticmethod
    def before(state: State) -> Expected:
        """The default: ``state`` is the direct successor of what is stored."""
        if state.serial <= 1:
            return Expected()
        return Expected(lineage=state.lineage, serial=state.serial - 1)

    @staticmethod
    def of(current: State | None) -> Expected:
        """Exactly ``current`` (as read), or an empty store."""
        if current is None:
            return Expected()
        return Expected(lineage=current.lineage, serial=current.serial)


class Store(Protocol):
    """A backend that holds one recorded state."""

    @property
    def location(self) -> Location:
        """Where the state lives, without secrets (for messages and plans)."""
        ...

    def describe(self) -> str:
        """Where the state lives, without secrets, as one string (``location.describe()``)."""
        ...

    def read(self, *, names: Names | None = None) -> State | None:
        """The current state, or None when none was ever written.

        ``names`` (the desired users, by account): the records take the equal strings of
        these as they are decoded, so that equal texts are held once; nothing else changes.
        """
        ...

    def write(self, state: State, *, force: bool = False, expected: Expected | None = None) -> None:
        """Store ``state``: compare-and-swap unless ``force``; fenced while a lock is held.

        Without force the stored state must be ``expected`` (default: the same lineage
        at serial ``state.serial - 1``, or nothing for serial 1), and ``state.serial``
        newer than it; otherwise StateConflict and nothing is written. A serial beyond
        MAX_SERIAL is refused even forced. Durable when it returns (fsynced, committed);
        only what changed since the state this store last read or wrote is written,
        unless the write is forced or names what it ``expected`` (then it is written
        whole, starting afresh: a new snapshot, every row).
        """
        ...

    def lock(self, operation: str, *, timeout: float = 0.0) -> AbstractContextManager[Lock]:
        """Hold the exclusive lock for the block; waits up to ``timeout`` seconds."""
        ...

    def fence(self) -> None:
        """Raise StateLockLost unless the lock this store holds is still its own.

        Nothing to check (and no error) when this store holds no lock.
        """
        ...

    def holder(self) -> LockInfo | None:
        """Who is recorded as holding the lock, or None."""
        ...

    def force_unlock(self, lock_id: str) -> None:
        """Release a lock left by a holder that cannot release it; must name its id."""
        ...


def check_serial(state: State, *, where: str) -> None:
    """Refuse a serial no backend can store (PostgreSQL's bigint; the same for files)."""
    if not 1 <= state.serial <= MAX_SERIAL:
        raise StateError(
            f"state {where} cannot be written with serial {state.serial}: serials run from 1 "
            f"to {MAX_SERIAL}; nothing was written",
            hint="push a copy with a smaller serial into an empty workspace or file "
            "(`reconciler state push FILE`)",
        )


def check_room(state: State, store: Store) -> None:
    """Refuse to start a run (apply, refresh) on a state too close to the last serial.

    Each batch takes writes; a run that reached MAX_SERIAL halfway would have sent
    batches whose results it cannot record. StateError before anything is sent.
    """
    if state.serial > LAST_STARTING_SERIAL:
        raise StateError(
            f"state {store.describe()} is at serial {state.serial}, less than 2^32 writes "
            f"before the last serial ({MAX_SERIAL}): apply and refresh do not start there, "
            "as they could not record what they send; nothing was sent",
            hint="`reconciler state pull > copy.json`, give it a serial below "
            f"{LAST_STARTING_SERIAL}, then `reconciler state push copy.json` into an empty "
            "workspace or file",
        )


def check_successor(
    current: State | None, new: State, *, where: str, expected: Expected | None = None
) -> None:
    """Raise StateConflict unless ``current`` is what the write of ``new`` expects."""
    wanted = expected or Expected.before(new)
    if wanted.lineage is None:
        if current is not None:
            raise StateConflict(
                f"state {where} exists (lineage {current.lineage}, serial {current.serial}), "
                f"but a new state was to be written; nothing was written",
                hint="someone else wrote it meanwhile: run `reconciler plan` again",
            )
        return
    if current is None:
        raise StateConflict(
            f"state {where} does not exist, but serial {new.serial} was to be written",
            hint="run `reconciler plan` again",
        )
    if current.lineage != wanted.lineage:
        raise StateConflict(
            f"state {where} has lineage {current.lineage}, not {wanted.lineage}",
            hint="another state was put in its place; plan again against it",
        )
    if current.serial != wanted.serial or new.serial <= wanted.serial:
        raise StateConflict(
            f"state {where} is at serial {current.serial}; expected {wanted.serial} "
            "(someone else wrote it meanwhile); nothing was written",
            hint="run `reconciler plan` again",
        )


def open_store(
    location: str | None,
    *,
    base_dir: Path,
    workspace: str | None = None,
    environ: Mapping[str, str],
    check_record: Seal | None = None,
) -> Store:
    """The store for ``location``, else ``RECONCILER_STATE`` in ``environ``, else the default.

    ``environ`` is required: a caller that forgot it would silently ignore
    ``RECONCILER_STATE`` and use the default file. The location must be a postgresql://
    URL or a plain path (``location.classify``); anything else is refused before a store
    exists. ``--workspace`` is for PostgreSQL only: a file has no workspaces, and a
    misspelt one must not select an empty state. ``check_record``: the key under which a
    state file may skip the schema for bytes that passed it before (``stores.checked``);
    None (--no-cache, or no usable key) checks every read.
    """
    source = "--state"
    if location is None and STATE_ENV in environ:
        location, source = environ[STATE_ENV], STATE_ENV
    if location is not None and classify(location, source=source) is Backend.POSTGRES:
        from reconciler.stores import pg_dsn, postgres  # noqa: PLC0415 - psycopg is an optional extra

        timeouts = pg_dsn.Timeouts.from_env(environ)
        return postgres.PostgresStore.from_dsn(location, workspace=workspace, timeouts=timeouts)
    from reconciler.stores.local import LocalStore  # noqa: PLC0415 - keep imports per backend

    if workspace is not None:
        raise ConfigError(
            f"--workspace {workspace!r} names a PostgreSQL workspace, but the state is the "
            f"file {location or base_dir / DEFAULT_STATE}",
            hint="drop --workspace, or give a postgresql:// --state; for several local states "
            "use one --state path per environment",
        )
    if location is None:
        return LocalStore(
            base_dir / DEFAULT_STATE, private_directory=True, check_record=check_record
        )
    return LocalStore(Path(location), check_record=check_record)
