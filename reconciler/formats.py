"""The ``format_version`` of the documents reconciler writes: one rule for states and plans.

Every reader checks the version before the schema (a newer document may have another
shape, and "upgrade" is the useful answer, not a list of schema errors)::

    format_version                           verdict     the reader raises (its own class)
    1 .. the newest this reconciler writes   SUPPORTED   nothing: the schema check follows
    a larger integer                         NEWER       "... written by a newer reconciler"
    missing, not an integer, a boolean,      INVALID     "... is not a valid <kind>: ..."
    zero or negative; or no JSON object

States raise StateCorrupt and plans PlanError, with the same wording and the caller's hint.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

from reconciler.errors import ReconcilerError

_SHOWN_CHARS = 40  # a hand-edited version could be anything: name it, briefly


class Verdict(enum.Enum):
    """What a document's ``format_version`` means to this reconciler."""

    SUPPORTED = "supported"
    NEWER = "newer"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True, kw_only=True)
class VersionCheck:
    """The verdict on one document and, unless supported, what is wrong with it."""

    verdict: Verdict
    problem: str = ""


def classify(document: Any, *, newest: int) -> VersionCheck:
    """The verdict on ``document``'s ``format_version`` when ``newest`` is the newest known."""
    if not isinstance(document, dict):
        return VersionCheck(verdict=Verdict.INVALID, problem="it is not a JSON object")
    if "format_version" not in document:
        return VersionCheck(verdict=Verdict.INVALID, problem="format_version is missing")
    version = document["format_version"]
    # bool is an int to Python, and JSON's `true` must not pass for version 1.
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        return VersionCheck(
            verdict=Verdict.INVALID,
            problem=f"format_version must be a whole number from 1, not {_shown(version)}",
        )
    if version > newest:
        return VersionCheck(
            verdict=Verdict.NEWER,
            problem=f"format_version {_shown(version)}; this reconciler reads up to {newest}",
        )
    return VersionCheck(verdict=Verdict.SUPPORTED)


def require_supported(
    document: Any,
    *,
    subject: str,
    kind: str,
    newest: int,
    error: type[ReconcilerError],
    invalid_hint: str,
    upgrade_hint: str,
) -> None:
    """Raise ``error`` unless ``document``'s format_version is one this reconciler reads.

    ``subject`` names the document (``state PATH``, ``PATH``), ``kind`` says what it
    should be (``state``, ``saved plan``).
    """
    check = classify(document, newest=newest)
    match check.verdict:
        case Verdict.SUPPORTED:
            return
        case Verdict.NEWER:
            raise error(
                f"{subject} was written by a newer reconciler ({kind} {check.problem})",
                hint=upgrade_hint,
            )
        case Verdict.INVALID:
            raise error(f"{subject} is not a valid {kind}: {check.problem}", hint=invalid_hint)


def _shown(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):  # not JSON at all (only from Python callers)
        text = type(value).__name__
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"
