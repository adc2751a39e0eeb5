"""Local file backend: atomic replace, a kept backup, mode 0600, an flock-based lock.

Write order: temp file (0600) → fsync → hard-link the current file to ``.backup`` →
rename temp over the state → fsync the directory. A crash at any point leaves either
the old or the new state in place, never a torn one. The lock is ``flock`` on a
``.lock`` file holding the holder's details: the kernel frees it when the holder dies,
and ``force-unlock`` removes it for filesystems where flock cannot be trusted.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from reconciler.errors import StateCorrupt, StateError
from reconciler.stores import LockInfo, check_successor, locked_error
from reconciler.stores import model as state_codec
from reconciler.stores.model import State

_POLL_SECONDS = 0.1


class LocalStore:
    """The state in one JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self.backup_path = path.with_name(path.name + ".backup")
        # (inode, mtime_ns, size) -> serial/lineage of what we last read or wrote, so the
        # compare-and-swap of a write needs no re-parse when nobody else touched the file.
        self._known: tuple[tuple[int, int, int], str, int] | None = None

    def describe(self) -> str:
        """The file path."""
        return str(self.path)

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def read(self) -> State | None:
        """Parse the state file; StateCorrupt when it cannot be trusted."""
        signature = self._signature()
        if signature is None:
            return None
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            raise StateError(f"cannot read state {self.path}: {exc.strerror}") from exc
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StateCorrupt(
                f"state {self.path} is not valid JSON ({exc})",
                hint=f"restore {self.backup_path} or fix the file; it was not modified",
            ) from exc
        loaded = state_codec.from_json(data, where=str(self.path))
        self._known = (signature, loaded.lineage, loaded.serial)
        return loaded

    def _current_for_cas(self) -> State | None:
        signature = self._signature()
        if signature is None:
            return None
        if self._known is not None and self._known[0] == signature:
            return State(lineage=self._known[1], serial=self._known[2])
        return self.read()

    def write(self, state: State, *, force: bool = False) -> None:
        """Atomically replace the state file (compare-and-swap on serial unless forced)."""
        if not force:
            check_successor(self._current_for_cas(), state, where=str(self.path))
        elif self.path.exists():
            self._current_for_cas()  # a corrupt file is never overwritten, even by force
        # Compact: indent makes json fall back to its pure-Python encoder (3x slower);
        # `reconciler state pull` and `state show` print it readably.
        payload = json.dumps(state_codec.to_json(state), separators=(",", ":"), ensure_ascii=False)
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = directory / f".{self.path.name}.{os.getpid()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(payload)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o600)
            if self.path.exists():
                backup_tmp = directory / f".{self.path.name}.{os.getpid()}.backup.tmp"
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(backup_tmp)
                os.link(self.path, backup_tmp)
                os.replace(backup_tmp, self.backup_path)
            os.replace(tmp, self.path)
            _fsync_dir(directory)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise StateError(
                f"cannot write state {self.path}: {exc.strerror}; the previous state is intact"
            ) from exc
        signature = self._signature()
        if signature is not None:
            self._known = (signature, state.lineage, state.serial)

    @contextlib.contextmanager
    def lock(self, operation: str, *, timeout: float = 0.0) -> Iterator[LockInfo]:
        """Hold an exclusive flock on ``<state>.lock`` recording the holder."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise StateError(f"cannot lock {self.lock_path}: {exc.strerror}") from exc
                    if time.monotonic() >= deadline:
                        raise locked_error(str(self.path), self._holder()) from None
                    time.sleep(_POLL_SECONDS)
            info = LockInfo.new(operation)
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info.to_json()).encode(), 0)
            os.fsync(fd)
            try:
                yield info
            finally:
                # Clear the holder before unlocking, so nobody reads stale details.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _holder(self) -> LockInfo | None:
        try:
            return LockInfo.from_json(json.loads(self.lock_path.read_bytes() or b"null"))
        except (OSError, ValueError):
            return None

    def force_unlock(self, lock_id: str) -> None:
        """Remove the lock file if it names ``lock_id``."""
        holder = self._holder()
        if holder is None:
            raise StateError(
                f"state {self.path} is not locked (no lock holder recorded)",
                hint="nothing to unlock",
            )
        if holder.lock_id != lock_id:
            raise StateError(
                f"lock id {lock_id} does not match the current {holder.describe()}",
                hint=f"pass the id of the current holder: {holder.lock_id}",
            )
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.lock_path)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
