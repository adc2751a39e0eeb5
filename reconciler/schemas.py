"""The JSON Schemas in ``schemas/``: with ``schema_errors``, the only modules that import
jsonschema or fastjsonschema.

Fast path: the schema compiled by fastjsonschema answers "valid?" in a fraction of the
time jsonschema takes on 100k users. Only when that says no is the document walked to
report every error with its path (``schema_errors``): by ``schema_walk`` for a schema whose
keywords it knows (the desired state's, the state's: no jsonschema import, which costs
more than the walk), else by jsonschema (the plan's). fastjsonschema knows draft-07, so the
compiled copy is declared draft-07; the schemas use only keywords both drafts share.

Messages are ours, never the validators' text: ``x-messages`` in the schemas (keyed by
keyword), else a generic one made from the keyword, its value and the instance, every
echoed value clipped (``errors.excerpt``). The fast check and the walk must agree: should
the walk ever find nothing where fastjsonschema refused, the fast one's finding is
reported (fail closed). Patterns end in ``$(?!\\n)``: jsonschema searches with Python's
``$``, which also matches before a final newline (fastjsonschema rewrites it to ``\\Z``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
from collections.abc import Callable
from pathlib import Path

from reconciler.checks import refusal

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any

    import fastjsonschema

    from reconciler.schema_errors import SchemaError

    # What a fast check raises: fastjsonschema's own class, or refusal's of the same shape
    # (both carry the path and the keyword).
    Refused = refusal.JsonSchemaValueException | fastjsonschema.JsonSchemaValueException
    # validate, and what it raises
    _Check = tuple[Callable[[Any], Any], type[Refused]]

_DRAFT07 = "http://json-schema.org/draft-07/schema#"


def schema_path(name: str) -> Path:
    """Where ``schemas/<name>.schema.json`` is: inside the wheel, or beside the package."""
    filename = f"{name}.schema.json"
    # The wheel installs schemas/ inside the package (pyproject's force-include). A plain
    # path: importlib.resources would load zipfile, tempfile and threading to say the same.
    here = Path(__file__).resolve().parent
    packaged = here / "schemas" / filename
    if packaged.is_file():
        return packaged
    return here.parent / "schemas" / filename


@functools.cache
def load(name: str) -> dict[str, Any]:
    """The parsed schema ``name`` (desired-state, state, plan)."""
    with schema_path(name).open(encoding="utf-8") as handle:
        loaded: dict[str, Any] = json.load(handle)
    return loaded


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """``node`` with every ``{"$ref": "#/$defs/x"}`` replaced by ``x`` (none is recursive)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if len(node) == 1 and isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {key: _inline(value, defs) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline(value, defs) for value in node]
    return node


# The fast checks generated ahead of time (``reconciler.checks``): (schema, $defs part or
# None for the whole schema) -> module. Any other check is compiled when first asked for.
GENERATED = {
    ("desired-state", None): "generated_desired_state",
    ("state", None): "generated_state",
    ("state", "account"): "generated_state_account",
    ("plan", None): "generated_plan",
}
_GENERATED_PACKAGE = "reconciler.checks"


def fast_schema(name: str, part: str | None = None) -> dict[str, Any]:
    """Schema ``name`` (or its ``$defs/<part>``) as the fast check compiles it: declared
    draft-07, without ``$id``, every local ``$ref`` inlined."""
    schema = load(name)
    defs = schema.get("$defs", {})
    if part is not None:
        return {"$schema": _DRAFT07, **_inline(defs[part], defs)}
    whole = dict(schema)
    whole["$schema"] = _DRAFT07
    whole.pop("$id", None)
    # fastjsonschema calls a function per $ref'd item and formats its error-path prefix
    # with str.format(**locals()) before validating: inlined, 100k users check 2x faster.
    inlined: dict[str, Any] = _inline(whole, defs)
    return inlined


def schema_digest(schema: dict[str, Any]) -> str:
    """sha256 hex of ``schema`` in canonical JSON: what a generated check was made from."""
    canonical = json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


@functools.cache
def _fast(name: str, part: str | None = None) -> _Check:
    """The fast check of schema ``name`` (or its part): the generated module when it was
    generated from exactly this schema, else the schema compiled now."""
    schema = fast_schema(name, part)
    module_name = GENERATED.get((name, part))
    if module_name is not None:
        module = importlib.import_module(f"{_GENERATED_PACKAGE}.{module_name}")
        if schema_digest(schema) == module.SCHEMA_DIGEST:
            return module.validate, refusal.JsonSchemaValueException
    import fastjsonschema  # noqa: PLC0415 - only a schema without a current generated check

    return fastjsonschema.compile(schema), fastjsonschema.JsonSchemaValueException


def generated_source(name: str, part: str | None = None) -> str:
    """The source of the generated check of schema ``name`` (or its part): fastjsonschema's
    code, raising :mod:`reconciler.checks.refusal`'s exceptions, headed by the digest of
    the schema it checks. Raises RuntimeError when the code needs more of fastjsonschema."""
    import fastjsonschema  # noqa: PLC0415 - generating is a development step

    schema = fast_schema(name, part)
    lines = fastjsonschema.compile_to_code(schema).splitlines()
    uses = [index for index, line in enumerate(lines) if "fastjsonschema" in line]
    prefix = "from fastjsonschema import "
    names = lines[uses[0]].removeprefix(prefix).split(", ") if len(uses) == 1 else []
    if (
        not names
        or not lines[uses[0]].startswith(prefix)
        or not all(hasattr(refusal, imported) for imported in names)
    ):
        raise RuntimeError(f"the check of {name} needs more of fastjsonschema: {uses}")
    lines[uses[0]] = f"from {refusal.__name__} import {', '.join(names)}"
    decimal = [index for index, line in enumerate(lines) if line == "from decimal import Decimal"]
    for index in decimal:  # see refusal.Decimal: importing decimal was part of start-up
        lines[index] = f"from {refusal.__name__} import Decimal"
    source = f"schemas/{name}.schema.json" + (f" ($defs/{part})" if part else "")
    header = [
        f"# Generated from {source} by fastjsonschema: do not edit.",
        "# Regenerate: python3 dev.py test tests/test_schema_checks.py --update-golden",
        "# mypy: ignore-errors",
        f'SCHEMA_DIGEST = "{schema_digest(schema)}"',
    ]
    return "\n".join([*header, *lines]) + "\n"


def _fast_error(name: str, document: Any) -> Refused | None:
    validate, refused = _fast(name)
    try:
        validate(document)
    except refused as exc:
        return exc
    return None


def is_valid(name: str, document: Any) -> bool:
    """Fast yes/no answer."""
    return _fast_error(name, document) is None


@functools.cache
def part_check(name: str, definition: str) -> Callable[[Any], bool]:
    """A fast yes/no check of one part of schema ``name``: its ``$defs/<definition>``.

    For a reader that checks a document's many like parts as it decodes them (a state's
    account records); the document without them still goes through the whole schema.
    """
    validate, refused = _fast(name, definition)

    def fits(value: Any) -> bool:
        try:
            validate(value)
        except refused:
            return False
        return True

    return fits


def errors(name: str, document: Any) -> tuple[SchemaError, ...]:
    """Every violation of schema ``name`` in ``document`` (empty when valid)."""
    fast = _fast_error(name, document)
    if fast is None:
        return ()
    # Only a refused document loads the report (and SchemaError's class).
    from reconciler import schema_errors  # noqa: PLC0415

    return schema_errors.every(name, document, fast)


def check(name: str, document: Any) -> tuple[str, ...]:
    """Violations as ``path: message`` strings (for state and plan files)."""
    return tuple(
        f"{'/'.join(str(p) for p in e.path) or '(root)'}: {e.message}"
        for e in errors(name, document)
    )
