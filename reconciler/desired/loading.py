"""Reading the desired-state input: files from disk (the I/O edge), then pure parsing.

A path is a YAML file or a directory whose ``*.yaml``/``*.yml`` files are merged (not
recursive; hidden files skipped). Unreadable, binary, non-UTF-8, empty, oversized and
hostile files become located problems, so ``validate`` can report all of them at once.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.desired import yamlsafe
from reconciler.errors import InputError, Problem

DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024
YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True, kw_only=True)
class RawFile:
    """One input file's bytes and the name it is reported under."""

    display: str  # as reported in file:line:col
    relative: str  # relative to the input root: part of the digest
    raw: bytes | None  # None when the file could not be read at all
    problem: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceFile:
    """One parsed input file."""

    display: str
    relative: str
    text: str  # kept to locate problems on demand
    data: Any  # None when the file could not be parsed
    account_lines: dict[int, int]  # id(user mapping) -> line
    problems: tuple[Problem, ...]


def _display(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)


def read_files(path: Path, *, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> tuple[RawFile, ...]:
    """Read the input at ``path``; InputError when there is no input at all."""
    if not path.exists():
        raise InputError(
            f"{path}: no such file or directory",
            hint="pass the desired-state YAML file or directory (default: the current directory)",
        )
    if path.is_dir():
        files = sorted(
            child
            for child in path.iterdir()
            if child.suffix in YAML_SUFFIXES and not child.name.startswith(".") and child.is_file()
        )
        if not files:
            raise InputError(
                f"{path}: no *.yaml or *.yml files in this directory",
                hint="point reconciler at the directory holding the desired-state YAML",
            )
        root = path
    else:
        files, root = [path], path.parent
    return tuple(_read_one(file, root, max_bytes) for file in files)


def _read_one(file: Path, root: Path, max_bytes: int) -> RawFile:
    display, relative = _display(file), file.relative_to(root).as_posix()
    try:
        size = file.stat().st_size
        if size > max_bytes:
            return RawFile(
                display=display,
                relative=relative,
                raw=None,
                problem=f"file is {size:,} bytes, over the {max_bytes:,}-byte limit; "
                "split it into several files (set RECONCILER_MAX_FILE_BYTES to raise the limit)",
            )
        with file.open("rb") as handle:
            raw = handle.read(max_bytes + 1)
    except OSError as exc:
        return RawFile(
            display=display, relative=relative, raw=None, problem=f"cannot read: {exc.strerror}"
        )
    if len(raw) > max_bytes:
        return RawFile(
            display=display, relative=relative, raw=None, problem="file grew past the size limit"
        )
    return RawFile(display=display, relative=relative, raw=raw)


def digest(files: tuple[RawFile, ...]) -> str:
    """sha256 over the files' relative names and bytes: what a saved plan was made from."""
    hasher = hashlib.sha256()
    for file in sorted(files, key=lambda f: f.relative):
        hasher.update(file.relative.encode("utf-8") + b"\0")
        hasher.update(len(file.raw or b"").to_bytes(8, "big"))
        hasher.update(file.raw or b"")
    return "sha256:" + hasher.hexdigest()


def _problem(display: str, message: str, line: int = 1, col: int = 1) -> Problem:
    return Problem(file=display, line=line, col=col, message=message, rule="input")


def parse_file(file: RawFile) -> SourceFile:
    """Parse one file; every failure becomes a located problem (pure)."""
    empty = SourceFile(
        display=file.display,
        relative=file.relative,
        text="",
        data=None,
        account_lines={},
        problems=(),
    )
    if file.raw is None:
        return _with(empty, _problem(file.display, file.problem or "cannot read"))
    raw = file.raw
    if b"\0" in raw[:8192] or b"\0" in raw:
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
    try:
        parsed = yamlsafe.parse(raw, text)
    except yamlsafe.HostileInput as exc:
        return _with(
            SourceFile(
                display=file.display,
                relative=file.relative,
                text=text,
                data=None,
                account_lines={},
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
