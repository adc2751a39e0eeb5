"""Local file backend: atomic replace, a kept backup, mode 0600, an flock-based lock.

Write order: temp file (0600) → fsync → hard-link the current file to ``.backup`` →
rename temp over the state → fsync the directory. A crash at any point leaves either
the old or the new state in place, never a torn one; the temp files a killed writer
leaves behind (full copies of the state) are removed by the next one that takes the lock.

A state path that is a symbolic link stays one: the store works on the link's target
(its file, lock, backup and temp files live beside the target), so writing through
either name is the same state under the same lock.

The lock is ``flock`` on a ``.lock`` file holding the holder's details: the kernel frees
it when the holder dies, and ``force-unlock`` removes the file for filesystems where
flock cannot be trusted. Removing it is what fences the holder: before each write the
holder checks that the lock file is still the inode it locked and still names its lock
id, and stops with StateLockLost otherwise.

A directory the store creates for the state (and always the default ``.reconciler/``)
gets a ``.gitignore`` of ``*``: the state holds e-mail addresses, and ``git add`` of the
desired-state folder must never commit it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from reconciler.errors import StateCorrupt, StateError
from reconciler.stores import (
    Expected,
    Lock,
    LockInfo,
    check_serial,
    check_successor,
    lock_lost,
    locked_error,
)
from reconciler.stores import model as state_codec
from reconciler.stores.location import Backend, Location
from reconciler.stores.model import State

_POLL_SECONDS = 0.1
GITIGNORE = "*\n"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Held:
    """The lock this store holds: its open descriptor, the inode it locked, its id."""

    fd: int
    inode: tuple[int, int]  # (st_dev, st_ino) of the lock file we flocked
    lock_id: str


class LocalStore:
    """The state in one JSON file."""

    def __init__(
        self,
        path: Path,
        *,
        private_directory: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.path = path
        # A symlinked state is written through to its target: never replaced by a file.
        self.file = Path(os.path.realpath(path))
        self.lock_path = self.file.with_name(self.file.name + ".lock")
        self.backup_path = self.file.with_name(self.file.name + ".backup")
        self._private = private_directory  # the default .reconciler/: always gitignored
        self._monotonic, self._sleep = monotonic, sleep
        self._temp = re.compile(rf"^\.{re.escape(self.file.name)}\.[0-9]+(?:\.backup)?\.tmp$")
        self._held: _Held | None = None
        self._prepared = False  # the directory exists, with its .gitignore if it is ours
        # (inode, mtime_ns, size) -> serial/lineage of what we last read or wrote, so the
        # compare-and-swap of a write needs no re-parse when nobody else touched the file.
        self._known: tuple[tuple[int, int, int], str, int] | None = None

    @property
    def location(self) -> Location:
        """The file path as given."""
        return Location(backend=Backend.FILE, where=str(self.path))

    def describe(self) -> str:
        """The file path."""
        return str(self.path)

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.file)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def read(self) -> State | None:
        """Parse the state file; StateCorrupt when it cannot be trusted."""
        signature = self._signature()
        if signature is None:
            return None
        try:
            raw = self.file.read_bytes()
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

    def write(self, state: State, *, force: bool = False, expected: Expected | None = None) -> None:
        """Atomically replace the state file (compare-and-swap unless forced; fenced)."""
        where = str(self.path)
        check_serial(state, where=where)
        self.fence()
        if not force:
            check_successor(self._current_for_cas(), state, where=where, expected=expected)
        elif self.file.exists():
            self._current_for_cas()  # a corrupt file is never overwritten, even by force
        # Compact: indent makes json fall back to its pure-Python encoder (3x slower);
        # `reconciler state pull` and `state show` print it readably.
        payload = json.dumps(state_codec.to_json(state), separators=(",", ":"), ensure_ascii=False)
        directory = self.file.parent
        self._prepare_directory()
        tmp = directory / f".{self.file.name}.{os.getpid()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(payload)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o600)
            self.fence()  # again, as close to the commit as it gets
            if self.file.exists():
                backup_tmp = directory / f".{self.file.name}.{os.getpid()}.backup.tmp"
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(backup_tmp)
                os.link(self.file, backup_tmp)
                os.replace(backup_tmp, self.backup_path)
            os.replace(tmp, self.file)
            _fsync_dir(directory)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise StateError(
                f"cannot write state {self.path}: {exc.strerror}; the previous state is intact"
            ) from exc
        except BaseException:  # the lock was lost, or an interrupt: no temp file stays
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        signature = self._signature()
        if signature is not None:
            self._known = (signature, state.lineage, state.serial)

    def _prepare_directory(self) -> None:
        """Create the state's directory (0700); one that is ours gets a .gitignore of ``*``."""
        if self._prepared:
            return
        directory = self.file.parent
        if not directory.exists():
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            _ignore_all(directory)
        if self._private:  # also a .reconciler/ made by an older reconciler
            _ignore_all(self.path.parent)
        self._prepared = True

    # -- locking --------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, operation: str, *, timeout: float = 0.0) -> Iterator[Lock]:
        """Hold an exclusive flock on ``<state>.lock`` recording the holder."""
        if self._held is not None:
            raise StateError(f"state {self.path} is already locked by this process")
        self._prepare_directory()
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            self._take(fd, timeout)
            info = LockInfo.new(operation)
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info.to_json()).encode(), 0)
            os.fsync(fd)
            st = os.fstat(fd)
            self._held = _Held(fd=fd, inode=(st.st_dev, st.st_ino), lock_id=info.lock_id)
            self._remove_stale_temp_files()
            try:
                yield Lock(info=info, check=self.fence)
            finally:
                self._held = None
                # Clear the holder before unlocking, so nobody reads stale details.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _take(self, fd: int, timeout: float) -> None:
        """flock ``fd``, trying until ``timeout`` seconds have passed; StateLocked then."""
        deadline = self._monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise StateError(f"cannot lock {self.lock_path}: {exc.strerror}") from exc
            remaining = deadline - self._monotonic()
            if remaining <= 0:
                raise locked_error(str(self.path), self.holder())
            self._sleep(min(_POLL_SECONDS, remaining))

    def _remove_stale_temp_files(self) -> None:
        """Delete temp files of writers killed mid-write (we hold the lock: none is live)."""
        with contextlib.suppress(OSError), os.scandir(self.file.parent) as entries:
            for entry in entries:
                if self._temp.match(entry.name):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)

    def fence(self) -> None:
        """StateLockLost unless the lock file is still the one we locked and names our id."""
        held = self._held
        if held is None:
            return
        where = str(self.path)
        try:
            st = os.stat(self.lock_path)
        except FileNotFoundError:
            raise lock_lost(where, held.lock_id, "its lock file was removed") from None
        if (st.st_dev, st.st_ino) != held.inode:
            raise lock_lost(where, held.lock_id, "its lock file was replaced")
        recorded = _parse_holder(os.pread(held.fd, 65536, 0))
        if recorded is None or recorded.lock_id != held.lock_id:
            raise lock_lost(where, held.lock_id, "its lock file names another holder")

    def holder(self) -> LockInfo | None:
        """The holder recorded in the lock file, or None."""
        try:
            return _parse_holder(self.lock_path.read_bytes())
        except OSError:
            return None

    def force_unlock(self, lock_id: str) -> None:
        """Remove the lock file if it names ``lock_id``."""
        holder = self.holder()
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


def _ignore_all(directory: Path) -> None:
    """Put a ``.gitignore`` of ``*`` in ``directory`` unless it has one."""
    with contextlib.suppress(FileExistsError):
        fd = os.open(directory / ".gitignore", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(GITIGNORE)


def _parse_holder(raw: bytes) -> LockInfo | None:
    try:
        return LockInfo.from_json(json.loads(raw or b"null"))
    except ValueError:
        return None


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
