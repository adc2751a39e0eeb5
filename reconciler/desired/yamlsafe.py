"""Safe YAML parsing for hostile input: the only module that imports PyYAML.

- Only the safe loader (libyaml's C parser when present): no object tags.
- Duplicate mapping keys are reported, not silently collapsed as PyYAML does.
- Alias bombs are measured before construction (expanded size of the node graph) and
  refused; recursive aliases too.
- Nesting is bounded before parsing: libyaml's composer recurses in C and crashes the
  process on tens of thousands of levels.

Speed (100k users, 14 MB): libyaml composes the node graph in C; PyYAML's constructor
then spends as long again on per-node bookkeeping (memo dicts, generators) that only
aliases and merge keys need. Documents of plain mappings, lists and scalars are built by
a direct breadth-first walk that yields the same values and problems in the same order;
anything else goes through PyYAML's constructor. The cyclic GC is paused while parsing:
it would rescan the growing node graph over and over, and the graph has no cycles to find.
"""

from __future__ import annotations

import contextlib
import gc
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

try:
    # The stubs do not make CSafeLoader a SafeLoader; it offers the same constructor API.
    _BaseLoader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]  # see above
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _BaseLoader = yaml.SafeLoader

MAX_FLOW_DEPTH = 256
MAX_EXPANDED_NODES = 2_000_000
_DEEP_INDENT = re.compile(rb"^[ \t]{1024}", re.MULTILINE)
_COMPACT_NESTING = re.compile(rb"(?:[-?][ \t]+){256}")
# Cheap necessary conditions for the two patterns above, which no literal prefix speeds
# up: on 14 MB they take a third of a second, and almost never match.
_TABS_AS_SPACES = bytes.maketrans(b"\t", b" ")
_COMPACT_PAIR = re.compile(rb"[-?][ \t]+[-?]")
_ALIAS = re.compile(rb"(?:^|[\s\[{,:-])\*[^\s\]},]")
_FLOW_CHARS = bytes(range(256)).translate(None, b"[]{}")
_OPEN_CLOSE = bytes.maketrans(b"[]{}", b"()()")
_STR, _SEQ, _MAP = "tag:yaml.org,2002:str", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"
_MERGE = "tag:yaml.org,2002:merge"
# Scalar tags whose SafeConstructor functions are pure (a value from one node, no state).
_PURE_SCALARS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("null", "bool", "int", "float", "binary", "timestamp")
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Mark:
    """A 1-based line and column."""

    line: int
    col: int


@dataclass(frozen=True, slots=True, kw_only=True)
class YamlProblem:
    """A problem found while parsing, with its position when known."""

    message: str
    mark: Mark


@dataclass(frozen=True, slots=True, kw_only=True)
class Parsed:
    """The data of one YAML document, the line of each mapping with an ``account``
    key (by ``id`` of the dict), and problems that did not stop parsing."""

    data: Any
    account_lines: dict[int, int]
    problems: tuple[YamlProblem, ...]


class HostileInput(Exception):
    """The text is refused before or while parsing (carries a position)."""

    def __init__(self, message: str, mark: Mark) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


class _Unusual(Exception):
    """The document needs PyYAML's general constructor (shared nodes, merge keys, tags)."""


def _mark(raw: Any) -> Mark:
    return Mark(line=raw.line + 1, col=raw.column + 1)


class _Loader(_BaseLoader):  # type: ignore[valid-type,misc]  # a base chosen at import time
    """Safe loader that records duplicate keys and where user entries start."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[YamlProblem] = []
        self.account_lines: dict[int, int] = {}

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: tuple[bool, bool]) -> str:
        # Called by the C composer for every node: BaseResolver.resolve's answer (this
        # loader has no path resolvers), without rebuilding the candidate list each time.
        if kind is yaml.ScalarNode and implicit[0]:
            for tag, regexp in _IMPLICIT.get(value[:1], _WILDCARD):
                if regexp.match(value):
                    return tag
            return _STR
        resolved: str = super().resolve(kind, value, implicit)
        return resolved

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, yaml.MappingNode):
            raise yaml.constructor.ConstructorError(
                None, None, f"expected a mapping node, but found {node.id}", node.start_mark
            )
        if any(key.tag == "tag:yaml.org,2002:merge" for key, _ in node.value):
            self._check_duplicates(node, deep)
            merged: dict[Any, Any] = super().construct_mapping(node, deep=deep)
            return merged
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in mapping
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    "found an unhashable key (a list or mapping used as a key)",
                    key_node.start_mark,
                ) from None
            if duplicate:
                self._report_duplicate(key, key_node)
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping

    def _check_duplicates(self, node: yaml.MappingNode, deep: bool) -> None:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                self._report_duplicate(key, key_node)
            seen.add(key)

    def _report_duplicate(self, key: Any, key_node: yaml.Node) -> None:
        self.duplicates.append(
            YamlProblem(
                message=f"duplicate key {key!r}: the later value would silently win; keep one",
                mark=_mark(key_node.start_mark),
            )
        )

    def construct_yaml_map(self, node: yaml.MappingNode) -> Iterator[dict[Any, Any]]:
        data: dict[Any, Any] = {}
        yield data
        data.update(self.construct_mapping(node))
        if "account" in data:
            self.account_lines[id(data)] = node.start_mark.line + 1

    def _scalar(self, tag: str, node: yaml.Node) -> Any:
        try:
            return self.yaml_constructors[tag](self, node)
        except (ValueError, TypeError, AttributeError, OverflowError) as exc:
            raise _unreadable(node, exc) from None

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """PyYAML's, with a located error for values its constructors cannot read."""
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, AttributeError, OverflowError) as exc:
            raise _unreadable(node, exc) from None

    def construct_plain(self, root: yaml.Node) -> Any:
        """What ``construct_document(root)`` returns, for documents of plain mappings, lists
        and scalars; raises _Unusual (having reported nothing) for any other document.

        PyYAML fills containers breadth-first (each level's generators run after the level
        above), so a FIFO queue visits them, and reports duplicates, in the same order.
        """
        queue: deque[tuple[yaml.Node, Any]] = deque()
        seen: set[int] = set()

        def value(node: yaml.Node) -> Any:
            tag, kind = node.tag, type(node)
            if kind is yaml.ScalarNode:
                if tag == _STR:
                    return node.value
                if tag in _PURE_SCALARS:
                    return self._scalar(tag, node)
                raise _Unusual
            if id(node) in seen:  # an alias the text scan missed: PyYAML shares the value
                raise _Unusual
            seen.add(id(node))
            made: Any
            if kind is yaml.MappingNode and tag == _MAP:
                made = {}
            elif kind is yaml.SequenceNode and tag == _SEQ:
                made = []
            else:
                raise _Unusual
            queue.append((node, made))
            return made

        data = value(root)
        while queue:
            node, made = queue.popleft()
            if type(made) is list:
                made.extend([value(child) for child in node.value])
                continue
            if any(key_node.tag == _MERGE for key_node, _ in node.value):
                raise _Unusual
            for key_node, value_node in node.value:
                if type(key_node) is not yaml.ScalarNode:
                    raise _Unusual
                key = value(key_node)  # str, number, bool, None, bytes or date: hashable
                if key in made:
                    self._report_duplicate(key, key_node)
                made[key] = value(value_node)
            if "account" in made:
                self.account_lines[id(made)] = node.start_mark.line + 1
        return data

    def construct_root(self, root: yaml.Node, *, plain: bool) -> Any:
        """The document of ``root``: the direct walk when ``plain``, else PyYAML's."""
        if plain:
            try:
                return self.construct_plain(root)
            except _Unusual:
                self.duplicates, self.account_lines = [], {}
        return self.construct_document(root)


_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_yaml_map)
assert not _Loader.yaml_path_resolvers  # _Loader.resolve relies on it
_WILDCARD: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    _Loader.yaml_implicit_resolvers.get(None, ())
)
_IMPLICIT: dict[str, tuple[tuple[str, re.Pattern[str]], ...]] = {
    first: (*resolvers, *_WILDCARD)
    for first, resolvers in _Loader.yaml_implicit_resolvers.items()
    if first is not None
}


def _unreadable(node: yaml.Node, exc: Exception) -> yaml.constructor.ConstructorError:
    """A located error for a scalar like ``2024-13-45`` (a date that is no date)."""
    kind = str(node.tag).rsplit(":", 1)[-1]
    shown = node.value if isinstance(node.value, str) else "this value"
    return yaml.constructor.ConstructorError(
        None,
        None,
        f"cannot read {shown!r} as {kind} ({exc}); quote it to keep it as text",
        node.start_mark,
    )


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


def _check_nesting(raw: bytes) -> None:
    flow = raw.translate(None, _FLOW_CHARS)
    depth = deepest = 0
    # An innermost pair adds at most one level to what is left without it, so only a
    # remainder as long as the limit can be too deep (``[a, b]`` lists leave nothing).
    innermost = flow.translate(_OPEN_CLOSE).replace(b"()", b"")
    for char in flow if len(innermost) >= MAX_FLOW_DEPTH else b"":
        depth = depth + 1 if char in (0x5B, 0x7B) else max(depth - 1, 0)
        deepest = max(deepest, depth)
        if deepest > MAX_FLOW_DEPTH:
            break
    match = None
    if b" " * 1024 in raw.translate(_TABS_AS_SPACES):
        match = _DEEP_INDENT.search(raw)
    if match is None and _COMPACT_PAIR.search(raw):
        match = _COMPACT_NESTING.search(raw)
    if deepest > MAX_FLOW_DEPTH or match:
        offset = match.start() if match else 0
        line = raw.count(b"\n", 0, offset) + 1
        raise HostileInput(
            "nesting is too deep for a desired-state file (refused before parsing)",
            Mark(line=line, col=1),
        )


def _check_depth_exactly(text: str) -> None:
    """Refuse ``text`` when its collections nest deeper than MAX_FLOW_DEPTH."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=_BaseLoader):
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                depth += 1
                if depth > MAX_FLOW_DEPTH:
                    raise HostileInput(
                        "nesting is too deep for a desired-state file (refused before parsing)",
                        _mark(event.start_mark),
                    )
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                depth -= 1
    except yaml.MarkedYAMLError as exc:
        raise _to_hostile(exc) from None


def _check_aliases(text: str) -> None:
    """Refuse alias bombs and recursive aliases by measuring the expanded node graph."""
    root = yaml.compose(text, Loader=_BaseLoader)
    if root is None:
        return
    distinct = 0
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            children = _children(node)
            sizes[key] = 1 + sum(sizes[id(child)] for child in children)
            if sizes[key] > MAX_EXPANDED_NODES:
                raise HostileInput(
                    "aliases expand to more than "
                    f"{MAX_EXPANDED_NODES:,} nodes: refusing a possible alias bomb",
                    _mark(node.start_mark),
                )
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise HostileInput("recursive alias: a node contains itself", _mark(node.start_mark))
        distinct += 1
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                raise HostileInput(
                    "recursive alias: a node contains itself", _mark(child.start_mark)
                )
            if id(child) not in sizes:
                stack.append((child, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def parse(raw: bytes, text: str) -> Parsed | None:
    """Parse one YAML document; None when it has no content. Raises HostileInput."""
    with gc_paused():
        return _parse(raw, text)


def _parse(raw: bytes, text: str) -> Parsed | None:
    try:
        _check_nesting(raw)
    except HostileInput:
        # The byte scan also counts brackets inside quotes and comments: let libyaml's
        # (non-recursive) parser measure the real depth before refusing.
        _check_depth_exactly(text)
    aliases = b"*" in raw and _ALIAS.search(raw) is not None
    if aliases:
        try:
            _check_aliases(text)
        except yaml.MarkedYAMLError as exc:
            raise _to_hostile(exc) from None
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        data = None if root is None else loader.construct_root(root, plain=not aliases)
    except yaml.MarkedYAMLError as exc:
        raise _to_hostile(exc) from None
    except yaml.YAMLError as exc:
        raise HostileInput(f"not valid YAML: {exc}", Mark(line=1, col=1)) from None
    finally:
        loader.dispose()
    if data is None:
        return None
    return Parsed(data=data, account_lines=loader.account_lines, problems=tuple(loader.duplicates))


def _to_hostile(exc: yaml.MarkedYAMLError) -> HostileInput:
    mark = exc.problem_mark or exc.context_mark
    position = _mark(mark) if mark is not None else Mark(line=1, col=1)
    problem = exc.problem or "invalid YAML"
    if "could not determine a constructor for the tag" in problem:
        tag = re.search(r"'([^']*)'", problem)
        problem = (
            f"tag {tag.group(1) if tag else ''} is not allowed: only plain YAML "
            "(mappings, lists, strings, numbers, booleans) is loaded"
        )
    elif "single document" in f"{problem} {exc.context}":
        problem = "more than one YAML document (---) in one file; use one file per document"
    context = f" ({exc.context})" if exc.context and exc.context not in problem else ""
    return HostileInput(f"YAML syntax error: {problem}{context}", position)


def node_at(text: str, path: tuple[str | int, ...], on_key: bool) -> Mark:
    """The position of ``path`` inside ``text`` (deepest existing part when not found)."""
    try:
        node: yaml.Node | None = yaml.compose(text, Loader=_BaseLoader)
    except yaml.YAMLError:
        return Mark(line=1, col=1)
    if node is None:
        return Mark(line=1, col=1)
    mark = _mark(node.start_mark)
    for index, part in enumerate(path):
        last = index == len(path) - 1
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
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
        node, mark = child, _mark(child.start_mark)
    return mark
