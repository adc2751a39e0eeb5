"""Parsing one file: guards before libyaml sees the text, then the safe loader.

- Nesting is bounded before parsing (text.check_nesting, then an exact count of events):
  libyaml's composer recurses in C and crashes the process on tens of thousands of levels.
- Plain documents are built from libyaml's events (``events``), without a node graph.
  Documents with aliases are composed, and alias bombs measured before construction
  (expanded size of the node graph) and refused; recursive aliases too.
- One document per file.
- Every message is reconciler's own, made from the error's type, its marks and the text
  there: PyYAML's and libyaml's message texts change between releases.

The cyclic GC is paused while parsing: it would rescan the growing node graph over and
over, and the graph has no cycles to find.
"""

from __future__ import annotations

import contextlib
import gc
import re
from collections.abc import Iterator, Sequence

import yaml

from reconciler.desired.lines import AccountLines
from reconciler.desired.yamlsafe import events, loader, text
from reconciler.desired.yamlsafe.loader import YamlProblem
from reconciler.desired.yamlsafe.text import HostileInput, Mark
from reconciler.values import frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any

MAX_EXPANDED_NODES = 2_000_000
_ALIAS = re.compile(r"(?:^|[\s\[{,:-])\*[^\s\]},]")


@frozen
class Parsed:
    """The data of one YAML document, the line of each mapping with an ``account``
    key (by ``id`` of the dict), and problems that did not stop parsing."""

    data: Any
    account_lines: AccountLines
    problems: tuple[YamlProblem, ...]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC (when it runs) while loading a large, acyclic document."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _walk_depth(source: str) -> yaml.MarkedYAMLError | None:
    """Raise too_deep where collections first nest deeper than MAX_DEPTH; the error that
    stopped the parser before that, if any."""
    depth = 0
    try:
        for event in yaml.parse(source, Loader=loader.BaseLoader):
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                depth += 1
                if depth > text.MAX_DEPTH:
                    raise text.too_deep(loader.mark_of(event.start_mark))
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                depth -= 1
    except yaml.MarkedYAMLError as exc:
        return exc
    return None


def _check_depth_exactly(source: str) -> None:
    """Refuse ``source`` when its collections nest deeper than MAX_DEPTH."""
    error = _walk_depth(source)
    if error is None:
        return
    # libyaml >= 0.2.6 stops at 1,000 levels, and its scanner reads a whole run of "[" before
    # the parser emits an event: what precedes the refused spot shows whether depth did it.
    mark = error.problem_mark
    if mark is not None and 0 < mark.index < len(source):
        _walk_depth(source[: mark.index])
    raise error


def _check_aliases(source: str) -> None:
    """Refuse alias bombs and recursive aliases by measuring the expanded node graph."""
    root = _compose(source)
    if root is None:
        return
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] > MAX_EXPANDED_NODES:
                raise HostileInput(
                    "aliases expand to more than "
                    f"{MAX_EXPANDED_NODES:,} nodes: refusing a possible alias bomb",
                    loader.mark_of(node.start_mark),
                )
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise HostileInput(
                "recursive alias: a node contains itself", loader.mark_of(node.start_mark)
            )
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                raise HostileInput(
                    "recursive alias: a node contains itself", loader.mark_of(child.start_mark)
                )
            if id(child) not in sizes:
                stack.append((child, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _single_root(composer: yaml.SafeLoader, source: str) -> yaml.Node | None:
    """The one document's root node (None when the stream has none)."""
    root: yaml.Node | None = composer.get_node() if composer.check_node() else None
    if root is not None and composer.check_node():
        second = composer.peek_event()  # type: ignore[no-untyped-call]  # untyped in the stubs
        raise _second_document(source, root.end_mark.index, second)
    return root


def _compose(source: str) -> yaml.Node | None:
    composer = loader.BaseLoader(source)
    try:
        return _single_root(composer, source)
    finally:
        composer.dispose()


def parse(raw: bytes, source: str) -> Parsed | None:
    """Parse one YAML document; None when it has no content. Raises HostileInput."""
    with gc_paused():
        try:
            return _parse(raw, source)
        except yaml.MarkedYAMLError as exc:
            raise _to_hostile(exc, source) from None
        except yaml.reader.ReaderError as exc:
            raise _reader_error(exc, source) from None
        except yaml.YAMLError:
            raise HostileInput("not valid YAML", Mark(line=1, col=1)) from None


def _parse(raw: bytes, source: str) -> Parsed | None:
    try:
        text.check_nesting(raw)
    except HostileInput:
        # The byte scan also counts brackets inside quotes and comments: let libyaml's
        # (non-recursive) parser measure the real depth before refusing.
        _check_depth_exactly(source)
    if not _has_aliases(source):
        try:
            return _from_events(source)
        except events.Unusual:
            pass  # an alias the text scan missed, a merge key or a tag: compose it
    _check_aliases(source)
    return _composed(source)


def _has_aliases(source: str) -> bool:
    """Whether the text may hold an alias (``*name``): then the graph is measured first."""
    return "*" in source and _ALIAS.search(source) is not None


def _from_events(source: str) -> Parsed | None:
    """A plain document built from libyaml's events (events.Unusual for any other)."""
    parser: Any = loader.BaseLoader(source)  # its event methods are untyped in the stubs
    try:
        parser.get_event()  # the stream's start
        if parser.check_event(yaml.StreamEndEvent):
            return None
        parser.get_event()  # the document's start
        data, account_lines, problems, end = events.build(parser)
        parser.get_event()  # the document's end
        if not parser.check_event(yaml.StreamEndEvent):
            raise _second_document(source, end, parser.peek_event())
    finally:
        parser.dispose()
    if data is None:
        return None
    return Parsed(data=data, account_lines=account_lines, problems=tuple(problems))


def _second_document(source: str, end: int, second: Any) -> HostileInput:
    # libyaml has consumed the second document's start by now, PyYAML has not: both
    # point at its "---" line when it has one.
    start = text.document_start(source, end, second.start_mark.index)
    return HostileInput(
        "more than one YAML document (---) in one file; use one file per document", start
    )


def _composed(source: str) -> Parsed | None:
    """The document composed and constructed by the general safe loader."""
    safe = loader.Loader(source)
    try:
        root = _single_root(safe, source)
        data = None if root is None else safe.construct_document(root)
    finally:
        safe.dispose()
    if data is None:
        return None
    return Parsed(data=data, account_lines=safe.account_lines, problems=tuple(safe.problems))


def _to_hostile(exc: yaml.MarkedYAMLError, source: str) -> HostileInput:
    """reconciler's message for a parser error: from its type, marks and the text there."""
    mark = exc.problem_mark or exc.context_mark
    if mark is None:
        return HostileInput("not valid YAML", Mark(line=1, col=1))
    opened = None
    context = exc.context_mark
    if context is not None and context.index != mark.index:
        opened = (context.index, loader.mark_of(context))
    match exc:
        case yaml.composer.ComposerError():
            message = text.reference_message(source, mark.index)
        case yaml.scanner.ScannerError() | yaml.parser.ParserError():
            message = text.syntax_message(source, mark.index, opened)
        case _:
            message = "YAML error: cannot build the value here"
    return HostileInput(message, loader.mark_of(mark))


def _reader_error(exc: yaml.reader.ReaderError, source: str) -> HostileInput:
    character = exc.character if isinstance(exc.character, int) else ord(exc.character or "\0")
    return HostileInput(
        f"the character U+{character:04X} is not allowed in YAML: remove it",
        text.position(source, min(exc.position, len(source))),
    )


def node_at(source: str, path: tuple[str | int, ...], on_key: bool) -> Mark:
    """The position of ``path`` inside ``text`` (deepest existing part when not found)."""
    return marks_at(source, [(path, on_key)])[0]


def marks_at(
    source: str,
    wanted: Sequence[tuple[tuple[str | int, ...], bool]],
    entries: Sequence[int | None] = (),
) -> list[Mark]:
    """:func:`node_at` for each (path, on_key) of ``wanted``, from ``source``'s events
    (composed once when it has aliases, which lead elsewhere); ``entries``, the first line
    of each ``users`` item, lets a problem inside one be found in that item's lines."""
    if not _has_aliases(source):
        return events.marks(source, wanted, entries)
    try:
        node = _compose(source)
    except (yaml.YAMLError, HostileInput):
        node = None
    if node is None:
        return [Mark(line=1, col=1) for _ in wanted]
    return [_descend(node, path, on_key) for path, on_key in wanted]


def _descend(node: yaml.Node, path: tuple[str | int, ...], on_key: bool) -> Mark:
    """The mark of ``path`` below ``node`` (of its deepest existing part when not found)."""
    mark = loader.mark_of(node.start_mark)
    for index, part in enumerate(path):
        last = index == len(path) - 1
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in reversed(node.value):  # a later duplicate wins
                if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(part):
                    child = key_node if (last and on_key) else value_node
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            child = node.value[part]
        if child is None:
            break
        node, mark = child, loader.mark_of(child.start_mark)
    return mark
