"""Reading the desired-state input: files from disk (the I/O edge), then pure parsing.

The set of files is exactly what a user sees in the directory (README "The desired
state"): every entry named ``*.yaml``/``*.yml`` in any letter case, except hidden ones, is
a desired-state file and must be a readable regular file, or a symlink to one inside the
directory; anything else under such a name (a dangling link, a loop, a directory, a FIFO,
a socket, an unreadable file) is a located problem, never skipped. Every other entry is
listed as ignored, with why. Nothing is opened before its type is known, opening never
blocks or follows a last symlink, and the opened descriptor's type is checked again.

Unreadable, binary, non-UTF-8, empty, oversized and hostile files become located
problems too, so ``validate`` reports all of them at once.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from pathlib import Path

from reconciler.desired import yamlsafe
from reconciler.desired.lines import AccountLines
from reconciler.errors import InputError, printable
from reconciler.values import frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any

    from reconciler.problems import Problem

DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024
YAML_SUFFIXES = (".yaml", ".yml")
# Never block on a FIFO, never follow a symlink swapped in after it was checked.
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
)
_TARGET_CHARS = 120  # how much of a symlink's target a message shows
# Embeddings, overrides and isolates (Trojan Source, CVE-2021-42574): they make text read
# in another order than it is, so a reviewer could read a grant as a comment.
# Compiled where used (re caches it): only a file with such a character needs it.
_BIDI = "[\u202a-\u202e\u2066-\u2069]"
# Line breaks to YAML (NEL, LS, PS, a CR without LF) that editors, diffs and grep do not
# show as one: text after one, even in a comment, is read as content.
_HIDDEN_BREAK = "[\x85\u2028\u2029]|\r(?!\n)"  # compiled where used, as _BIDI


@frozen
class RawFile:
    """One input file's bytes and the name it is reported under."""

    display: str  # as reported in file:line:col (unprintable characters escaped)
    relative: str  # relative to the input root: part of the digest
    raw: bytes | None  # None when the file could not be read at all
    problem: str | None = None


@frozen
class Ignored:
    """A directory entry that is not read, and why."""

    display: str
    reason: str


@frozen
class Listing:
    """What PATH holds: the desired-state files in order, and every entry left out."""

    root: Path  # the directory the files are named relative to
    files: tuple[Path, ...]
    ignored: tuple[Ignored, ...] = ()


@frozen
class SourceFile:
    """One parsed input file."""

    display: str
    relative: str
    text: str  # kept to locate problems on demand
    data: Any  # None when the file could not be parsed
    account_lines: AccountLines  # id(user mapping) -> line
    problems: tuple[Problem, ...]


def is_yaml_name(name: str) -> bool:
    """Whether ``name`` ends in .yaml or .yml, in any letter case."""
    return name.lower().endswith(YAML_SUFFIXES)


def _display(path: Path | str) -> str:
    try:
        shown = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        shown = str(path)
    return printable(shown)


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "not a regular file"


def _special(mode: int) -> str:
    """Why a file of ``mode`` (not a regular file) is refused, and what to do."""
    rename = "rename it so its name does not end in .yaml/.yml"
    if stat.S_ISDIR(mode):
        return f"a directory, not a file: subdirectories are not read; {rename}"
    return f"{_kind(mode)}, not a regular file: never opened; remove it or {rename}"


def list_input(path: Path) -> Listing:
    """The files PATH stands for; InputError when there is no input at all."""
    try:
        mode = os.stat(path).st_mode  # PATH itself may be a symlink to a directory
    except FileNotFoundError:
        if os.path.lexists(path):
            raise InputError(
                f"{_display(path)}: a symlink to {_target(path)}, which does not exist",
                hint="pass the desired-state YAML file or directory itself",
            ) from None
        raise InputError(
            f"{_display(path)}: no such file or directory",
            hint="pass the desired-state YAML file or directory (default: the current directory)",
        ) from None
    except OSError as exc:
        raise InputError(
            f"{_display(path)}: cannot read: {exc.strerror}",
            hint="pass the desired-state YAML file or directory itself",
        ) from None
    if not stat.S_ISDIR(mode):
        # A single file: _read_one checks its type (a FIFO is never opened).
        return Listing(root=path.parent, files=(path,))
    return _list_directory(path)


def _list_directory(path: Path) -> Listing:
    try:
        with os.scandir(path) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
    except OSError as exc:
        raise InputError(
            f"{_display(path)}: cannot list the directory: {exc.strerror}",
            hint=f"let reconciler read the directory (e.g. chmod u+rx {_display(path)})",
        ) from None
    files: list[Path] = []
    ignored: list[Ignored] = []
    hidden: list[str] = []
    for entry in entries:
        child = path / entry.name
        if entry.name.startswith("."):
            # An editor's lock or swap file must not break a run, nor be merged; other
            # hidden entries (.git, .reconciler) are tools' own and never look like input.
            if is_yaml_name(entry.name):
                hidden.append(_display(child))
                ignored.append(Ignored(display=hidden[-1], reason="hidden: never read"))
        elif is_yaml_name(entry.name):
            files.append(child)
        else:
            ignored.append(Ignored(display=_display(child), reason=_not_yaml(entry)))
    if not files:
        also = f" (hidden files are never read: {', '.join(hidden)})" if hidden else ""
        raise InputError(
            f"{_display(path)}: no *.yaml or *.yml files in this directory{also}",
            hint="point reconciler at the directory holding the desired-state YAML",
        )
    return Listing(root=path, files=tuple(files), ignored=tuple(ignored))


def _not_yaml(entry: os.DirEntry[str]) -> str:
    try:
        is_dir = entry.is_dir(follow_symlinks=False)
    except OSError:
        is_dir = False
    if is_dir:
        return "a directory: subdirectories are not read"
    return "not a .yaml/.yml file"


def read_files(path: Path, *, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> tuple[RawFile, ...]:
    """Read the input at ``path``; InputError when there is no input at all."""
    return read_listed(list_input(path), max_bytes=max_bytes)


def read_listed(
    listing: Listing, *, max_bytes: int = DEFAULT_MAX_FILE_BYTES
) -> tuple[RawFile, ...]:
    """Read every file of ``listing``; a file that cannot be read carries its problem."""
    return tuple(_read_one(file, listing.root, max_bytes) for file in listing.files)


def _target(link: Path) -> str:
    try:
        target = os.readlink(link)
    except OSError:
        return "an unreadable target"
    shown = printable(target)
    if len(shown) > _TARGET_CHARS:
        shown = shown[:_TARGET_CHARS] + "…"
    return repr(shown)


def _inside(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def _checked_path(file: Path, root: Path) -> tuple[str | None, str | None]:
    """(the path to open, None) for a regular file or a symlink to one inside ``root``;
    (None, why not) otherwise. Nothing is opened here."""
    try:
        mode = os.lstat(file).st_mode
        if not stat.S_ISLNK(mode):
            if not stat.S_ISREG(mode):
                return None, _special(mode)
            return str(file), None
        try:
            real = os.path.realpath(file, strict=True)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return None, f"a symlink loop (to {_target(file)}): remove the link"
            if exc.errno == errno.ENOENT:
                return None, (
                    f"a symlink to {_target(file)}, which does not exist: restore the target "
                    "or remove the link"
                )
            raise
        if not _inside(real, os.path.realpath(root)):
            return None, (
                f"a symlink to {_target(file)}, outside the desired-state directory: refused; "
                "copy the file into the directory"
            )
        mode = os.stat(real).st_mode
        if not stat.S_ISREG(mode):
            return None, f"a symlink to {_target(file)}, which is {_special(mode)}"
        return real, None
    except OSError as exc:
        return None, f"cannot read: {exc.strerror}"


def _read_one(file: Path, root: Path, max_bytes: int) -> RawFile:
    display, relative = _display(file), file.relative_to(root).as_posix()

    def refused(problem: str) -> RawFile:
        return RawFile(display=display, relative=relative, raw=None, problem=problem)

    if not _utf8_name(file.name):
        return refused("the file name is not valid UTF-8 (shown with \\x escapes): rename it")
    opened, why_not = _checked_path(file, root)
    if opened is None:
        return refused(why_not or "cannot read")
    try:
        descriptor = os.open(opened, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return refused("became a symlink while being read: not opened")
        return refused(f"cannot read: {exc.strerror}")
    with os.fdopen(descriptor, "rb") as handle:
        try:
            status = os.fstat(descriptor)
            if not stat.S_ISREG(status.st_mode):
                return refused(_special(status.st_mode))
            if status.st_size > max_bytes:
                return refused(
                    f"file is {status.st_size:,} bytes, over the {max_bytes:,}-byte limit; split "
                    "it into several files (set RECONCILER_MAX_FILE_BYTES to raise the limit)"
                )
            raw = handle.read(max_bytes + 1)
        except OSError as exc:
            return refused(f"cannot read: {exc.strerror}")
    if len(raw) > max_bytes:
        return refused("file grew past the size limit")
    return RawFile(display=display, relative=relative, raw=raw)


def _utf8_name(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes became lone surrogates
        return False
    return True


def digest(files: tuple[RawFile, ...]) -> str:
    """sha256 over the files' relative names and bytes: what a saved plan was made from."""
    hasher = hashlib.sha256()
    for file in sorted(files, key=lambda f: f.relative):
        # surrogateescape: a name that is not UTF-8 hashes as its bytes, never raises.
        hasher.update(file.relative.encode("utf-8", "surrogateescape") + b"\0")
        hasher.update(len(file.raw or b"").to_bytes(8, "big"))
        hasher.update(file.raw or b"")
    return "sha256:" + hasher.hexdigest()


def _problem(display: str, message: str, line: int = 1, col: int = 1) -> Problem:
    # Created with the first problem found: a valid input never loads its class.
    from reconciler.problems import Problem  # noqa: PLC0415

    return Problem(file=display, line=line, col=col, message=message, rule="input")


def parse_file(file: RawFile) -> SourceFile:
    """Parse one file; every failure becomes a located problem (pure)."""
    empty = SourceFile(
        display=file.display,
        relative=file.relative,
        text="",
        data=None,
        account_lines=AccountLines(),
        problems=(),
    )
    if file.raw is None:
        return _with(empty, _problem(file.display, file.problem or "cannot read"))
    raw = file.raw
    if b"\0" in raw:
        return _with(empty, _problem(file.display, "binary file (contains NUL bytes), not YAML"))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        return _with(
            empty,
            _problem(
                file.display,
                f"not UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8",
                line,
                col,
            ),
        )
    hidden = _hidden_text(text, raw)
    if hidden is not None:
        return _with(empty, _problem(file.display, *hidden))
    try:
        parsed = yamlsafe.parse(raw, text)
    except yamlsafe.HostileInput as exc:
        return _with(
            SourceFile(
                display=file.display,
                relative=file.relative,
                text=text,
                data=None,
                account_lines=AccountLines(),
                problems=(),
            ),
            _problem(file.display, exc.message, exc.mark.line, exc.mark.col),
        )
    if parsed is None:
        return _with(
            empty,
            _problem(file.display, "empty file: a desired-state file starts with `version: 1`"),
        )
    return SourceFile(
        display=file.display,
        relative=file.relative,
        text=text,
        data=parsed.data,
        account_lines=parsed.account_lines,
        problems=tuple(
            _problem(file.display, p.message, p.mark.line, p.mark.col) for p in parsed.problems
        ),
    )


def _with(source: SourceFile, problem: Problem) -> SourceFile:
    return SourceFile(
        display=source.display,
        relative=source.relative,
        text=source.text,
        data=source.data,
        account_lines=source.account_lines,
        problems=(*source.problems, problem),
    )


def _hidden_text(text: str, raw: bytes) -> tuple[str, int, int] | None:
    """A problem (message, line, col) for a character that makes the file read otherwise
    than it is: a bidirectional control, or a line break only YAML sees."""
    found = re.search(_BIDI, text) if b"\xe2\x80" in raw or b"\xe2\x81" in raw else None
    if found is not None:
        message = (
            f"bidirectional control character U+{ord(found[0]):04X}: the file would read "
            "differently from what it is (in a review, a diff, an editor); remove it"
        )
    else:
        maybe = b"\r" in raw or b"\xc2\x85" in raw or b"\xe2\x80" in raw
        found = re.search(_HIDDEN_BREAK, text) if maybe else None
        if found is None:
            return None
        message = (
            f"line break U+{ord(found[0]):04X} that editors, diffs and grep do not show as "
            "one: YAML starts a new line there, so what follows (even in a comment) is read "
            "as content; use a plain newline or remove it"
        )
    start = found.start()
    line = text.count("\n", 0, start) + 1
    col = start - (text.rfind("\n", 0, start) + 1) + 1
    return message, line, col
