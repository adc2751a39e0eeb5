"""The one format_version table every reader answers: saved plans and both state backends.

``tests/test_format_versions.py`` runs it over the pure readers, ``tests/test_store_contract.py``
over both state backends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from reconciler.errors import ReconcilerError
from reconciler.formats import Verdict

Mutate = Callable[[dict[str, Any]], Any]


def _version(value: Any) -> Mutate:
    return lambda document: {**document, "format_version": value}


def _without_version(document: dict[str, Any]) -> Any:
    return {key: value for key, value in document.items() if key != "format_version"}


def versions(current: int) -> list[Any]:
    """The table for a reader whose newest (and, for plans, oldest) format is ``current``:
    (how the document is changed, the verdict, the message after the document's name, with
    <kind> for what it should be); the same text for a plan and a state."""
    return [
        pytest.param(_version(current), Verdict.SUPPORTED, "", id="current"),
        pytest.param(
            _version(current + 1),
            Verdict.NEWER,
            f" was written by a newer reconciler (<kind> format_version {current + 1}; "
            f"this reconciler reads up to {current})",
            id="newer",
        ),
        pytest.param(
            _version(10**12),
            Verdict.NEWER,
            " was written by a newer reconciler (<kind> format_version 1000000000000; "
            f"this reconciler reads up to {current})",
            id="much-newer",
        ),
        pytest.param(
            _without_version,
            Verdict.INVALID,
            " is not a valid <kind>: format_version is missing",
            id="missing",
        ),
        *(
            pytest.param(
                _version(value),
                Verdict.INVALID,
                " is not a valid <kind>: format_version must be a whole number from 1, "
                f"not {shown}",
                id=name,
            )
            for name, value, shown in [
                ("zero", 0, "0"),
                ("negative", -1, "-1"),
                ("true", True, "true"),
                ("false", False, "false"),
                ("null", None, "null"),
                ("string", "1", '"1"'),
                ("float", 1.0, "1.0"),
                ("list", [1], "[1]"),
                ("long-object", {"v": "x" * 99}, '{"v": "' + "x" * 32 + "…"),
            ]
        ),
        pytest.param(
            lambda document: [document],
            Verdict.INVALID,
            " is not a valid <kind>: it is not a JSON object",
            id="not-an-object",
        ),
    ]


VERSIONS = versions(3)  # the state's format (3: the recorded policy)
PLAN_VERSIONS = versions(4)  # the saved plan's format (4: the policy review)


def check_answer(
    caught: ReconcilerError | None, verdict: Verdict, tail: str, *, subject: str, kind: str
) -> None:
    """``caught`` is what the table expects: nothing, or the message and the kind of hint."""
    if verdict is Verdict.SUPPORTED:
        assert caught is None
        return
    assert caught is not None, f"expected {verdict.value} to be refused"
    assert caught.message == subject + tail.replace("<kind>", kind)
    upgrade = (caught.hint or "").startswith("upgrade reconciler")
    assert upgrade is (verdict is Verdict.NEWER), caught.hint
