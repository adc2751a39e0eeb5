"""What the text of a YAML file tells, before and beside PyYAML (pure: no PyYAML here).

- A byte scan that bounds nesting before libyaml sees the text: its composer recurses
  in C and crashes the process on tens of thousands of levels.
- The YAML 1.2 core-schema spellings of booleans and numbers: plain scalars that YAML 1.1
  alone reads as booleans or numbers (``no``, ``on``, ``010``, ``1_000``, ``1:30``) are
  text, so ``enabled: no`` can never be a disable nobody saw.
- reconciler's own words for a syntax error, from where it is and what is there: never
  the parser's message text, which changes between releases.
"""

from __future__ import annotations

import datetime as dt
import re

from reconciler.errors import excerpt
from reconciler.values import frozen

MAX_DEPTH = 256
# Patterns kept as text are compiled where first used (re caches them): a valid file
# rarely needs them, and compiling each at import cost start-up ~0.5M instructions.
# Leading whitespace this wide can hold a few hundred block levels (each needs a column);
# libyaml >= 0.2.6 refuses 1,000 levels itself, with a message of its own.
_DEEP_INDENT = rb"(?m)^[ \t]{256}"
_COMPACT_NESTING = rb"(?:[-?][ \t]+){256}"
# Cheap necessary conditions for the two patterns above, which no literal prefix speeds
# up: on 14 MB they take a third of a second, and almost never match.
_TABS_AS_SPACES = bytes.maketrans(b"\t", b" ")
_COMPACT_PAIR = re.compile(rb"[-?][ \t]+[-?]")
_FLOW_CHARS = bytes(range(256)).translate(None, b"[]{}")
_OPEN_CLOSE = bytes.maketrans(b"[]{}", b"()()")

BOOL, INT, FLOAT = (f"tag:yaml.org,2002:{name}" for name in ("bool", "int", "float"))
TRUE, FALSE = frozenset({"true", "True", "TRUE"}), frozenset({"false", "False", "FALSE"})
# The YAML 1.2 core schema's spellings (fullmatch). A leading zero is an octal number in
# YAML 1.1 and a decimal one in 1.2: no reading of ``010`` is safe, so it stays text.
CORE_SPELLING = {
    BOOL: re.compile("|".join(sorted(TRUE | FALSE))),
    INT: re.compile(r"[-+]?(?:0|[1-9][0-9]*)|0x[0-9a-fA-F]+"),
    FLOAT: re.compile(
        r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
    ),
}
_LINE_BREAK = r"\r\n|[\r\n\x85\u2028\u2029]"  # compiled where used, as _DEEP_INDENT
_DOCUMENT_MARKER = r"(?m)^---(?=[ \t\r\n]|\Z)"
_NAME = r"[^\s,\[\]{}]+"
_OPENED = {
    "[": "the [ ] list",
    "-": "the list",
    "{": "the { } mapping",
    '"': "the quoted text",
    "'": "the quoted text",
    "|": "the block text",
    ">": "the block text",
}


@frozen
class Mark:
    """A 1-based line and column."""

    line: int
    col: int


class HostileInput(Exception):
    """The text is refused before or while parsing (carries a position)."""

    def __init__(self, message: str, mark: Mark) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


def too_deep(mark: Mark) -> HostileInput:
    """The one message for nesting beyond MAX_DEPTH."""
    return HostileInput(
        f"nesting is too deep for a desired-state file (more than {MAX_DEPTH} levels)", mark
    )


def check_nesting(raw: bytes) -> None:
    """Raise too_deep when the bytes may nest deeper than MAX_DEPTH (an upper bound:
    brackets inside quotes and comments count too, so the caller measures again)."""
    flow = raw.translate(None, _FLOW_CHARS)
    depth = deepest = 0
    # An innermost pair adds at most one level to what is left without it, so only a
    # remainder as long as the limit can be too deep (``[a, b]`` lists leave nothing).
    innermost = flow.translate(_OPEN_CLOSE).replace(b"()", b"")
    for char in flow if len(innermost) >= MAX_DEPTH else b"":
        depth = depth + 1 if char in (0x5B, 0x7B) else max(depth - 1, 0)
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            break
    match = None
    if b" " * 256 in raw.translate(_TABS_AS_SPACES):
        match = re.compile(_DEEP_INDENT).search(raw)
    if match is None and _COMPACT_PAIR.search(raw):
        match = re.compile(_COMPACT_NESTING).search(raw)
    if deepest > MAX_DEPTH or match:
        offset = match.start() if match else 0
        raise too_deep(Mark(line=raw.count(b"\n", 0, offset) + 1, col=1))


def position(text: str, index: int) -> Mark:
    """The line and column of character ``index`` (YAML's line breaks)."""
    line, start = 1, 0
    for found in re.compile(_LINE_BREAK).finditer(text, 0, index):
        line, start = line + 1, found.end()
    return Mark(line=line, col=index - start + 1)


def line_starts(text: str) -> list[int]:
    """The index of the first character of each line (YAML's line breaks)."""
    return [0, *(found.end() for found in re.compile(_LINE_BREAK).finditer(text))]


def document_start(source: str, after: int, content: int) -> Mark:
    """Where a document whose content starts at index ``content`` begins: its ``---`` line
    after index ``after`` (the end of the document before it), or its content."""
    start = content
    for marker in re.compile(_DOCUMENT_MARKER).finditer(source, after, content + 3):
        if marker.start() <= content:
            start = marker.start()
    return position(source, start)


def _what(text: str, index: int) -> str:
    if index >= len(text):
        return "end of the file"
    char = text[index]
    if char == "\t":
        return "tab (YAML indents with spaces, never tabs)"
    if re.match(_LINE_BREAK, char):
        return "end of the line"
    return f"character {excerpt(char)}"


def syntax_message(text: str, index: int, opened: tuple[int, Mark] | None) -> str:
    """``YAML syntax error: unexpected …`` for the character at ``index``, naming the
    construct ``opened`` (its index and position) that it breaks, when known."""
    within = ""
    if opened is not None:
        start, mark = opened
        construct = _OPENED.get(text[start : start + 1], "the entry")
        within = f" in {construct} that starts at line {mark.line}, column {mark.col}"
    return f"YAML syntax error: unexpected {_what(text, index)}{within}"


def reference_message(text: str, index: int) -> str:
    """The message for an anchor or alias the composer refused at ``index``."""
    name = re.compile(_NAME).match(text, index + 1)
    shown = excerpt(name.group() if name else "")
    match text[index : index + 1]:
        case "*":
            return f"alias *{shown[1:-1]} refers to no anchor: define &{shown[1:-1]} before it"
        case "&":
            return f"anchor &{shown[1:-1]} is defined twice: rename one of them"
    return f"YAML error: cannot build the document at the {_what(text, index)}"


def short_tag(tag: str) -> str:
    """``!!seq`` for ``tag:yaml.org,2002:seq``; other tags as written, clipped."""
    prefix = "tag:yaml.org,2002:"
    shown = "!!" + tag.removeprefix(prefix) if tag.startswith(prefix) else tag
    return excerpt(shown)[1:-1]


def kind_of(value: object) -> str:
    """What a loaded value is, in words (``a number``, ``a boolean``, ``null``)."""
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case str():
            return "text"
        case list():
            return "a list"
        case dict():
            return "a mapping"
        case bytes():
            return "binary data"
        case dt.date():
            return "a date"
    return type(value).__name__


def unreadable_message(tag: str, value: object) -> str:
    """The message for a scalar its tag's constructor cannot read (``!!int ""``)."""
    kind = tag.rsplit(":", 1)[-1]
    shown = excerpt(value) if isinstance(value, str) else "this value"
    if kind == "bool":
        return f"cannot read {shown} as a boolean: write true or false"
    if kind == "timestamp":
        return (
            f"cannot read {shown} as a date: there is no such day (a date is YYYY-MM-DD); "
            "quote it to keep it as text"
        )
    return f"cannot read {shown} as {kind}: write a valid {kind}, or drop the !!{kind} tag"
