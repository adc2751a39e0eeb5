"""Local file backend: a snapshot and a journal, a kept backup, mode 0600, an flock lock.

A write appends what changed to ``state.json.journal`` (one record with its length and
checksum; the format is ``journal``'s), fsyncs it, and returns: it costs the change, not
the size of the state. When the lock is released and the journal has grown larger than
the snapshot, or within a long run once it is four times larger (and at least 64 MiB),
the journal is *compacted*: a new snapshot is written whole (temp file → fsync →
hard-link the old one to ``.backup`` → rename over ``state.json`` → fsync the
directory), then the journal is removed. A write that replaces the state (``force``, or
a push naming what it replaces) and the first write are new snapshots too.

Every write holds an exclusive ``flock`` on the snapshot from its compare-and-swap to its
append or rename, so two writers (with or without the run's lock) cannot both win;
readers hold a shared one while they read the two files. Temp files a killed writer
leaves (full copies of the state) are removed by the next one that takes the lock.

A state path that is a symbolic link stays one: the store works on the link's target
(its file, journal, lock, backup and temp files live beside the target).

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
from pathlib import Path

from reconciler.errors import StateConflict, StateCorrupt, StateError
from reconciler.seals import Seal
from reconciler.stores import (
    Expected,
    Lock,
    LockInfo,
    check_serial,
    check_successor,
    checked,
    decoding,
    files,
    lock_lost,
    locked_error,
)
from reconciler.stores import delta as deltas
from reconciler.stores import journal as journals
from reconciler.stores.location import Backend, Location
from reconciler.stores.model import Names, State
from reconciler.values import frozen

_POLL_SECONDS = 0.1
GITIGNORE = "*\n"
# Compaction: when the lock is released, a journal larger than its snapshot is folded in;
# during a run, one that outgrows this many times the snapshot and this floor.
_RUN_FACTOR = 4
_RUN_FLOOR = 64 * 1024 * 1024


@frozen
class _Held:
    """The lock this store holds: its open descriptor, the inode it locked, its id."""

    fd: int
    inode: tuple[int, int]  # (st_dev, st_ino) of the lock file we flocked
    lock_id: str


@frozen
class _Known:
    """What this store last read or wrote, and where the files stood just after."""

    state: State  # the whole state: the next write is a delta against it
    loaded: journals.Loaded
    signature: files.Signature


class LocalStore:
    """The state in a snapshot file and its journal."""

    def __init__(
        self,
        path: Path,
        *,
        private_directory: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        journal_floor: int = _RUN_FLOOR,
        check_record: Seal | None = None,
    ) -> None:
        self.path = path
        # A symlinked state is written through to its target: never replaced by a file.
        self.file = Path(os.path.realpath(path))
        self.lock_path = self.file.with_name(self.file.name + ".lock")
        self.backup_path = self.file.with_name(self.file.name + ".backup")
        self.journal_path = self.file.with_name(self.file.name + ".journal")
        self._private = private_directory  # the default .reconciler/: always gitignored
        self._monotonic, self._sleep = monotonic, sleep
        self._journal_floor = journal_floor  # a journal may grow this big in a run, at least
        # Skip the schema for snapshot bytes that passed it before (stores.checked), by a
        # record sealed with this key; None: no record, every read checks the schema.
        self._check_record = check_record
        self._temp = re.compile(rf"^\.{re.escape(self.file.name)}\.[0-9]+(?:\.backup)?\.tmp$")
        self._held: _Held | None = None
        self._prepared = False  # the directory exists, with its .gitignore if it is ours
        # The state as last read or written here: while the files still stand where they
        # stood then, a write needs no re-read, and it writes the delta against it.
        self._known: _Known | None = None

    @property
    def location(self) -> Location:
        """The file path as given."""
        return Location(backend=Backend.FILE, where=str(self.path))

    def describe(self) -> str:
        """The file path."""
        return str(self.path)

    def _repair_hint(self) -> str:
        return (
            f"restore {self.backup_path} (an older snapshot; move {self.journal_path.name} "
            "aside with it) or fix the file; it was not modified"
        )

    # -- reading --------------------------------------------------------------------

    def read(self, *, names: Names | None = None) -> State | None:
        """The snapshot and its journal replayed; StateCorrupt when they cannot be trusted.

        ``names``: the snapshot's records take their equal strings as they are decoded."""
        try:
            with files.locked(self.file, exclusive=False) as fd:
                known = None if fd is None else self._load(fd, names)
        except OSError as exc:
            raise StateError(f"cannot read state {self.path}: {exc.strerror}") from exc
        if known is None:
            self._refuse_orphan_journal()
            return None
        return known.state

    def _load(self, fd: int, names: Names | None = None) -> _Known:
        """Read both files through the locked snapshot ``fd`` (no re-read if unchanged);
        ``names``: see :meth:`read`."""
        signature = files.signature(os.fstat(fd), self.journal_path)
        known = self._known
        if known is not None and known.signature == signature:
            return known
        seal = self._check_record
        where, repair_hint = str(self.path), self._repair_hint()
        read_at: files.Signature | None = None
        if seal is None:
            # No check record to look up, so nothing needs the bytes before they are
            # decoded: each chunk is read only when the decoder asks for it, and a million
            # accounts' peak is their records, never their bytes (266 MB) as well.
            journal = files.read_journal(self.journal_path)
            chunks = decoding.Chunks(files.snapshot_chunks(fd, chunk_bytes=decoding.CHUNK_BYTES))
            digest, passed = "", False
        else:
            pair = files.read_pair(fd, self.journal_path, chunk_bytes=decoding.CHUNK_BYTES)
            digest = checked.snapshot_digest(pair.snapshot)
            passed = checked.known(self.file, digest, seal)
            journal, read_at = pair.journal, pair.signature
            # Each chunk is let go of once decoded: the peak is the records and what is
            # left of the bytes, not the bytes, their text and the records.
            chunks = decoding.Chunks(pair.snapshot)
            del pair
        try:
            loaded = journals.load(
                chunks,
                journal,
                where=where,
                repair_hint=repair_hint,
                schema_checked=passed,
                names=names,
            )
        except decoding.Irregular:
            # Not plain enough for the chunked path: the plain reader decides, on the bytes
            # read again (the same locked file) and checked in full, whatever the record says.
            whole = files.read_whole(fd)
            loaded = journals.load(
                whole, journal, where=where, repair_hint=repair_hint, names=names
            )
            # Only the bytes that were checked earn a record (an edit in place between the
            # two reads would otherwise lend the checked bytes' pass to the first ones).
            passed = passed or checked.snapshot_digest(whole) != digest
        if seal is not None and not passed:
            checked.remember(self.file, digest, seal)
        if read_at is None:  # where both files stand, once read (under the lock: unchanged)
            read_at = files.signature(os.fstat(fd), self.journal_path)
        self._known = _Known(state=loaded.state, loaded=loaded, signature=read_at)
        return self._known

    def _refuse_orphan_journal(self) -> None:
        if self.journal_path.exists():
            raise StateCorrupt(
                f"state {self.path} does not exist, but its journal {self.journal_path} does",
                hint=f"restore {self.path}, or move {self.journal_path.name} aside to start "
                "a new state; nothing was modified",
            )

    # -- writing --------------------------------------------------------------------

    def write(self, state: State, *, force: bool = False, expected: Expected | None = None) -> None:
        """Record ``state``: a journal record, or a new snapshot (CAS unless forced; fenced)."""
        where = str(self.path)
        check_serial(state, where=where)
        self.fence()
        self._prepare_directory()
        try:
            with files.locked(self.file, exclusive=True) as fd:
                if fd is None:
                    self._refuse_orphan_journal()
                    if not force:
                        check_successor(None, state, where=where, expected=expected)
                    self._snapshot(state, None)
                    return
                known = self._load(fd)  # a corrupt state is never overwritten, even by force
                if not force:
                    check_successor(known.state, state, where=where, expected=expected)
                replace_all = force or expected is not None or known.loaded.journal is None
                if replace_all or not self._append(state, known):
                    self._snapshot(state, known)
        except OSError as exc:
            self._known = None  # what stands on disk is read again by the next write
            raise StateError(
                f"cannot write state {self.path}: {exc.strerror}; the previous state is intact"
            ) from exc
        except BaseException:
            self._known = None
            raise

    def _append(self, state: State, known: _Known) -> bool:
        """Append the delta to the journal; False when it is time for a new snapshot."""
        loaded = known.loaded
        assert loaded.journal is not None
        if loaded.folded:
            return False  # a compaction was cut short: finish it by writing a snapshot
        line = journals.record(deltas.between(known.state, state), journal=loaded.journal)
        size = loaded.journal_bytes + len(line)
        if size > max(_RUN_FACTOR * loaded.snapshot_bytes, self._journal_floor):
            return False
        self.fence()  # again, as close to the commit as it gets
        journal_mark = files.append(self.journal_path, line, at=loaded.journal_bytes)
        fresh = journals.Loaded(
            state=state,
            journal=loaded.journal,
            snapshot_bytes=loaded.snapshot_bytes,
            journal_bytes=size,
            cut=False,
            folded=False,
        )
        self._known = _Known(
            state=state, loaded=fresh, signature=(known.signature[0], journal_mark)
        )
        return True

    def _snapshot(self, state: State, known: _Known | None) -> None:
        """Write ``state`` as a new snapshot with a new, empty journal (atomic; backup kept).

        The new snapshot names the journal it replaces, so a crash before that journal is
        removed leaves it recognisably folded in; one already folded is removed first.
        """
        loaded = known.loaded if known is not None else None
        if loaded is not None and loaded.folded:
            files.remove(self.journal_path)
        folded = loaded.journal if loaded is not None and self.journal_path.exists() else None
        journal = journals.new_journal()
        data = journals.snapshot(state, journal=journal, folded=folded)
        directory = self.file.parent
        tmp = directory / f".{self.file.name}.{os.getpid()}.tmp"
        try:
            written = files.write_new(tmp, data)
            self.fence()  # again, as close to the commit as it gets
            if known is None:
                self._create(tmp)
            else:
                backup_tmp = directory / f".{self.file.name}.{os.getpid()}.backup.tmp"
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(backup_tmp)
                os.link(self.file, backup_tmp)
                os.replace(backup_tmp, self.backup_path)
                os.replace(tmp, self.file)
                files.fsync_dir(directory)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        files.remove(self.journal_path)
        fresh = journals.Loaded(
            state=state,
            journal=journal,
            snapshot_bytes=len(data),
            journal_bytes=0,
            cut=False,
            folded=False,
        )
        # The temp file's status is the new snapshot's: a rename keeps inode and times.
        signature = (files.mark(written), None)
        self._known = _Known(state=state, loaded=fresh, signature=signature)

    def _create(self, tmp: Path) -> None:
        """The first snapshot: linked into place only if no other writer created one."""
        try:
            os.link(tmp, self.file)
        except FileExistsError:
            raise StateConflict(
                f"state {self.path} was created by someone else meanwhile; nothing was written",
                hint="run `reconciler plan` again",
            ) from None
        files.fsync_dir(self.file.parent)

    def compact(self) -> None:
        """Fold the journal into a new snapshot now (the lock's release does it when due)."""
        with files.locked(self.file, exclusive=True) as fd:
            if fd is not None:
                known = self._load(fd)
                if known.loaded.journal_bytes or known.loaded.cut:
                    self._snapshot(known.state, known)

    def _compact_if_due(self) -> None:
        """At the lock's release: fold a journal larger than its snapshot into a new one."""
        known = self._known
        if known is None:
            return
        loaded = known.loaded
        if loaded.journal_bytes > loaded.snapshot_bytes or loaded.folded:
            # Housekeeping only: the state is whole without it, and whatever stopped it
            # (a lost lock, a full disk) stops the next write too, with its own error.
            with contextlib.suppress(StateError, OSError):
                self.compact()

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
        try:
            self._prepare_directory()
            fd = files.open_regular(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StateError(
                f"cannot lock state {self.path}: cannot open {self.lock_path}: {exc.strerror}; "
                "nothing was modified"
            ) from exc
        try:
            self._take(fd, timeout)
            info = LockInfo.new(operation)
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(info.to_json()).encode(), 0)
                os.fsync(fd)
                st = os.fstat(fd)
            except OSError as exc:  # a full disk where the state lives, say
                raise StateError(
                    f"cannot lock state {self.path}: cannot record the holder in "
                    f"{self.lock_path}: {exc.strerror}; nothing was modified"
                ) from exc
            self._held = _Held(fd=fd, inode=(st.st_dev, st.st_ino), lock_id=info.lock_id)
            self._remove_stale_temp_files()
            try:
                yield Lock(info=info, check=self.fence)
                self._compact_if_due()  # only when the block ended normally
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
            fd = files.open_regular(self.lock_path, os.O_RDONLY)
        except (OSError, StateError):
            return None  # none, or not a file: no holder to name
        with open(fd, "rb") as handle:
            return _parse_holder(handle.read(65536))

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
