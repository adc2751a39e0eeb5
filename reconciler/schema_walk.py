"""Every violation of a schema in a document, for the keywords reconciler's schemas use.

``schema_errors`` reports every problem of a document the fast check refused. jsonschema
walks it for that, but importing it (referencing, attrs, rpds, every draft's metaschema)
and checking the schema cost more than a validate of 20k users spends on 200 problems.
This walker knows the keywords ``schemas/desired-state`` and ``schemas/state`` use, with
jsonschema's meaning (draft 2020-12): it yields what jsonschema's ``iter_errors`` yields
— the failing keyword, its value, the instance, the schema holding the keyword, the path
— in the same order. A schema with any other keyword (or a ``$ref`` that is not local) is
not its: :func:`walks` says so, and jsonschema is used (``schema_errors._validator``).

It never decides validity: the fast check does, and a document it refused is reported
even if this finds nothing (``schema_errors.report`` fails closed).
tests/test_schema_checks.py compares it with jsonschema on the examples, a state, hostile
documents and hundreds of variants of each.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from itertools import pairwise

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing on validate's path
if TYPE_CHECKING:
    from typing import Any

    Path_ = tuple[str | int, ...]

# Keywords that say nothing about validity (annotations, and the house's messages).
_ANNOTATIONS = frozenset(
    {"$schema", "$id", "$defs", "$comment", "title", "description", "examples", "default"}
)
_DEFS = "#/$defs/"


class Violation:
    """One failed keyword, with the attributes of jsonschema's ValidationError that
    ``schema_errors`` reads."""

    __slots__ = (
        "absolute_path",
        "absolute_schema_path",
        "context",
        "instance",
        "schema",
        "validator",
        "validator_value",
    )

    def __init__(
        self,
        keyword: str,
        schema: dict[str, Any],
        instance: Any,
        path: Path_,
        schema_path: Path_,
    ) -> None:
        self.validator = keyword
        self.validator_value = schema[keyword]
        self.instance = instance
        self.schema = schema
        self.absolute_path = path
        self.absolute_schema_path = (*schema_path, keyword)
        self.context: tuple[Violation, ...] = ()  # no anyOf/oneOf here

    def __repr__(self) -> str:
        return f"Violation({self.validator!r} at {self.absolute_path!r})"


def walks(schema: dict[str, Any]) -> bool:
    """Whether every keyword of ``schema`` (its ``$defs`` too) is one this walker knows."""
    return _known(schema, schema)


def _known(node: Any, root: dict[str, Any]) -> bool:
    if not isinstance(node, dict):
        return False  # a boolean schema (true/false) is jsonschema's
    for keyword, value in node.items():
        if keyword.startswith("x-") or keyword in _ANNOTATIONS:
            continue
        if keyword not in _KEYWORDS:
            return False
        if keyword == "type" and not _TYPES.issuperset(
            [value] if isinstance(value, str) else value
        ):
            return False
        if keyword == "$ref" and not _local(value, root):
            return False
        if keyword in _SUBSCHEMA and not (
            (value is False and keyword == "additionalProperties") or _known(value, root)
        ):
            return False
        if keyword == "properties" and not all(_known(s, root) for s in value.values()):
            return False
    return all(_known(d, root) for d in node.get("$defs", {}).values())


def _local(ref: Any, root: dict[str, Any]) -> bool:
    return (
        isinstance(ref, str)
        and ref.startswith(_DEFS)
        and isinstance(root.get("$defs", {}).get(ref.removeprefix(_DEFS)), dict)
    )


def iter_errors(schema: dict[str, Any], document: Any) -> Iterator[Violation]:
    """Each violation of ``schema`` (one :func:`walks` accepts) in ``document``."""
    return _Walk(schema).errors(schema, document, (), ())


class _Walk:
    """One walk of a document, resolving ``$ref`` against its root schema."""

    __slots__ = ("defs",)

    def __init__(self, root: dict[str, Any]) -> None:
        self.defs: dict[str, Any] = root.get("$defs", {})

    def errors(
        self, schema: dict[str, Any], instance: Any, path: Path_, spath: Path_
    ) -> Iterator[Violation]:
        """The violations of ``schema`` by ``instance``, keyword by keyword in the schema's
        order (jsonschema's)."""
        for keyword, value in schema.items():
            walk = _APPLICATORS.get(keyword)
            if walk is not None:
                yield from walk(self, schema, instance, path, spath)
                continue
            fails = _FAILS.get(keyword)
            if fails is not None and fails(value, instance):
                yield Violation(keyword, schema, instance, path, spath)

    def ref(
        self, schema: dict[str, Any], instance: Any, path: Path_, spath: Path_
    ) -> Iterator[Violation]:
        """``$ref``: the referred schema, at the same place in the document."""
        target = self.defs[schema["$ref"].removeprefix(_DEFS)]
        return self.errors(target, instance, path, (*spath, "$ref"))

    def properties(
        self, schema: dict[str, Any], instance: Any, path: Path_, spath: Path_
    ) -> Iterator[Violation]:
        """``properties``: each named key present, against its schema."""
        if isinstance(instance, dict):
            for name, sub in schema["properties"].items():
                if name in instance:
                    yield from self.errors(
                        sub, instance[name], (*path, name), (*spath, "properties", name)
                    )

    def additional(
        self, schema: dict[str, Any], instance: Any, path: Path_, spath: Path_
    ) -> Iterator[Violation]:
        """``additionalProperties``: one violation for the keys ``properties`` does not
        name (false), or each such key's value against the schema."""
        if not isinstance(instance, dict):
            return
        known, rule = schema.get("properties", {}), schema["additionalProperties"]
        extras = [key for key in instance if key not in known]
        if rule is False:
            if extras:
                yield Violation("additionalProperties", schema, instance, path, spath)
            return
        for key in extras:
            # jsonschema drops a None key from the path (its descend takes None for "no step")
            where = path if key is None else (*path, key)
            yield from self.errors(rule, instance[key], where, (*spath, "additionalProperties"))

    def items(
        self, schema: dict[str, Any], instance: Any, path: Path_, spath: Path_
    ) -> Iterator[Violation]:
        """``items``: each item of a list against the schema."""
        if isinstance(instance, list):
            for index, item in enumerate(instance):
                yield from self.errors(schema["items"], item, (*path, index), (*spath, "items"))

    def names(
        self, schema: dict[str, Any], instance: Any, path: Path_, spath: Path_
    ) -> Iterator[Violation]:
        """``propertyNames``: each key against the schema (the path stays at the mapping,
        as jsonschema keeps it)."""
        if isinstance(instance, dict):
            for key in instance:
                yield from self.errors(
                    schema["propertyNames"], key, path, (*spath, "propertyNames")
                )

    def required(
        self, schema: dict[str, Any], instance: Any, path: Path_, spath: Path_
    ) -> Iterator[Violation]:
        """``required``: one violation per missing key."""
        if isinstance(instance, dict):
            for name in schema["required"]:
                if name not in instance:
                    yield Violation("required", schema, instance, path, spath)


_APPLICATORS: dict[str, Callable[..., Iterator[Violation]]] = {
    "$ref": _Walk.ref,
    "properties": _Walk.properties,
    "additionalProperties": _Walk.additional,
    "items": _Walk.items,
    "propertyNames": _Walk.names,
    "required": _Walk.required,
}


# -- the leaf keywords: (the keyword's value, the instance) -> fails ---------------------


def _is_type(instance: Any, kind: str) -> bool:
    # jsonschema's draft 2020-12 type checker: bool is no number; 5.0 is an integer.
    if kind == "string":
        return isinstance(instance, str)
    if kind == "object":
        return isinstance(instance, dict)
    if kind == "array":
        return isinstance(instance, list)
    if kind == "boolean":
        return isinstance(instance, bool)
    if kind == "null":
        return instance is None
    if isinstance(instance, bool):
        return False
    if kind == "integer":
        return isinstance(instance, int) or (isinstance(instance, float) and instance.is_integer())
    if kind == "number":
        return isinstance(instance, (int, float))
    raise ValueError(f"unknown type {kind!r}")  # refused by walks(): never reached


def _type(kinds: Any, instance: Any) -> bool:
    if isinstance(kinds, str):
        return _is_type(instance, kinds)
    return any(_is_type(instance, kind) for kind in kinds)


def _equal(one: Any, two: Any) -> bool:
    """jsonschema's equality (``_utils.equal``): true is not 1, false is not 0, 1.0 is 1,
    deep for containers."""
    if one is two:
        return True
    if isinstance(one, str) or isinstance(two, str):
        return bool(one == two)
    if isinstance(one, list) and isinstance(two, list):
        return len(one) == len(two) and all(_equal(a, b) for a, b in zip(one, two, strict=True))
    if isinstance(one, Mapping) and isinstance(two, Mapping):
        return len(one) == len(two) and all(
            key in two and _equal(value, two[key]) for key, value in one.items()
        )
    return bool(_unbool(one) == _unbool(two))


_TRUE, _FALSE = object(), object()


def _unbool(value: Any) -> Any:
    """jsonschema's ``unbool``: true and false as values no number equals."""
    if value is True:
        return _TRUE
    if value is False:
        return _FALSE
    return value


def _unique(items: list[Any]) -> bool:
    """jsonschema's ``uniq``, step for step: neighbours of the sorted items compared (a NaN
    among them hides a repeat there too), all pairs when the items do not sort."""
    try:
        ordered = sorted(_unbool(item) for item in items)
        return not any(_equal(a, b) for a, b in pairwise(ordered))
    except (NotImplementedError, TypeError):
        seen: list[Any] = []
        for item in map(_unbool, items):
            if any(_equal(other, item) for other in seen):
                return False
            seen.append(item)
        return True


# Each says when the keyword FAILS, in jsonschema's own terms (``instance < minimum``, not
# ``not instance >= minimum``: NaN is neither, and jsonschema lets it pass).
_FAILS: dict[str, Callable[[Any, Any], bool]] = {
    "type": lambda value, instance: not _type(value, instance),
    "const": lambda value, instance: not _equal(instance, value),
    "enum": lambda value, instance: all(not _equal(each, instance) for each in value),
    "pattern": lambda value, instance: (
        isinstance(instance, str) and not re.search(value, instance)  # re caches it
    ),
    "minLength": lambda value, instance: isinstance(instance, str) and len(instance) < value,
    "maxLength": lambda value, instance: isinstance(instance, str) and len(instance) > value,
    "minItems": lambda value, instance: isinstance(instance, list) and len(instance) < value,
    "maxItems": lambda value, instance: isinstance(instance, list) and len(instance) > value,
    "uniqueItems": lambda value, instance: (
        bool(value) and isinstance(instance, list) and not _unique(instance)
    ),
    "minProperties": lambda value, instance: isinstance(instance, dict) and len(instance) < value,
    "minimum": lambda value, instance: _is_type(instance, "number") and instance < value,
    "maximum": lambda value, instance: _is_type(instance, "number") and instance > value,
}
_TYPES = frozenset({"string", "object", "array", "boolean", "null", "integer", "number"})
_SUBSCHEMA = frozenset({"additionalProperties", "items", "propertyNames"})
_KEYWORDS = frozenset({*_FAILS, *_APPLICATORS})
