"""The per-user key that seals what the reconciler keeps to skip work (HMAC-SHA256).

The parse cache (``desired.cache``) and the state's check record (``stores.checked``) let a
run skip parsing or a schema check for bytes it saw before. A digest in such a file proves
nothing about who wrote it: anyone who can write a file as the user — a file checked out of
git, a restored CI cache, a copied folder — can make one with a correct digest. So each is
sealed with an HMAC under a key that lives outside every repository and state folder,
``$XDG_CACHE_HOME/reconciler/cache.key`` (default ``~/.cache/reconciler/cache.key``): 32
random bytes, made on first use, 0600 in a 0700 folder of this user. An entry sealed under
another key (another user, another machine, a CI job with a fresh home) never checks out.

A key that cannot be made or is not private, ours and 32 bytes long means no cache and no
record (the caller says why under ``--debug``); the run still checks everything. The key's
bytes are never printed: not in a repr, a message or an exception.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

KEY_BYTES = 32
FOLDER = "reconciler"
KEY_NAME = "cache.key"
# How a private file (the key, a cache entry, a check record) is opened to be trusted: never
# blocking on a FIFO (its fstat then refuses it), never through a symlink; a folder likewise,
# its status checked on the open descriptor.
READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC
DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class Seal:
    """A secret key that signs and verifies bytes (its value never shown)."""

    _key: bytes = field(repr=False)

    def sign(self, message: bytes) -> str:
        """HMAC-SHA256 of ``message`` under this key, as hex."""
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def verifies(self, message: bytes, seal: object) -> bool:
        """Whether ``seal`` is this key's HMAC of ``message`` (compared in constant time)."""
        if not isinstance(seal, str) or not seal.isascii():
            return False
        return hmac.compare_digest(self.sign(message).encode(), seal.encode())


def key_path(environ: Mapping[str, str]) -> Path | None:
    """Where the key lives: ``$XDG_CACHE_HOME/reconciler/cache.key``, else under
    ``$HOME/.cache``; None when neither names an absolute folder (no cache then)."""
    base = environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec: a relative value is ignored
        home = environ.get("HOME", "")
        if not os.path.isabs(home):
            return None
        base = os.path.join(home, ".cache")
    return Path(base) / FOLDER / KEY_NAME


def load(path: Path) -> Seal | str:
    """The key at ``path``, made first if there is none; else why there is no usable key
    (never raises, never names the key's bytes)."""
    folder = path.parent
    try:
        if not os.path.lexists(folder):
            os.makedirs(folder.parent, mode=0o700, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                folder.mkdir(mode=0o700)
        directory = os.open(folder, DIRECTORY_FLAGS)
    except OSError as exc:
        return f"cannot use the key folder {folder}: {exc.strerror}"
    try:
        why = _untrusted_folder(os.fstat(directory))
        if why:
            return f"the key folder {folder} {why}"
        return _read_or_make(directory, path)
    except OSError as exc:
        return f"cannot use the key {path}: {exc.strerror}"
    finally:
        os.close(directory)


def _read_or_make(directory: int, path: Path) -> Seal | str:
    """The key in the open folder ``directory``; made atomically when it is missing."""
    try:
        fd = os.open(path.name, READ_FLAGS, dir_fd=directory)
    except FileNotFoundError:
        _make(directory, path.name)
        fd = os.open(path.name, READ_FLAGS, dir_fd=directory)
    with os.fdopen(fd, "rb") as handle:
        why = _untrusted_key(os.fstat(fd))
        if why:
            return f"the key {path} {why}"
        key = handle.read(KEY_BYTES + 1)
    if len(key) != KEY_BYTES:
        return f"the key {path} is not {KEY_BYTES} bytes long"
    return Seal(key)


def _make(directory: int, name: str) -> None:
    """Write a new key to a temp file and link it into place: a reader never sees half a
    key, and when two runs race the first link wins and both use it."""
    tmp = f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags, 0o600, dir_fd=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            # The OS's CSPRNG, as secrets.token_bytes (importing secrets loads random).
            handle.write(os.urandom(KEY_BYTES))
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, name, src_dir_fd=directory, dst_dir_fd=directory)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=directory)


def _untrusted_folder(status: os.stat_result) -> str:
    """Why the key's folder is not used ('' when it may be): a real folder of this user
    that no one else can read or write."""
    if not stat.S_ISDIR(status.st_mode):
        return "is not a directory"
    if status.st_uid != os.getuid():
        return "is not yours"
    if status.st_mode & 0o077:
        return f"has mode {stat.S_IMODE(status.st_mode):04o}, not 0700 (chmod 700 it)"
    return ""


def _untrusted_key(status: os.stat_result) -> str:
    """Why the key file is not used ('' when it may be): private, ours, 32 bytes."""
    if not stat.S_ISREG(status.st_mode):
        return "is not a regular file"
    if status.st_uid != os.getuid():
        return "is not yours"
    if status.st_mode & 0o077:
        return (
            f"has mode {stat.S_IMODE(status.st_mode):04o}, not 0600 (delete it: a new one is made)"
        )
    if status.st_size != KEY_BYTES:
        return f"is not {KEY_BYTES} bytes long"
    return ""
