"""The safe loader: which nodes become which values, and what is reported on the way.

- Only plain tags: mappings, lists, strings, numbers, booleans, null (dates and binary
  reach the schema, which refuses them). Any other tag, or a tag on the wrong kind of
  node, is a located problem; so is a value its tag cannot read (``!!bool maybe``).
- Booleans and numbers are the YAML 1.2 core schema's spellings (text.CORE_SPELLING):
  what only YAML 1.1 reads as one (``no``, ``on``, ``010``) is text.
- Duplicate mapping keys, and keys that are not text (``1:``, ``true:``, ``~:``), are
  reported, not silently collapsed or dropped.

Documents of plain mappings, lists and scalars never reach this loader: ``events``
builds them from libyaml's events without a node graph, with the same readings and
problems. This loader composes what needs more: aliases (measured first), merge keys
(refused, at the key) and explicit tags.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import yaml

from reconciler.desired.lines import AccountLines
from reconciler.desired.yamlsafe import text
from reconciler.desired.yamlsafe.text import HostileInput, Mark
from reconciler.errors import excerpt
from reconciler.values import frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any

try:
    # The stubs do not make CSafeLoader a SafeLoader; it offers the same constructor API.
    BaseLoader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]  # see above
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    BaseLoader = yaml.SafeLoader

_STR, _SEQ, _MAP = "tag:yaml.org,2002:str", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"
_MERGE = "tag:yaml.org,2002:merge"
# What YAML 1.1 reads plain ``<<`` and ``=`` as (not tags anyone wrote).
_SPECIAL = frozenset({_MERGE, "tag:yaml.org,2002:value"})
# Scalar tags whose constructor functions are pure (a value from one node, no state).
_PURE_SCALARS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("null", "bool", "int", "float", "binary", "timestamp")
)
_TAGS_OF = {
    yaml.ScalarNode: _PURE_SCALARS | {_STR},
    yaml.SequenceNode: frozenset({_SEQ}),
    yaml.MappingNode: frozenset({_MAP}),
}
_KIND_OF_NODE = {
    yaml.ScalarNode: "a scalar",
    yaml.SequenceNode: "a list",
    yaml.MappingNode: "a mapping",
}
# What a scalar constructor raises on a value it cannot read (``!!int ""``, ``!!bool maybe``).
UNREADABLE = (ValueError, TypeError, AttributeError, LookupError, ArithmeticError)


@frozen
class YamlProblem:
    """A problem found while parsing, with its position when known."""

    message: str
    mark: Mark


def mark_of(raw: Any) -> Mark:
    """A PyYAML mark (0-based) as a Mark (1-based)."""
    return Mark(line=raw.line + 1, col=raw.column + 1)


class Loader(BaseLoader):  # type: ignore[valid-type,misc]  # a base chosen at import time
    """Safe loader that records duplicate and non-text keys and where user entries start."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.problems: list[YamlProblem] = []
        self.account_lines = AccountLines()

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: tuple[bool, bool]) -> str:
        # Called by the C composer for every node: BaseResolver.resolve's answer (this
        # loader has no path resolvers), without rebuilding the candidate list each time,
        # and text for what only YAML 1.1 reads as a boolean or number.
        if kind is yaml.ScalarNode and implicit[0]:
            for tag, regexp in IMPLICIT.get(value[:1], WILDCARD):
                if regexp.match(value):
                    core = text.CORE_SPELLING.get(tag)
                    return _STR if core is not None and core.fullmatch(value) is None else tag
            return _STR
        resolved: str = super().resolve(kind, value, implicit)
        return resolved

    def construct_strict_bool(self, node: yaml.ScalarNode) -> bool:
        """``!!bool`` takes true or false only, also when the tag is explicit."""
        value = self.construct_scalar(node)
        if value in text.TRUE or value in text.FALSE:
            return value in text.TRUE
        raise ValueError(value)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """PyYAML's (merge keys refused), after reporting duplicate and non-text keys."""
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise HostileInput(
                    f"{_KIND_OF_NODE[type(key_node)]} is used as a key: keys are text",
                    mark_of(key_node.start_mark),
                )
            if key_node.tag == _MERGE:
                continue
            key = self.construct_object(key_node, deep=deep)
            self._check_key(key, key_node, seen)
            seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        """Refuse merge keys (<<): a reviewer reading the diff does not see merged values."""
        for key_node, _ in node.value:
            if key_node.tag == _MERGE:
                raise HostileInput(
                    "merge keys are not supported; write the keys out (a reviewer reading "
                    "the change does not see the values a merge key (<<) brings in)",
                    mark_of(key_node.start_mark),
                )
        super().flatten_mapping(node)

    def _check_key(self, key: Any, key_node: yaml.Node, seen: Any) -> None:
        if type(key) is not str:
            self.problems.append(
                YamlProblem(
                    message=f"key {excerpt(key_node.value)} is read as {text.kind_of(key)}, "
                    "not as text: put it in quotes",
                    mark=mark_of(key_node.start_mark),
                )
            )
        elif key in seen:  # only text keys: True and 1 are one dict key, but not a duplicate
            self.problems.append(
                YamlProblem(
                    message=f"duplicate key {excerpt(key)}: the later value would silently "
                    "win; keep one",
                    mark=mark_of(key_node.start_mark),
                )
            )

    def construct_yaml_map(self, node: yaml.MappingNode) -> Iterator[dict[Any, Any]]:
        data: dict[Any, Any] = {}
        yield data
        data.update(self.construct_mapping(node))
        if "account" in data:
            self.account_lines.add(id(data), node.start_mark.line + 1)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """PyYAML's, for plain tags only, with a located error for unreadable values."""
        if node.tag not in _TAGS_OF[type(node)]:
            raise _refused_tag(node)
        try:
            return super().construct_object(node, deep=deep)
        except UNREADABLE:
            raise _unreadable(node) from None


Loader.add_constructor(_MAP, Loader.construct_yaml_map)
Loader.add_constructor(text.BOOL, Loader.construct_strict_bool)
assert not Loader.yaml_path_resolvers  # Loader.resolve relies on it
WILDCARD: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    Loader.yaml_implicit_resolvers.get(None, ())
)
IMPLICIT: dict[str, tuple[tuple[str, re.Pattern[str]], ...]] = {
    first: (*resolvers, *WILDCARD)
    for first, resolvers in Loader.yaml_implicit_resolvers.items()
    if first is not None
}
_YAML11 = yaml.constructor.SafeConstructor()


def yaml11_reading(spelled: str) -> bool | int | float | None:
    """The boolean or number YAML 1.1 (PyYAML's default) reads ``spelled`` as; else None."""
    for tag, regexp in IMPLICIT.get(spelled[:1], WILDCARD):
        if regexp.match(spelled):
            if tag not in text.CORE_SPELLING:
                return None
            try:
                read: bool | int | float = _YAML11.yaml_constructors[tag](
                    _YAML11, yaml.ScalarNode(tag, spelled)
                )
            except UNREADABLE:
                return None
            return read
    return None


def _unreadable(node: yaml.Node) -> HostileInput:
    """A located error for a scalar like ``2024-13-45`` or ``!!int ""``."""
    return HostileInput(
        text.unreadable_message(str(node.tag), node.value), mark_of(node.start_mark)
    )


def _refused_tag(node: yaml.Node) -> HostileInput:
    tag = text.short_tag(str(node.tag))
    if node.tag in _SPECIAL and isinstance(node, yaml.ScalarNode) and not node.style:
        message = (
            f"the plain value {node.value!r} has a special meaning in YAML: quote it "
            f"('{node.value}') to keep it as text"
        )
    elif any(node.tag in tags for tags in _TAGS_OF.values()):
        message = f"tag {tag} does not fit {_KIND_OF_NODE[type(node)]}: remove the tag"
    else:
        message = (
            f"tag {tag} is not allowed: only plain YAML (mappings, lists, strings, numbers, "
            "booleans) is loaded"
        )
    return HostileInput(message, mark_of(node.start_mark))
