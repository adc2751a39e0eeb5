"""Every violation of a JSON Schema, worded: the report of a document the fast check refused.

``schemas`` answers "valid?" with the fast check; only when that says no does this module
load to walk the document and report every error with its path, in reconciler's words
(see ``schemas``). A valid input never creates its class. The walk is ``schema_walk``'s
for a schema whose keywords it knows (the desired state's, the state's), jsonschema's for
any other (the plan's): jsonschema is imported only then.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

from reconciler import schema_walk, schemas
from reconciler.errors import excerpt
from reconciler.values import frozen

if TYPE_CHECKING:
    import jsonschema

    from reconciler.schemas import Refused


@frozen
class SchemaError:
    """One schema violation: where (a path into the document), what, and the facts behind
    the message (the keyword, what it asks for, the value found) for callers to reword."""

    path: tuple[str | int, ...]
    message: str
    on_key: bool = False  # the problem is the key itself (e.g. an unknown property)
    keyword: str = ""  # the JSON Schema keyword that failed ("type", "pattern", ...)
    expected: Any = None  # that keyword's value in the schema
    instance: Any = None  # the value that failed it


@functools.cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    import jsonschema  # noqa: PLC0415 - only a schema the walker does not know needs it

    schema = schemas.load(name)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=None)


class _Violation(Protocol):
    """What the report reads of a violation: jsonschema's ValidationError, or
    ``schema_walk.Violation`` (the same attributes)."""

    @property
    def validator(self) -> Any: ...  # the keyword
    @property
    def validator_value(self) -> Any: ...
    @property
    def instance(self) -> Any: ...
    @property
    def schema(self) -> Any: ...  # the schema holding the keyword
    @property
    def absolute_path(self) -> Sequence[str | int]: ...
    @property
    def absolute_schema_path(self) -> Iterable[Any]: ...
    @property
    def context(self) -> Sequence[_Violation]: ...  # anyOf/oneOf: each branch's violations


@functools.cache
def _every_error(name: str) -> Callable[[Any], Iterable[_Violation]]:
    """What walks a document for every violation of schema ``name``: reconciler's own
    walker (``schema_walk``) when the schema uses only keywords it knows, else jsonschema,
    whose import costs more than validating 20k users' 200 problems."""
    schema = schemas.load(name)
    if schema_walk.walks(schema):
        return functools.partial(schema_walk.iter_errors, schema)
    return cast(Callable[[Any], Iterable[_Violation]], _validator(name).iter_errors)


# Our own words for each keyword: never the validator's message text, which changes
# between releases. A schema's ``x-messages`` (keyed by keyword) overrides these.
_GENERIC = {
    "const": "must be {expected} (got {value})",
    "enum": "must be one of {expected} (got {value})",
    "minimum": "{value} is less than the minimum of {expected}",
    "maximum": "{value} is more than the maximum of {expected}",
    "exclusiveMinimum": "{value} must be more than {expected}",
    "exclusiveMaximum": "{value} must be less than {expected}",
    "minLength": "{value} is shorter than {expected} characters",
    "maxLength": "{value} is longer than {expected} characters",
    "pattern": "{value} is not in the allowed form",
    "minItems": "needs at least {expected} items",
    "maxItems": "has more than {expected} items",
    "minProperties": "needs at least {expected} keys",
    "not": "{value} is not allowed here",
}


def _message(error: _Violation) -> str:
    keyword, expected = str(error.validator), error.validator_value
    custom = error.schema.get("x-messages", {}) if isinstance(error.schema, dict) else {}
    template = custom.get(keyword) or _GENERIC.get(keyword)
    if template:
        return str(template).format(value=excerpt(error.instance), expected=expected)
    if keyword == "type":
        return f"expected {expected}, got {_describe(error.instance)}"
    return f"{excerpt(error.instance)} breaks the schema rule `{keyword}`"


def _unknown_keys(error: _Violation) -> str:
    extra = sorted(str(key) for key in error.instance if key not in error.schema["properties"])
    allowed = ", ".join(sorted(error.schema["properties"]))
    return f"unknown key {', '.join(excerpt(k) for k in extra)} (allowed: {allowed})"


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"number {excerpt(value)}"
    if isinstance(value, str):
        return f"string {excerpt(value)}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _found(leaf: _Violation) -> list[SchemaError]:
    """The SchemaErrors of one violation, located at what is wrong."""
    path = tuple(leaf.absolute_path)
    facts = {"keyword": str(leaf.validator), "expected": leaf.validator_value}
    if leaf.validator == "required" and isinstance(leaf.instance, dict):
        return [
            SchemaError(path=path, message=f"{key!r} is required", **facts, instance=leaf.instance)
            for key in leaf.validator_value
            if key not in leaf.instance
        ]
    if leaf.validator == "additionalProperties" and isinstance(leaf.instance, dict):
        props = leaf.schema.get("properties", {})
        return [
            SchemaError(
                path=(*path, key), message=_unknown_keys(leaf), on_key=True, **facts, instance=key
            )
            for key in leaf.instance
            if key not in props
        ]
    on_key = False
    if "propertyNames" in leaf.absolute_schema_path:
        # jsonschema reports a bad key at its parent; point at the key itself.
        path, on_key = (*path, str(leaf.instance)), True
    return [
        SchemaError(
            path=path, message=_message(leaf), on_key=on_key, **facts, instance=leaf.instance
        )
    ]


def every(name: str, document: Any, fast: Refused) -> tuple[SchemaError, ...]:
    """Every violation of schema ``name`` in ``document``, which the fast check refused
    (``fast``: what it raised, reported should the walk find nothing)."""
    return report(_every_error(name)(document), fast)


def report(violations: Iterable[_Violation], fast: Refused) -> tuple[SchemaError, ...]:
    """The SchemaErrors of ``violations`` (a walk of a document the fast check refused,
    as ``fast``), sorted by path, each once; the fast finding when there is none."""
    found: dict[tuple[tuple[str | int, ...], str], SchemaError] = {}
    for error in violations:
        # One level of "anyOf/oneOf" context is enough to say what is wrong.
        leaves = [error]
        if error.context:
            deepest = max(len(sub.absolute_path) for sub in error.context)
            leaves = [sub for sub in error.context if len(sub.absolute_path) == deepest] or leaves
        for leaf in leaves:
            for item in _found(leaf):
                found.setdefault((item.path, item.message), item)
    if not found:
        # The two validators disagree: fail closed, at the place the fast one names.
        path = tuple(part for part in fast.path[1:] if isinstance(part, (str, int)))
        rule = str(fast.rule or "schema")
        return (SchemaError(path=path, message=f"breaks the schema rule `{rule}`", keyword=rule),)
    return tuple(sorted(found.values(), key=lambda e: [str(p) for p in e.path]))
