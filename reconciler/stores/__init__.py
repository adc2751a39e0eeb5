"""Where the recorded state lives: the narrow store interface and backend selection.

Every backend implements :class:`Store` (read / write / lock / force-unlock) and passes
the same contract test suite (``tests/test_store_contract.py``).
"""

from __future__ import annotations

import getpass
import os
import socket
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from reconciler.errors import StateConflict, StateLocked
from reconciler.stores.model import State, utc_now

DEFAULT_STATE = Path(".reconciler") / "state.json"


@dataclass(frozen=True, slots=True, kw_only=True)
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


class Store(Protocol):
    """A backend that holds one recorded state."""

    def describe(self) -> str:
        """Where the state lives, without secrets (for messages)."""
        ...

    def read(self) -> State | None:
        """The current state, or None when none was ever written."""
        ...

    def write(self, state: State, *, force: bool = False) -> None:
        """Store ``state``: compare-and-swap on serial unless ``force``.

        Without force the stored state must have the same lineage and serial
        ``state.serial - 1`` (or not exist, with ``state.serial == 1``); otherwise
        StateConflict and nothing is written.
        """
        ...

    def lock(self, operation: str, *, timeout: float = 0.0) -> AbstractContextManager[LockInfo]:
        """Hold the exclusive lock for the block; waits up to ``timeout`` seconds."""
        ...

    def force_unlock(self, lock_id: str) -> None:
        """Release a lock left by a holder that cannot release it; must name its id."""
        ...


def check_successor(current: State | None, new: State, *, where: str) -> None:
    """Raise StateConflict unless ``new`` directly follows ``current``."""
    if current is None:
        if new.serial != 1:
            raise StateConflict(
                f"state {where} does not exist, but serial {new.serial} was to be written",
                hint="run `reconciler plan` again",
            )
        return
    if current.lineage != new.lineage:
        raise StateConflict(
            f"state {where} has lineage {current.lineage}, not {new.lineage}",
            hint="another state was put in its place; plan again against it",
        )
    if current.serial != new.serial - 1:
        raise StateConflict(
            f"state {where} is at serial {current.serial}; expected {new.serial - 1} "
            "(someone else wrote it meanwhile); nothing was written",
            hint="run `reconciler plan` again",
        )


def open_store(location: str | None, *, base_dir: Path, workspace: str | None = None) -> Store:
    """The store for ``location`` (a path or a postgresql:// DSN); default beside the input."""
    location = location or os.environ.get("RECONCILER_STATE") or None
    if location and location.startswith(("postgresql://", "postgres://")):
        from reconciler.stores import postgres  # noqa: PLC0415 - psycopg is an optional extra

        return postgres.PostgresStore.from_dsn(location, workspace=workspace)
    from reconciler.stores.local import LocalStore  # noqa: PLC0415 - keep imports per backend

    path = Path(location) if location else base_dir / DEFAULT_STATE
    return LocalStore(path)
