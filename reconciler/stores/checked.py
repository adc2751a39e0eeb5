"""The state's check record: which snapshot bytes already passed the state schema.

Reading a state checks its document against ``schemas/state.schema.json`` (``formats``),
which costs about as much as decoding it at 100k accounts. The check's answer depends only
on the bytes, the schema and this reconciler, so after a snapshot passed it, a small record
beside it (``<state>.checked``) names the three by their digests; a later read of the very
same bytes skips the schema and keeps every other check (format version, shape, journal).

The record is JSON sealed with an HMAC over its own fields under this user's key
(``reconciler.seals``, kept outside every repository and state folder), written to a temp
file and renamed (0600); one that is missing, unreadable, corrupt, names anything else or
is not sealed by this key (copied from another user or machine, restored, forged with a
plain digest) is ignored and rewritten after the full check. Deleting it costs one check
on the next read.
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

from reconciler import __version__, schemas, seals
from reconciler.seals import Seal

FORMAT = 2  # 2: sealed with the user's key, no longer a plain digest
SUFFIX = ".checked"
_MAX_BYTES = 4096
_FIELDS = ("format", "snapshot", "schema", "tool")


def snapshot_digest(snapshot: bytes | list[bytes]) -> str:
    """sha256 hex of a snapshot's bytes (whole, or in consecutive chunks)."""
    digest = hashlib.sha256()
    for chunk in [snapshot] if isinstance(snapshot, bytes) else snapshot:
        digest.update(chunk)
    return digest.hexdigest()


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


def _signed(facts: dict[str, object]) -> bytes:
    """The bytes a record's seal signs: its facts, canonically."""
    return json.dumps(facts, sort_keys=True, separators=(",", ":")).encode()


def encode(snapshot: str, seal: Seal) -> bytes:
    """The record for a snapshot with digest ``snapshot`` (pure but for the schema file)."""
    facts = _facts(snapshot)
    record = {**facts, "seal": seal.sign(_signed(facts))}
    return json.dumps(record, sort_keys=True).encode() + b"\n"


def matches(blob: bytes, snapshot: str, seal: Seal) -> bool:
    """Whether ``blob`` is a record sealed by ``seal`` for a snapshot with digest ``snapshot``."""
    try:
        record = json.loads(blob)
    except ValueError:
        return False
    if not isinstance(record, dict) or set(record) != {*_FIELDS, "seal"}:
        return False
    facts = {field: record[field] for field in _FIELDS}
    return seal.verifies(_signed(facts), record["seal"]) and facts == _facts(snapshot)


def record_path(state_file: Path) -> Path:
    """Where the record of ``state_file`` lives."""
    return state_file.with_name(state_file.name + SUFFIX)


def known(state_file: Path, snapshot: str, seal: Seal) -> bool:
    """Whether the record beside ``state_file`` says ``snapshot`` passed (never raises)."""
    path = record_path(state_file)
    try:
        fd = os.open(path, seals.READ_FLAGS)
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
            return matches(handle.read(_MAX_BYTES), snapshot, seal)
        except OSError:
            return False


def remember(state_file: Path, snapshot: str, seal: Seal) -> None:
    """Record that ``snapshot`` passed (atomically; a failure only costs a check later)."""
    path = record_path(state_file)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(encode(snapshot, seal))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only directory: the next read checks the schema again
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
