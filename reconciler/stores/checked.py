"""The state's check record: which snapshot bytes already passed the state schema.

Reading a state checks its document against ``schemas/state.schema.json`` (``formats``),
which costs about as much as decoding it at 100k accounts. The check's answer depends only
on the bytes, the schema and this reconciler, so after a snapshot passed it, a small record
beside it (``<state>.checked``) names the three by their digests; a later read of the very
same bytes skips the schema and keeps every other check (format version, shape, journal).

The record is JSON with a digest over its own fields, written to a temp file and renamed
(0600); one that is missing, unreadable, corrupt or names anything else is ignored and
rewritten after the full check. Deleting it costs one check on the next read.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import secrets
import stat
from pathlib import Path

from reconciler import __version__, schemas

FORMAT = 1
SUFFIX = ".checked"
_MAX_BYTES = 4096
_FIELDS = ("format", "snapshot", "schema", "tool")
# Never block on a FIFO at the record's path (its fstat then refuses it), never follow a symlink.
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC


def snapshot_digest(snapshot: bytes) -> str:
    """sha256 hex of a snapshot's bytes."""
    return hashlib.sha256(snapshot).hexdigest()


@functools.cache
def _schema_digest() -> str:
    return hashlib.sha256(schemas.schema_path("state").read_bytes()).hexdigest()


def _facts(snapshot: str) -> dict[str, object]:
    """What a record says: the snapshot passed this schema under this reconciler."""
    return {
        "format": FORMAT,
        "snapshot": snapshot,
        "schema": _schema_digest(),
        "tool": f"reconciler {__version__}",
    }


def _seal(facts: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def encode(snapshot: str) -> bytes:
    """The record for a snapshot with digest ``snapshot`` (pure but for the schema file)."""
    facts = _facts(snapshot)
    return json.dumps({**facts, "digest": _seal(facts)}, sort_keys=True).encode() + b"\n"


def matches(blob: bytes, snapshot: str) -> bool:
    """Whether ``blob`` is an intact record for a snapshot with digest ``snapshot``."""
    try:
        record = json.loads(blob)
    except ValueError:
        return False
    if not isinstance(record, dict) or set(record) != {*_FIELDS, "digest"}:
        return False
    facts = {field: record[field] for field in _FIELDS}
    return facts == _facts(snapshot) and record["digest"] == _seal(facts)


def record_path(state_file: Path) -> Path:
    """Where the record of ``state_file`` lives."""
    return state_file.with_name(state_file.name + SUFFIX)


def known(state_file: Path, snapshot: str) -> bool:
    """Whether the record beside ``state_file`` says ``snapshot`` passed (never raises)."""
    path = record_path(state_file)
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as handle:
        try:
            status = os.fstat(fd)
            if (
                not stat.S_ISREG(status.st_mode)
                or status.st_uid != os.getuid()
                or status.st_mode & 0o022
                or status.st_size > _MAX_BYTES
            ):
                return False
            return matches(handle.read(_MAX_BYTES), snapshot)
        except OSError:
            return False


def remember(state_file: Path, snapshot: str) -> None:
    """Record that ``snapshot`` passed (atomically; a failure only costs a check later)."""
    path = record_path(state_file)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(encode(snapshot))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only directory: the next read checks the schema again
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
