"""Values straight from libyaml's events: no node graph, one pass, the same answers.

libyaml's composer builds a node (with two marks) for every scalar and collection, and
PyYAML then walks that graph again to make values. Here the parser's events become values
as they come: plain mappings, lists and scalars, with the loader's readings (YAML 1.2
spellings, strict booleans), duplicate and non-text keys reported, the line of each
mapping with an ``account`` key recorded, and a key made of a list or mapping refused.
Anything else (an alias, a merge key ``<<``, an explicit tag) raises ``Unusual``, having
reported nothing, and the caller composes the document with the general loader, which
measures aliases first, refuses merge keys and reads or refuses tags.

Mapping keys and the text items of lists (role names) are interned: 100k users share one
copy of ``account``, ``name`` and of each role name instead of one each. The build recurses
once per level of nesting, which ``parsing`` bounds (256) before the first event is read.

``marks`` walks the events of a file again, only when the file has problems, and
records only the marks of the paths asked for (and of their parents): one pass per file,
never one per problem.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence

import yaml

from reconciler.desired.lines import AccountLines
from reconciler.desired.yamlsafe import loader, text
from reconciler.desired.yamlsafe.loader import YamlProblem
from reconciler.desired.yamlsafe.text import HostileInput, Mark
from reconciler.errors import excerpt

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any

_NULL, _BOOL = "tag:yaml.org,2002:null", text.BOOL
# Plain scalars whose reading is made by PyYAML's constructor (numbers, dates).
_CONSTRUCTED = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("int", "float", "timestamp", "binary")
)
_SCALAR = yaml.ScalarEvent
_MAP_START, _SEQ_START = yaml.MappingStartEvent, yaml.SequenceStartEvent
_MAP_END, _SEQ_END = yaml.MappingEndEvent, yaml.SequenceEndEvent
_KEY_KIND = {_MAP_START: "a mapping", _SEQ_START: "a list"}
_CONSTRUCTOR = yaml.constructor.SafeConstructor()
# The first characters of plain scalars that may read as something else than text.
_READ_FIRST = frozenset(loader.IMPLICIT)
assert not loader.WILDCARD  # else every plain scalar would need _reading
_intern = sys.intern


class Unusual(Exception):
    """The document needs the general loader (aliases, merge keys, explicit tags)."""


def _reading(value: str, mark: Any) -> Any:
    """What a plain scalar means: the loader's resolution, then its constructor."""
    for tag, regexp in loader.IMPLICIT.get(value[:1], loader.WILDCARD):
        if regexp.match(value):
            core = text.CORE_SPELLING.get(tag)
            if core is not None and core.fullmatch(value) is None:
                return value  # only YAML 1.1 reads it as a boolean or number: text
            if tag == _NULL:
                return None
            if tag == _BOOL:
                return value in text.TRUE
            if tag not in _CONSTRUCTED:
                raise Unusual  # a merge key, or YAML 1.1's = and ! readings
            try:
                return _CONSTRUCTOR.yaml_constructors[tag](
                    _CONSTRUCTOR, yaml.ScalarNode(tag, value)
                )
            except loader.UNREADABLE:
                raise HostileInput(
                    text.unreadable_message(tag, value), loader.mark_of(mark)
                ) from None
    return value


class _Builder:
    """The state of one build: problems, account lines, the frames of open collections."""

    __slots__ = ("end", "ids", "lines", "problems")

    def __init__(self) -> None:
        self.problems: list[YamlProblem] = []
        # id and first line of each mapping with an ``account`` key (AccountLines)
        self.ids, self.lines = array("Q"), array("Q")
        self.end = 0  # index of the character after the document's content

    def key_problem(self, key: Any, event: Any) -> None:
        """Report a key that is not text, or text seen before as a key of its mapping."""
        if type(key) is not str:
            message = (
                f"key {excerpt(event.value)} is read as {text.kind_of(key)}, "
                "not as text: put it in quotes"
            )
        else:
            message = f"duplicate key {excerpt(key)}: the later value would silently win; keep one"
        self.problems.append(YamlProblem(message=message, mark=loader.mark_of(event.start_mark)))

    def node(self, get: Any) -> Any:
        """The value of the next node of ``get`` (the parser's get_event)."""
        event = get()
        kind = type(event)
        if kind is _SCALAR:
            self.end = event.end_mark.index
            return _scalar(event)
        if kind is _MAP_START and event.tag is None:
            return self.mapping(get, event)
        if kind is _SEQ_START and event.tag is None:
            return self.sequence(get)
        raise Unusual  # a tag, or an alias

    def mapping(self, get: Any, start: Any) -> dict[Any, Any]:
        """The mapping that ``start`` opens, up to its end event."""
        made: dict[Any, Any] = {}
        while True:
            event = get()
            kind = type(event)
            if kind is _SCALAR:
                key = _scalar(event)
                if type(key) is str:
                    key = _intern(key)
                    if key in made:
                        self.key_problem(key, event)
                else:
                    self.key_problem(key, event)
            elif kind is _MAP_END:
                if "account" in made:
                    self.ids.append(id(made))
                    self.lines.append(start.start_mark.line + 1)
                self.end = event.end_mark.index
                return made
            elif kind is _MAP_START or kind is _SEQ_START:
                raise HostileInput(
                    f"{_KEY_KIND[kind]} is used as a key: keys are text",
                    loader.mark_of(event.start_mark),
                )
            else:
                raise Unusual  # an alias as a key
            event = get()
            kind = type(event)
            if kind is _SCALAR:  # _scalar(event), inlined: the parse's hottest line
                value = event.value
                implicit = event.implicit
                if implicit[0]:
                    if value[:1] in _READ_FIRST:
                        value = _reading(value, event.start_mark)
                elif not implicit[1]:
                    raise Unusual
                made[key] = value
            elif kind is _MAP_START and event.tag is None:
                made[key] = self.mapping(get, event)
            elif kind is _SEQ_START and event.tag is None:
                made[key] = self.sequence(get)
            else:
                raise Unusual  # a tag, or an alias

    def sequence(self, get: Any) -> list[Any]:
        """The list whose start event was just read, up to its end event."""
        made: list[Any] = []
        append = made.append
        while True:
            event = get()
            kind = type(event)
            if kind is _SCALAR:
                value = _scalar(event)
                append(_intern(value) if type(value) is str else value)
            elif kind is _SEQ_END:
                self.end = event.end_mark.index
                return made
            elif kind is _MAP_START and event.tag is None:
                append(self.mapping(get, event))
            elif kind is _SEQ_START and event.tag is None:
                append(self.sequence(get))
            else:
                raise Unusual  # a tag, or an alias


def _scalar(event: Any) -> Any:
    """A scalar event's value: text, or what a plain scalar reads as (Unusual for a tag)."""
    value = event.value
    implicit = event.implicit
    if implicit[0]:  # plain (also with the non-specific tag !): resolved like the loader
        return _reading(value, event.start_mark) if value[:1] in _READ_FIRST else value
    if not implicit[1]:  # an explicit tag
        raise Unusual
    return value


def build(parser: Any) -> tuple[Any, AccountLines, list[YamlProblem], int]:
    """The document's value from ``parser`` (positioned after DocumentStart), the line
    of each mapping with an ``account`` key (by id), the problems reported, and the
    index of the character after the value."""
    builder = _Builder()
    data = builder.node(parser.get_event)
    lines = AccountLines.of(builder.ids, builder.lines)
    return data, lines, builder.problems, builder.end


Wanted = Sequence[tuple[tuple[str | int, ...], bool]]  # (path, on_key) of each problem
# Reading one entry on its own costs about as much as skipping this many entries in a pass
# over the whole text (a parser to set up): past that share, the one pass is cheaper.
_ENTRY_COST = 32
_Found = dict[tuple[tuple[str, ...], bool], Mark]


def marks(source: str, wanted: Wanted, entries: Sequence[int | None] = ()) -> list[Mark]:
    """The mark of each (path, on_key) of ``wanted`` in ``source`` (of the deepest
    existing part when not found; 1:1 for text that does not parse).

    ``entries``: the first line of each item of ``users`` (None: not known). A path inside
    ``users[i]`` is looked up in that item's own lines, cut out up to the next item's
    first line, when they parse as one item; everything else is found in one pass over
    the whole text. A file's problems cost their entries, not the file each (or, when more
    than one entry in ``_ENTRY_COST`` has one, a single pass over the whole text).
    """
    out: list[Mark | None] = [None] * len(wanted)
    if entries:
        _in_entries(source, wanted, entries, out)
    rest = [number for number, mark in enumerate(out) if mark is None]
    if rest:
        asked = [(tuple(map(_part, wanted[n][0])), wanted[n][1]) for n in rest]
        try:
            found = _walk(source, _targets(asked))
        except (yaml.YAMLError, Unusual):
            found = {}
        for number, (path, on_key) in zip(rest, asked, strict=True):
            out[number] = _lookup(found, path, on_key) or Mark(line=1, col=1)
    return [mark or Mark(line=1, col=1) for mark in out]


def _in_entries(
    source: str, wanted: Wanted, entries: Sequence[int | None], out: list[Mark | None]
) -> None:
    """Fill ``out`` for the paths inside a ``users`` item whose lines can be cut out."""
    by_entry: dict[tuple[int, int], list[int]] = {}  # (first line, next item's) -> numbers
    for number, (path, _) in enumerate(wanted):
        if len(path) < 2 or path[0] != "users" or type(path[1]) is not int:
            continue
        index = path[1]
        if 0 <= index < len(entries) - 1:
            first, after = entries[index], entries[index + 1]
            if first is not None and after is not None and first < after:
                by_entry.setdefault((first, after), []).append(number)
    if not by_entry or len(by_entry) * _ENTRY_COST > len(entries):
        return  # so many entries that one pass over the whole text costs less
    starts = text.line_starts(source)
    for (first, after), numbers in by_entry.items():
        piece = source[starts[first - 1] : starts[after - 1]]
        # "  - account: …" is a list of one item; "    account: …" (after a "-" line) the
        # item's mapping itself.
        root: tuple[str, ...] = ("0",) if piece.lstrip(" ").startswith("-") else ()
        asked = [((*root, *map(_part, wanted[n][0][2:])), wanted[n][1]) for n in numbers]
        try:
            found = _walk(piece, _targets(asked))
        except (yaml.YAMLError, Unusual):
            continue  # not one item on its own: the whole text is walked
        if (root, False) not in found:
            continue
        for number, (path, on_key) in zip(numbers, asked, strict=True):
            mark = _lookup(found, path, on_key) or found[(root, False)]
            out[number] = Mark(line=mark.line + first - 1, col=mark.col)


def _targets(asked: Sequence[tuple[tuple[str, ...], bool]]) -> set[tuple[tuple[str, ...], bool]]:
    """What the walk records: each asked path and all its parents (and the key itself)."""
    targets: set[tuple[tuple[str, ...], bool]] = set()
    for path, on_key in asked:
        targets.update((path[:end], False) for end in range(len(path) + 1))
        if on_key:
            targets.add((path, True))
    return targets


def _lookup(found: _Found, path: tuple[str, ...], on_key: bool) -> Mark | None:
    """The mark of ``path`` (its key when ``on_key``), else of its deepest found part."""
    mark = found.get((path, True)) if on_key else None
    end = len(path)
    while mark is None and end >= 0:
        mark = found.get((path[:end], False))
        end -= 1
    return mark


def _part(part: str | int) -> str:
    """A path part as the walk sees it: as text (keys as written, list indexes)."""
    return str(part)


def _walk(source: str, targets: set[tuple[tuple[str, ...], bool]]) -> _Found:
    """Marks of the targets (path, on_key): the node (or key) at each path; of a key
    given twice, the later one, whose value is the one read."""
    parser: Any = loader.BaseLoader(source)  # its event methods are untyped in the stubs
    found: _Found = {}
    # frames: [path of the collection, is a mapping, next index / pending key or None]
    stack: list[list[Any]] = []
    try:
        while parser.check_event():
            event = parser.get_event()
            kind = type(event)
            if kind is _MAP_END or kind is _SEQ_END:
                stack.pop()
                _advance(stack)
                continue
            if kind not in (_SCALAR, _MAP_START, _SEQ_START, yaml.AliasEvent):
                continue
            if not stack:
                path: tuple[str, ...] = ()
            else:
                frame = stack[-1]
                if frame[1] and frame[2] is None:  # a key of a mapping
                    key = event.value if kind is _SCALAR else ""
                    key_path = (*frame[0], key)
                    if (key_path, True) in targets:  # a later duplicate key wins
                        found[(key_path, True)] = loader.mark_of(event.start_mark)
                    if kind is not _SCALAR:
                        raise Unusual  # a key that is a collection: the loader refuses it
                    frame[2] = key
                    continue
                path = (*frame[0], frame[2] if frame[1] else str(frame[2]))
            if (path, False) in targets:
                found[(path, False)] = loader.mark_of(event.start_mark)
            if (kind is _MAP_START or kind is _SEQ_START) and (path, False) in targets:
                stack.append([path, kind is _MAP_START, None if kind is _MAP_START else 0])
                continue
            if kind is _MAP_START or kind is _SEQ_START:
                _skip(parser.get_event)  # nothing asked for is inside
            _advance(stack)
    finally:
        parser.dispose()
    return found


def _skip(get: Any) -> None:
    """Read the events of the collection just started, up to its end."""
    depth = 1
    while depth:
        kind = type(get())
        if kind is _MAP_START or kind is _SEQ_START:
            depth += 1
        elif kind is _MAP_END or kind is _SEQ_END:
            depth -= 1


def _advance(stack: list[list[Any]]) -> None:
    """After a value: a mapping waits for its next key, a list counts the next index."""
    if stack:
        frame = stack[-1]
        if frame[1]:
            frame[2] = None
        else:
            frame[2] += 1
