"""The parse cache: each desired-state file's parsed, per-file-validated data, by content.

An entry is keyed by the sha256 of the file's raw bytes, this reconciler's version (and the
entry format) and the sha256 of the desired-state schema: the same bytes read by the same
reconciler against the same schema give the same data, so the parser and the file's schema
check are skipped. The rules across files (duplicate accounts, role references, end dates)
always run on the merged data; files with any problem are never cached (their locations
come from the text).

An entry is one file of JSON, never pickle or marshal: a header line naming the key and the
sha256 of the payload, sealed with an HMAC under this user's key (``reconciler.seals``,
kept outside every repository and state folder), then the payload (the data and the line
of each user entry, by path). Reading checks everything (owner, mode, size, seal, header,
key, payload digest, shape) and anything that does not check out — corrupt, truncated,
another version, another schema, edited, sealed under another key or not at all — is
ignored with a debug note and rebuilt, never trusted and never an error. A digest is not a
seal: anyone who can write a file as the user (a checkout, a restored CI cache, a copied
folder) can write a correct digest, but only a holder of the key can seal, so an entry
this user's runs did not write never checks out. Entries are read (and written) only in a
real folder of this user that no one else can write, opened without following symlinks,
and never a FIFO.

New entries are held (encoded) until the command that read them has checked all of its
input (``flush``): a run refused for bad input writes nothing. Each is written to a temp
file and renamed into place (0600; the directory 0700 with a ``.gitignore`` of ``*``), so
concurrent runs never see half an entry and the last rename wins with identical bytes.
The cache is safe to delete at any time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from array import array
from collections.abc import Callable
from pathlib import Path

from reconciler import __version__, schemas, seals
from reconciler.desired.lines import AccountLines
from reconciler.seals import Seal
from reconciler.values import frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any

FORMAT = 4  # bump when what an entry means changes (the parser's output, the payload)
# 2: merge keys and bidirectional controls are refused (entries of 1 may hold such files)
# 3: sealed with the user's key (an HMAC in the header), no longer a bare digest
# 4: a file whose entries are exactly its ``users`` keeps their lines as one list of ints
SCHEMA = "desired-state"
GITIGNORE = "*\n"
_SUFFIX = ".json"
_MAX_ENTRY_BYTES = 512 * 1024 * 1024  # a larger file is not an entry this code wrote
_MAX_HEADER_BYTES = 4096
_SCALARS = frozenset({str, int, float, bool, type(None)})
_TEXT = frozenset({str})
_DICT = frozenset({dict})
_INT = frozenset({int})
_USER_LINES = "user_lines"
_BODIES = ({"data", "lines"}, {"data", _USER_LINES})  # the payload's two shapes

Path_ = tuple[str | int, ...]


@frozen
class Key:
    """What an entry's data depends on: the file's bytes, the reconciler, the schema."""

    content: str  # sha256 hex of the file's raw bytes
    tool: str  # reconciler version and entry format
    schema: str  # sha256 hex of the desired-state schema file

    @property
    def name(self) -> str:
        """The entry's file name: one digest over the whole key."""
        joined = f"{self.content}\0{self.tool}\0{self.schema}".encode()
        return hashlib.sha256(joined).hexdigest() + _SUFFIX


@frozen
class Entry:
    """A file's data as the parser gave it (dates as text), and each user entry's line."""

    data: Any
    account_lines: AccountLines  # id(user mapping) -> line, as yamlsafe.Parsed has it


def tool_version() -> str:
    """This reconciler's version, the entry format and the digest of the parsing rules."""
    return f"reconciler {__version__} cache {FORMAT} rules {rules_digest()}"


def rules_digest(package: Path | None = None) -> str:
    """sha256 hex (short) of the source of the desired-state package: the code whose output
    an entry stands for. A rule changed without a new version (a development checkout, a
    patched install) makes every entry another key, so no entry outlives the rules that
    accepted it; bumping ``FORMAT`` by hand is not relied on."""
    package = package or Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for source in sorted(package.rglob("*.py")):
        digest.update(source.relative_to(package).as_posix().encode())
        digest.update(b"\0")
        digest.update(source.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def schema_digest() -> str:
    """sha256 hex of the desired-state schema file."""
    return hashlib.sha256(schemas.schema_path(SCHEMA).read_bytes()).hexdigest()


def key_for(raw: bytes, *, tool: str, schema: str) -> Key:
    """The key of a file with these raw bytes."""
    return Key(content=hashlib.sha256(raw).hexdigest(), tool=tool, schema=schema)


# -- pure: the codec ------------------------------------------------------------------


def signed_part(header: dict[str, Any]) -> bytes:
    """The bytes an entry's seal signs: its header but the seal, canonically (the header
    names the key and the payload's digest and length, so the seal covers all three)."""
    return json.dumps(
        {field: value for field, value in header.items() if field != "seal"},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


def encode(key: Key, entry: Entry, seal: Seal) -> bytes | None:
    """The entry's bytes; None when the data holds anything JSON would not give back as is
    (a key that is not text, a date, bytes, a shared or cyclic container)."""
    lines = _line_paths(entry.data, entry.account_lines)
    if lines is None:
        return None
    user_lines = _users_in_order(entry.data, lines)
    body = (
        {"data": entry.data, "lines": lines}
        if user_lines is None
        else {"data": entry.data, _USER_LINES: user_lines}
    )
    try:
        payload = json.dumps(
            body,
            separators=(",", ":"),
            check_circular=False,  # _line_paths walked all of it: no cycle
        ).encode()  # ASCII: \u escapes keep every string exact, lone surrogates too
    except (TypeError, ValueError):
        return None
    header = {
        "format": FORMAT,
        "content": key.content,
        "tool": key.tool,
        "schema": key.schema,
        "payload": hashlib.sha256(payload).hexdigest(),
        "bytes": len(payload),
    }
    header["seal"] = seal.sign(signed_part(header))
    return json.dumps(header, separators=(",", ":")).encode() + b"\n" + payload


def decode(key: Key, blob: bytes, seal: Seal) -> Entry | str:
    """The entry in ``blob``; else why it cannot be used (never raises)."""
    end = blob.find(b"\n", 0, _MAX_HEADER_BYTES)
    if end < 0:
        return "no header line"
    try:
        header = json.loads(blob[:end])
    except ValueError:
        return "the header is not JSON"
    if not isinstance(header, dict):
        return "the header is not a JSON object"
    if not seal.verifies(signed_part(header), header.get("seal")):
        # Before anything in it is believed: a copied, restored or forged entry.
        return "not sealed by this user's key (copied, restored or forged)"
    expected = {
        "format": FORMAT,
        "content": key.content,
        "tool": key.tool,
        "schema": key.schema,
    }
    for field, wanted in expected.items():
        if header.get(field) != wanted:
            return f"another {field} ({str(header.get(field))[:80]!r})"
    payload = memoryview(blob)[end + 1 :]
    if header.get("bytes") != len(payload):
        return "truncated or grown: the payload's length does not match its header"
    if hashlib.sha256(payload).hexdigest() != header.get("payload"):
        return "the payload's digest does not match its header"
    try:
        body = json.loads(bytes(payload))
    except ValueError:
        return "the payload is not JSON"
    if not isinstance(body, dict) or set(body) not in _BODIES:
        return "the payload is not an entry"
    if _USER_LINES in body:
        account_lines = _user_lines(body["data"], body[_USER_LINES])
    else:
        account_lines = _account_lines(body["data"], body["lines"])
    if account_lines is None:
        return "the payload's lines do not fit its data"
    return Entry(data=body["data"], account_lines=account_lines)


class _NotPlain(Exception):
    """The data holds something JSON would not give back as it is."""


def _line_paths(data: Any, account_lines: AccountLines) -> list[list[Any]] | None:
    """[*path, line] of each mapping ``account_lines`` names, in document order; None
    unless ``data`` is made of JSON values with text keys and every mapping is found once.

    A container shared through an alias is written twice (JSON has no aliases) and read
    back as two equal copies: the same data. A shared user entry would be found twice and
    is refused, as its line could only go to one of the copies.
    """
    # Every mapping the parser records has an ``account`` key: those are the candidates,
    # in document order (the order they were recorded in, so each lookup is one comparison).
    candidates: list[tuple[list[str | int], dict[Any, Any]]] = []
    path: list[str | int] = []

    def visit(value: Any) -> None:
        # Recursion is bounded: the parser refuses nesting deeper than yamlsafe's MAX_DEPTH.
        kind = type(value)
        if kind is dict:
            # Type checks through map(type, ...) run in C: this walk is on the cold path.
            if not _TEXT.issuperset(map(type, value)):
                raise _NotPlain  # JSON would turn a key of 1 into "1"
            if "account" in value:
                candidates.append((list(path), value))
            for key, child in value.items():
                if type(child) not in _SCALARS:
                    path.append(key)
                    visit(child)
                    path.pop()
        elif kind is list:
            if _SCALARS.issuperset(map(type, value)):
                return
            for index, child in enumerate(value):
                if type(child) not in _SCALARS:
                    path.append(index)
                    visit(child)
                    path.pop()
        else:
            raise _NotPlain  # a date, bytes, a set: not JSON

    try:
        if type(data) not in _SCALARS:
            visit(data)
    except (_NotPlain, RecursionError):
        return None
    lines = account_lines.lines_of([value for _, value in candidates])
    found = [[*where, line] for (where, _), line in zip(candidates, lines, strict=True) if line]
    if len(found) != len(account_lines):
        return None
    return found


def _users_in_order(data: Any, lines: list[list[Any]]) -> list[int] | None:
    """The lines alone when ``lines`` are exactly those of ``data["users"]``'s entries, in
    order (a file that passed its checks); None otherwise (the paths are kept)."""
    users = data.get("users") if type(data) is dict else None
    if type(users) is not list or len(lines) != len(users):
        return None
    if any(where != ["users", index] for index, (*where, _) in enumerate(lines)):
        return None
    return [line for *_, line in lines]


def _account_lines(data: Any, lines: Any) -> AccountLines | None:
    """id(mapping) -> line for each [*path, line] of ``lines``; None if one does not fit."""
    if not isinstance(lines, list):
        return None
    ids, found = array("Q"), array("Q")
    for item in lines:
        if not isinstance(item, list) or not item:
            return None
        *path, line = item
        if type(line) is not int or not 1 <= line < 2**64:  # no file has more lines
            return None
        node = data
        for part in path:
            if not _holds(node, part):
                return None
            node = node[part]
        if type(node) is not dict:
            return None
        ids.append(id(node))
        found.append(line)
    return AccountLines.of(ids, found)


def _user_lines(data: Any, lines: Any) -> AccountLines | None:
    """id(mapping) -> line for each entry of ``data["users"]``, in order, from a list of
    as many lines (ints from 1); None if they do not fit. All in C: no path to walk."""
    users = data.get("users") if type(data) is dict else None
    if type(users) is not list or type(lines) is not list or len(lines) != len(users):
        return None
    if not _DICT.issuperset(map(type, users)) or not _INT.issuperset(map(type, lines)):
        return None  # (bool is not int here: type(), not isinstance)
    if lines and not (min(lines) >= 1 and max(lines) < 2**64):
        return None
    return AccountLines.of(array("Q", map(id, users)), array("Q", lines))


def _holds(node: Any, part: Any) -> bool:
    """Whether ``node[part]`` is a step of a path into JSON data."""
    if type(part) is str:
        return type(node) is dict and part in node
    return type(part) is int and type(node) is list and 0 <= part < len(node)


# -- I/O: the cache directory ---------------------------------------------------------


def _quiet(_: str) -> None:
    """Drop a debug note."""


class ParseCache:
    """Entries in one directory; every failure to read or write is a debug note only."""

    def __init__(
        self,
        directory: Path,
        *,
        seal: Seal,
        debug: Callable[[str], None] = _quiet,
        announce: Callable[[str], None] = _quiet,
        tool: str | None = None,
        schema: str | None = None,
    ) -> None:
        self.directory = directory
        self._seal = seal
        self._debug = debug
        self._announce = announce  # told once, when this creates the directory
        self.tool = tool if tool is not None else tool_version()
        self.schema = schema if schema is not None else schema_digest()
        self._usable: bool | None = None
        self._told_refused = False
        self._pending: dict[str, bytes] = {}  # entry name -> bytes, until flush
        self.hits = 0
        self.misses = 0
        self.writes = 0

    def key(self, raw: bytes) -> Key:
        """The key of a file with these raw bytes."""
        return key_for(raw, tool=self.tool, schema=self.schema)

    def load(self, key: Key) -> Entry | None:
        """The entry of ``key``; None (with a debug note when one was there) otherwise."""
        path = self.directory / key.name
        blob = self._read(path)
        if blob is None:
            self.misses += 1
            return None
        entry = decode(key, blob, self._seal)
        if isinstance(entry, str):
            self._debug(f"parse cache: ignored {path}: {entry}; rebuilding it")
            self.misses += 1
            return None
        self.hits += 1
        return entry

    def _read(self, path: Path) -> bytes | None:
        try:
            directory = os.open(self.directory, seals.DIRECTORY_FLAGS)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._refused(f"cannot open {self.directory}: {exc.strerror}")
            return None
        try:
            why = _untrusted_directory(os.fstat(directory))
            if why:
                self._refused(f"{self.directory} {why}: not used")
                return None
            # Through the folder just checked: a folder swapped in since is never read.
            fd = os.open(path.name, seals.READ_FLAGS, dir_fd=directory)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._debug(f"parse cache: cannot read {path}: {exc.strerror}")
            return None
        finally:
            os.close(directory)
        with os.fdopen(fd, "rb") as handle:
            status = os.fstat(fd)
            why = _untrusted(status)
            if why:
                self._debug(f"parse cache: ignored {path}: {why}")
                return None
            try:
                return handle.read()
            except OSError as exc:
                self._debug(f"parse cache: cannot read {path}: {exc.strerror}")
                return None

    def _refused(self, why: str) -> None:
        """One debug note for a folder whose entries are not read."""
        if not self._told_refused:
            self._told_refused = True
            self._debug(f"parse cache: {why}")

    def store(self, key: Key, entry: Entry) -> None:
        """Hold ``entry`` under ``key`` for :meth:`flush` (encoded now: the data may change
        or be dropped later)."""
        blob = encode(key, entry, self._seal)
        if blob is None:
            self._debug("parse cache: a file's data is not plain JSON: not cached")
            return
        self._pending[key.name] = blob

    def flush(self) -> None:
        """Write the entries held by :meth:`store` (atomically; failures are debug notes)."""
        pending, self._pending = self._pending, {}
        if not pending or not self._prepare():
            return
        for name, blob in pending.items():
            self._write(name, blob)

    def _write(self, name: str, blob: bytes) -> None:
        target = self.directory / name
        tmp = self.directory / f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(blob)
            os.replace(tmp, target)
            self.writes += 1
        except OSError as exc:
            self._debug(f"parse cache: cannot write {target}: {exc.strerror}")
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _prepare(self) -> bool:
        """The directory exists, is ours and private (created 0700 with its .gitignore)."""
        if self._usable is not None:
            return self._usable
        self._usable = False
        directory = self.directory
        try:
            if not os.path.lexists(directory):
                # Never its parent: the state's folder is made by the state's first write.
                # A concurrent run may make it first: then it is checked as found.
                with contextlib.suppress(FileExistsError):
                    directory.mkdir(mode=0o700)
                    self._announce(
                        f"created the parse cache {directory} (safe to delete; --no-cache "
                        "bypasses it)"
                    )
            # Checked before anything is written into it: never through a symlink.
            why = _untrusted_directory(os.lstat(directory))
            if not why:
                _ignore_all(directory)
        except OSError as exc:
            self._debug(f"parse cache: cannot use {directory}: {exc.strerror}")
            return False
        if why:
            self._debug(f"parse cache: {directory} {why}: not used")
            return False
        self._usable = True
        return True


def _untrusted_directory(status: os.stat_result) -> str:
    """Why a cache folder with this (lstat) status is not used ('' when it may be): it is
    read and written only when it is a real folder of this user that no one else can write
    (a symlink could point anywhere; another's folder could hold anything)."""
    if stat.S_ISLNK(status.st_mode):
        return "is a symlink"
    if not stat.S_ISDIR(status.st_mode):
        return "is not a directory"
    if status.st_uid != os.getuid() or status.st_mode & 0o022:
        return "is not private to this user"
    return ""


def _untrusted(status: os.stat_result) -> str:
    """Why an entry with this status is not read ('' when it may be)."""
    if not stat.S_ISREG(status.st_mode):
        return "not a regular file"
    if status.st_uid != os.getuid():
        return "owned by another user"
    if status.st_mode & 0o077:
        return f"mode {stat.S_IMODE(status.st_mode):04o}, not 0600"
    if status.st_size > _MAX_ENTRY_BYTES:
        return "too large"
    return ""


def _ignore_all(directory: Path) -> None:
    """Put a ``.gitignore`` of ``*`` in ``directory`` unless it has one."""
    with contextlib.suppress(FileExistsError):
        fd = os.open(directory / ".gitignore", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(GITIGNORE)
