"""The generated fast checks (reconciler/checks): current, used, and as strict as compiling.

Each module in ``reconciler/checks/generated_*.py`` is fastjsonschema's code for one schema
of ``schemas/``; ``--update-golden`` writes them again after a schema changed.
"""

from __future__ import annotations

import copy
import importlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest
import yaml

from reconciler import schema_errors, schema_walk, schemas
from reconciler.checks import refusal
from reconciler.stores import model
from tests.support import builders

ROOT = Path(__file__).resolve().parent.parent
CHECKS = ROOT / "reconciler" / "checks"


def _module_path(module: str) -> Path:
    return CHECKS / f"{module}.py"


@pytest.mark.parametrize(("key", "module"), list(schemas.GENERATED.items()), ids=str)
def test_each_generated_check_is_current(
    request: pytest.FixtureRequest, key: tuple[str, str | None], module: str
) -> None:
    """A check generated from another version of its schema fails here (regenerate it)."""
    name, part = key
    path = _module_path(module)
    if request.config.getoption("--update-golden"):
        path.write_text(schemas.generated_source(name, part), encoding="utf-8")
    wanted = f'SCHEMA_DIGEST = "{schemas.schema_digest(schemas.fast_schema(name, part))}"'
    assert path.is_file(), f"{path} is missing: run pytest {__file__} --update-golden"
    assert wanted in path.read_text(encoding="utf-8").splitlines(), (
        f"{path.name} was generated from another {name} schema: "
        f"run `python3 dev.py test tests/test_schema_checks.py --update-golden`"
    )


def test_the_fast_path_uses_the_generated_modules() -> None:
    """A current module is what answers, raising refusal's exception."""
    for (name, part), module in schemas.GENERATED.items():
        validate, refused = schemas._fast(name, part)
        assert validate is importlib.import_module(f"reconciler.checks.{module}").validate
        assert refused is refusal.JsonSchemaValueException


def test_a_stale_module_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """A module generated from another schema never answers for this one: the schema is
    compiled instead (a development checkout whose schema was edited)."""
    module = importlib.import_module("reconciler.checks.generated_desired_state")
    monkeypatch.setattr(module, "SCHEMA_DIGEST", "0" * 64)
    schemas._fast.cache_clear()
    try:
        validate, refused = schemas._fast("desired-state")
        assert validate is not module.validate
        assert refused is fastjsonschema.JsonSchemaValueException
        assert not schemas.is_valid("desired-state", {"version": 2})
        assert schemas.is_valid("desired-state", {"version": 1})
    finally:
        schemas._fast.cache_clear()


def test_generating_refuses_code_that_needs_more_of_fastjsonschema(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Code importing anything but the two exceptions is not written as a check."""

    def code(_: Any) -> str:
        return "from fastjsonschema import something_else\ndef validate(data): return data\n"

    monkeypatch.setattr(fastjsonschema, "compile_to_code", code)
    with pytest.raises(RuntimeError, match="needs more of fastjsonschema"):
        schemas.generated_source("desired-state")


# -- the generated checks answer as the schema compiled now does ------------------------


def _examples() -> list[dict[str, Any]]:
    documents = []
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        documents.append(json.loads(json.dumps(data, default=str)))  # dates as text
    return documents


def _variants(document: Any, most: int = 400) -> Iterator[Any]:
    """``document`` with one value at a time replaced by something of another type, empty,
    too long or oddly spelt, or an unknown key added to a mapping; at most ``most`` of
    them, spread over the document."""
    odd: list[Any] = [None, True, 0, -1, 1.5, "", "x" * 600, "a\n", [], {}, "2026-13-45"]
    unknown = object()  # marks "add a key" rather than "replace the value"

    def walk(node: Any, path: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
        yield path
        if isinstance(node, dict):
            for key, value in node.items():
                yield from walk(value, (*path, key))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                yield from walk(value, (*path, index))

    edits = [(path, value) for path in walk(document, ()) if path for value in [*odd, unknown]]
    for path, value in edits[:: max(1, len(edits) // most)]:
        changed = copy.deepcopy(document)
        target = changed
        for step in path[:-1]:
            target = target[step]
        if value is not unknown:
            target[path[-1]] = value
        elif isinstance(target[path[-1]], dict):
            target[path[-1]]["unexpected"] = 1
        else:
            continue
        yield changed


def _answer(validate: Any, refused: type[Exception], document: Any) -> tuple[Any, ...]:
    try:
        validate(document)
    except refused as exc:
        return (False, tuple(exc.path), exc.rule)  # type: ignore[attr-defined]  # both classes
    return (True,)


def _state_documents() -> list[dict[str, Any]]:
    return [model.to_json(builders.sample_state())]


def _records() -> list[dict[str, Any]]:
    return list(_state_documents()[0]["accounts"].values())


def _plan_documents() -> list[dict[str, Any]]:
    golden = ROOT / "tests" / "golden"
    return [json.loads((golden / f"plan-{n}.json").read_text()) for n in ("small",)]


@pytest.mark.parametrize(
    ("key", "documents"),
    [
        pytest.param(("desired-state", None), _examples(), id="desired-state"),
        pytest.param(("state", None), _state_documents(), id="state"),
        pytest.param(("state", "account"), _records(), id="state-account"),
        pytest.param(("plan", None), _plan_documents(), id="plan"),
    ],
)
def test_generated_and_compiled_checks_agree(
    key: tuple[str, str | None], documents: list[Any]
) -> None:
    """On the examples and hundreds of variants of them, the generated check refuses what
    the compiled schema refuses, at the same place, for the same rule."""
    generated, refused = schemas._fast(*key)
    compiled = fastjsonschema.compile(schemas.fast_schema(*key))
    seen = 0
    for document in documents:
        for variant in [document, *_variants(document)]:
            seen += 1
            assert _answer(generated, refused, variant) == _answer(
                compiled, fastjsonschema.JsonSchemaValueException, variant
            )
    assert seen > 50


# -- every error: schema_walk reports what jsonschema reports ---------------------------

HOSTILE_DESIRED: list[Any] = [
    {"version": True, "users": [], "roles": {}},
    {"version": 1.0, "policy": {"max_disable": {}, "expiry_notice_days": 5.0}},
    {
        "version": 1,
        "roles": {"-bad": {"id": 7}, "ok": {"id": "1", "sensitive": "yes", "x": 1}, "e": 5},
        "policy": {
            "max_grant_days": {"ok": True, "-bad": 0, "big": 3661, "whole": 5.0, "f": 1.5},
            "max_disable": {"count": -1, "percent": 101, "other": 1},
            "protected_accounts": ["ok", "", "a b", 5],
            "timezone": "",
        },
        "provisioning": {"retry_failed": 1, "max_attempts": 0, "x": None},
    },
    {
        "version": 2,
        "users": [
            {"account": "", "name": "", "email": "", "roles": "agent"},
            {"account": "a" * 51, "name": "n<", "email": "x@y", "roles": [1, {}, {"role": 1}]},
            {"account": "ok", "name": "n", "email": "a@b.c", "roles": ["r"] * 11, "e": 1},
            {"roles": [{"role": "r", "until": "2026-1-1", "x": 1}, {"until": 5}], "expires": 1},
            {"account": True, "name": 5, "email": None, "roles": None, "enabled": "no"},
            "not a mapping",
            None,
        ],
    },
    {"version": 1, 5: "x", None: 1, True: [], "roles": {7: {"id": "1"}, 1.5: {"id": 2}}},
    {"version": 1, "users": [{1: "a", "account": "a", "name": "n", "email": "a@b.c", "roles": []}]},
    {
        "version": 1,
        "policy": {
            "max_disable": {"percent": float("nan"), "count": float("inf")},
            "expiry_notice_days": float("-inf"),
            "max_grant_days": {"a": float("nan"), "b": 1e400},
        },
        "provisioning": {"max_attempts": float("nan")},
    },
    {"version": 1, "roles": {None: {"id": 5}}, "policy": {"max_grant_days": {None: 0}}},
    [],
    "text",
]
HOSTILE_STATE: list[Any] = [
    {"policy": {"protected_accounts": [1, float("nan"), 1]}},
    {"policy": {"protected_accounts": [[1], [float("nan")], [1]]}},
    {"policy": {"protected_accounts": ["a", True, 1, "a"], "sensitive_roles": [1, 1.0]}},
    {"policy": {"protected_accounts": [{"a": 1}, {"a": 1.0}, [True], [1]]}},
]


def _violations(walk: Any) -> list[tuple[Any, ...]]:
    """A walk's violations as comparable facts, in a fixed order."""
    facts = [
        (
            tuple(repr(part) for part in error.absolute_path),
            str(error.validator),
            "propertyNames" in error.absolute_schema_path,
            repr(error.validator_value),
            repr(error.instance),
            json.dumps(error.schema, sort_keys=True),
            len(error.context),
        )
        for error in walk
    ]
    return sorted(facts)


def _combined(document: Any) -> Iterator[Any]:
    """Several variants' edits at once: documents with many problems together."""
    merged = copy.deepcopy(document)
    for index, variant in enumerate(_variants(document, most=120)):
        if index % 9 == 0 and isinstance(variant, dict) and isinstance(merged, dict):
            for key, value in variant.items():
                if merged.get(key) != value:
                    merged[key] = copy.deepcopy(value)
            yield copy.deepcopy(merged)


@pytest.mark.parametrize(
    ("name", "documents"),
    [
        pytest.param("desired-state", [*_examples(), *HOSTILE_DESIRED], id="desired-state"),
        pytest.param(
            "state",
            [*_state_documents(), *({**_state_documents()[0], **h} for h in HOSTILE_STATE)],
            id="state",
        ),
    ],
)
def test_the_walker_reports_what_jsonschema_reports(name: str, documents: list[Any]) -> None:
    """On the examples, hostile documents and hundreds of variants, schema_walk yields
    jsonschema's violations (place, keyword, value, schema) and the same SchemaErrors."""
    schema = schemas.load(name)
    assert schema_walk.walks(schema)
    jsonschema_walk = schema_errors._validator(name).iter_errors
    refused = 0
    for document in documents:
        for variant in [document, *_variants(document), *_combined(document)]:
            ours = _violations(schema_walk.iter_errors(schema, variant))
            assert ours == _violations(jsonschema_walk(variant))
            fast = schemas._fast_error(name, variant)
            assert (fast is None) == (not ours)
            if fast is not None:
                refused += 1
                # By repr: a NaN instance is equal to itself only as the same object, and
                # a dataclass's __eq__ compares fields with == from Python 3.13 on.
                ours_report = schema_errors.report(schema_walk.iter_errors(schema, variant), fast)
                theirs_report = schema_errors.report(jsonschema_walk(variant), fast)
                assert list(map(repr, ours_report)) == list(map(repr, theirs_report))
    assert refused > 50


def test_a_schema_the_walker_does_not_know_goes_to_jsonschema() -> None:
    """A keyword, a type or a $ref the walker does not know: jsonschema walks that schema."""
    assert not schema_walk.walks(schemas.load("plan"))  # oneOf
    for unknown in (
        {"type": "object", "anyOf": [{"required": ["a"]}]},
        {"type": "decimal"},
        {"$ref": "https://example.com/other.json"},
        {"$ref": "#/$defs/missing"},
        {"properties": {"a": {"format": "email"}}},
        {"items": True},
    ):
        assert not schema_walk.walks(unknown)
    assert schema_walk.walks({"type": ["string", "null"], "x-messages": {}, "title": "t"})


@pytest.mark.parametrize("name", ["desired-state", "state", "plan"])
def test_each_schema_is_valid_for_its_draft(name: str) -> None:
    """Each shipped schema passes its metaschema (jsonschema's check_schema, which a run
    no longer does for the schemas the walker reports on)."""
    assert schema_errors._validator(name).schema == schemas.load(name)  # _validator checks it
