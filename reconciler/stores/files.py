"""The file backend's system calls: locked reads, atomic replacement, durable appends.

Kept apart from ``local`` (which decides what to write) so that each step's durability is
visible in one place: every function returns only once what it wrote is on disk.

Every open of the state's files (snapshot, journal, temp snapshot, lock) goes through
:func:`open_regular`: opened without blocking and refused unless it is a regular file, so a
FIFO given as ``--state`` (or left where a journal or lock file belongs) fails at once with
an error naming it, instead of hanging every command. Symlinks are followed as before: a
symlinked state is one state with its target (``local``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from reconciler.errors import StateError
from reconciler.values import frozen

# (st_ino, st_mtime_ns, st_size) of the snapshot, and of the journal or None
Mark = tuple[int, int, int]
Signature = tuple[Mark, Mark | None]
# Opening a FIFO for reading (or writing) blocks until a writer (reader) comes: never wait.
# O_NONBLOCK means nothing for a regular file, so the descriptor is used as it is.
_NO_WAIT = os.O_NONBLOCK | os.O_CLOEXEC


@frozen
class Pair:
    """The bytes of a snapshot (in chunks) and its journal, read together, and where they
    stood. Chunks, so that a reader can let go of each once it has decoded it."""

    snapshot: list[bytes]
    journal: bytes
    signature: Signature


def signature(snapshot: os.stat_result, journal: Path) -> Signature:
    """Where the two files stand: any write by anyone changes it."""
    try:
        journal_mark: Mark | None = mark(os.stat(journal))
    except FileNotFoundError:
        journal_mark = None
    return mark(snapshot), journal_mark


def mark(st: os.stat_result) -> Mark:
    """One file's part of a signature."""
    return st.st_ino, st.st_mtime_ns, st.st_size


def open_regular(path: Path, flags: int, mode: int = 0o600) -> int:
    """``os.open(path, flags, mode)`` without ever blocking; StateError (the descriptor
    closed) unless what is there is a regular file: a FIFO, a device or a folder holds no
    state, and reading a FIFO would wait forever."""
    try:
        fd = os.open(path, flags | _NO_WAIT, mode)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a FIFO opened for writing with no reader
            raise _not_a_file(path, os.stat(path).st_mode) from None
        raise
    try:
        kind = os.fstat(fd).st_mode
    except BaseException:
        os.close(fd)
        raise
    if stat.S_ISREG(kind):
        return fd
    os.close(fd)
    raise _not_a_file(path, kind)


def _not_a_file(path: Path, kind: int) -> StateError:
    """The error for a state's file that is not a regular file."""
    return StateError(
        f"{path} is {_kind(kind)}, not a regular file: it cannot hold a state, and nothing "
        "was read or written",
        hint=f"point --state (or RECONCILER_STATE) at a state file, e.g. --state "
        f".reconciler/state.json; or move {path} aside (mv {path} {path}.aside) if it was "
        "left there",
    )


def _kind(mode: int) -> str:
    """What a file of ``mode`` (not a regular file) is, in words."""
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"


@contextlib.contextmanager
def locked(path: Path, *, exclusive: bool) -> Iterator[int | None]:
    """The snapshot ``path`` open and flocked (None when it does not exist).

    A compaction replaces the snapshot by rename: whoever waited on the old file's lock
    opens the new one and waits again, so the lock always belongs to the current file.
    """
    while True:
        try:
            fd = open_regular(path, os.O_RDONLY)
        except FileNotFoundError:
            yield None
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            held = os.fstat(fd)
            try:
                now = os.stat(path)
            except FileNotFoundError:
                continue
            if (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
                yield fd
                return
        finally:
            os.close(fd)  # also releases the flock


def read_pair(fd: int, journal: Path, *, chunk_bytes: int) -> Pair:
    """Both files' bytes, the snapshot through its locked ``fd`` in chunks of ``chunk_bytes``."""
    snapshot = []
    with open(fd, "rb", closefd=False) as handle:
        handle.seek(0)
        while chunk := handle.read(chunk_bytes):
            snapshot.append(chunk)
    journal_data = read_journal(journal)
    return Pair(snapshot=snapshot, journal=journal_data, signature=signature(os.fstat(fd), journal))


def read_journal(journal: Path) -> bytes:
    """The journal's bytes (none when there is no journal)."""
    try:
        journal_fd = open_regular(journal, os.O_RDONLY)
    except FileNotFoundError:
        return b""
    with open(journal_fd, "rb") as handle:
        return handle.read()


def snapshot_chunks(fd: int, *, chunk_bytes: int) -> Iterator[bytes]:
    """The snapshot's bytes through its locked ``fd``, in chunks of ``chunk_bytes``, each
    read only when the next is asked for (and kept by the caller only)."""
    with open(fd, "rb", closefd=False) as handle:
        handle.seek(0)
        while chunk := handle.read(chunk_bytes):
            yield chunk


def read_whole(fd: int) -> bytes:
    """The snapshot's bytes again, all at once, through its locked ``fd``."""
    with open(fd, "rb", closefd=False) as handle:
        handle.seek(0)
        return handle.read()


def write_new(path: Path, data: bytes) -> os.stat_result:
    """Write ``data`` to a new file ``path`` (mode 0600), fsync it; its status after."""
    fd = open_regular(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        _write_all(fd, data)
        os.fsync(fd)
        os.fchmod(fd, 0o600)
        return os.fstat(fd)
    finally:
        os.close(fd)


def append(path: Path, data: bytes, *, at: int) -> Mark:
    """Append ``data`` at offset ``at`` of ``path`` (cutting what lies beyond), fsync it.

    Returns the file's signature mark after. On failure the file is cut back to ``at``,
    as far as the system lets us: a record cut short is ignored by readers either way.
    """
    created = not path.exists()
    fd = open_regular(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_size != at:
            os.ftruncate(fd, at)  # a record a crash cut short, never acknowledged
        try:
            os.lseek(fd, at, os.SEEK_SET)
            _write_all(fd, data)
            os.fsync(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, at)
            raise
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if created:
        fsync_dir(path.parent)  # the journal's name is durable too
    return mark(st)


def remove(path: Path) -> None:
    """Remove ``path`` if it exists, durably."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make the directory's entries (renames, new and removed files) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
