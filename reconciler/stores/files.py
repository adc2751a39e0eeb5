"""The file backend's system calls: locked reads, atomic replacement, durable appends.

Kept apart from ``local`` (which decides what to write) so that each step's durability is
visible in one place: every function returns only once what it wrote is on disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# (st_ino, st_mtime_ns, st_size) of the snapshot, and of the journal or None
Mark = tuple[int, int, int]
Signature = tuple[Mark, Mark | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Pair:
    """The bytes of a snapshot and its journal, read together, and where they stood."""

    snapshot: bytes
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


@contextlib.contextmanager
def locked(path: Path, *, exclusive: bool) -> Iterator[int | None]:
    """The snapshot ``path`` open and flocked (None when it does not exist).

    A compaction replaces the snapshot by rename: whoever waited on the old file's lock
    opens the new one and waits again, so the lock always belongs to the current file.
    """
    while True:
        try:
            fd = os.open(path, os.O_RDONLY)
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


def read_pair(fd: int, journal: Path) -> Pair:
    """Both files' bytes, the snapshot through its locked ``fd``."""
    with open(fd, "rb", closefd=False) as handle:
        handle.seek(0)
        snapshot = handle.read()
    try:
        journal_data = journal.read_bytes()
    except FileNotFoundError:
        journal_data = b""
    return Pair(snapshot=snapshot, journal=journal_data, signature=signature(os.fstat(fd), journal))


def write_new(path: Path, data: bytes) -> os.stat_result:
    """Write ``data`` to a new file ``path`` (mode 0600), fsync it; its status after."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
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
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
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
