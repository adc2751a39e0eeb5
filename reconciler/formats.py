"""Reading back the documents reconciler writes: one rule for states and saved plans.

A reader checks ``format_version`` before the schema (a newer document may have another
shape, and "upgrade" is the useful answer, not a list of schema errors)::

    format_version                           verdict     the reader raises
    the oldest .. the newest it reads        SUPPORTED   nothing, if the schema holds
    a larger integer                         NEWER       "... written by a newer reconciler"
    from 1 up to below the oldest it reads   OLDER       "... made by an older reconciler"
    missing, not an integer, a boolean,      INVALID     "... is not a valid <kind>: ..."
    zero or negative; or no JSON object

A state reads every version from 1 (older ones are migrated on read); a saved plan only
its own version (a plan is short-lived: the answer to an old one is to plan again).

A supported document that breaks its schema (``schemas/<name>.schema.json``) is invalid
too. A state is refused with StateCorrupt, a plan with PlanError: the same wording, each
kind's own hints.
"""

from __future__ import annotations

import enum
import json
from typing import Any

from reconciler import schemas
from reconciler.errors import PlanError, ReconcilerError, StateCorrupt
from reconciler.values import frozen

_SHOWN_CHARS = 40  # a hand-edited version could be anything: name it, briefly


class Kind(enum.Enum):
    """The documents reconciler writes and reads back; the value is what messages call it."""

    STATE = "state"
    PLAN = "saved plan"

    @property
    def schema(self) -> str:
        """The name of its schema in ``schemas/``."""
        match self:
            case Kind.STATE:
                return "state"
            case Kind.PLAN:
                return "plan"


class Verdict(enum.Enum):
    """What a document's ``format_version`` means to this reconciler."""

    SUPPORTED = "supported"
    NEWER = "newer"
    OLDER = "older"
    INVALID = "invalid"


def check(
    document: Any,
    *,
    kind: Kind,
    subject: str,
    newest: int,
    oldest: int = 1,
    repair_hint: str = "",
    schema_checked: bool = False,
) -> None:
    """Raise the error of ``kind`` unless ``document`` is one this reconciler can read.

    ``subject`` names the document in the message (``state PATH``), ``newest`` and
    ``oldest`` bound the format_versions of ``kind`` it reads, ``repair_hint`` replaces the
    kind's own hint for an invalid document (a backend knows a better step).
    ``schema_checked``: these very bytes passed the schema before (a store's check record).
    """
    other = _other_kind(document, kind)
    if other is not None:
        # Before the version: a plan's version judged as a state's reads as "upgrade".
        message = f"{subject} is a {other.value}, not a {kind.value}"
        raise _refusal(kind, message, newer=False, repair_hint=_WRONG_KIND_HINTS[kind])
    version = classify(document, newest=newest, oldest=oldest)
    match version.verdict:
        case Verdict.NEWER:
            writer = f"a newer reconciler ({kind.value} {version.problem})"
            message = f"{subject} was written by {writer}"
            raise _refusal(kind, message, newer=True, repair_hint=repair_hint)
        case Verdict.OLDER:
            message = f"{subject} was made by an older reconciler ({version.problem})"
            raise _refusal(kind, message, newer=False, repair_hint=_OLDER_HINTS[kind])
        case Verdict.INVALID:
            problem = version.problem
        case Verdict.SUPPORTED:
            problems = () if schema_checked else schemas.check(kind.schema, document)
            if not problems:
                return
            problem = problems[0]
    message = f"{subject} is not a valid {kind.value}: {problem}"
    raise _refusal(kind, message, newer=False, repair_hint=repair_hint)


@frozen
class VersionCheck:
    """The verdict on one document and, unless supported, what is wrong with it."""

    verdict: Verdict
    problem: str = ""


def classify(document: Any, *, newest: int, oldest: int = 1) -> VersionCheck:
    """The verdict on ``document``'s ``format_version`` when ``oldest..newest`` are read."""
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
    if version < oldest:
        return VersionCheck(
            verdict=Verdict.OLDER,
            problem=f"format_version {version}; this reconciler reads {oldest} and later",
        )
    return VersionCheck(verdict=Verdict.SUPPORTED)


_STATE_REPAIR = "restore it from its backup or fix it by hand; it was not modified"
_PLAN_REPAIR = "save plans with `reconciler plan --out FILE`, and do not edit them"
_OLDER_HINTS = {
    Kind.STATE: "",  # never raised: a state reads every version from 1
    Kind.PLAN: "plan again with `reconciler plan --out FILE` and review the new plan",
}


_WRONG_KIND_HINTS = {
    Kind.STATE: "a state is a state file or a `reconciler state pull` document: check the "
    "location given (--state, RECONCILER_STATE or the operand); nothing was modified",
    Kind.PLAN: "a saved plan is the file `reconciler plan --out FILE` wrote; a state is shown "
    "by `reconciler state list` and compared by `reconciler state diff`",
}
# A key only the other kind has at its top level (the schemas require it there).
_MARKS = {Kind.STATE: "lineage", Kind.PLAN: "changes_digest"}


def _other_kind(document: Any, kind: Kind) -> Kind | None:
    """The other kind of document ``document`` plainly is, if it is one (else None)."""
    if not isinstance(document, dict):
        return None
    for other, mark in _MARKS.items():
        if other is not kind and mark in document and _MARKS[kind] not in document:
            return other
    return None


def _refusal(kind: Kind, message: str, *, newer: bool, repair_hint: str) -> ReconcilerError:
    """The error a reader of ``kind`` raises, with the hint for a newer or a bad document."""
    match kind:
        case Kind.STATE:
            upgrade = "upgrade reconciler; the state was not modified"
            return StateCorrupt(message, hint=upgrade if newer else repair_hint or _STATE_REPAIR)
        case Kind.PLAN:
            upgrade = "upgrade reconciler or plan again"
            return PlanError(message, hint=upgrade if newer else repair_hint or _PLAN_REPAIR)


def _shown(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):  # not JSON at all (only from Python callers)
        text = type(value).__name__
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"
