"""PII redaction for plans posted where more people read them than should see personal data.

Redaction works on the plan value, so every rendering (text, Markdown, JSON) shows the
same hashes. Accounts stay readable; a redacted value becomes ``email:3f2a9c1e`` (the
first 8 hex digits of the value's sha256), stable across runs so reviewers can still
tell two values apart and see that one changed. A short unsalted hash hides a value
from a casual reader, not from someone who can guess it and hash the guess.
"""

from __future__ import annotations

import hashlib
from typing import Any

from reconciler.errors import UsageError
from reconciler.plan import planfile
from reconciler.plan.model import Change, FieldChange, Plan
from reconciler.stores.model import AccountRecord
from reconciler.values import replace

FIELDS = {"emails": "email", "names": "name"}  # --redact word -> record field
_HASH_DIGITS = 8


def parse(spec: str) -> tuple[str, ...]:
    """The ``--redact`` words in ``spec`` (``emails,names``), in canonical order."""
    words = {word.strip().lower() for word in spec.split(",") if word.strip()}
    unknown = sorted(words - set(FIELDS))
    if unknown or not words:
        raise UsageError(
            f"--redact: unknown field(s) {', '.join(repr(w) for w in unknown)}"
            if unknown
            else "--redact needs at least one field",
            hint=f"choose from: {', '.join(FIELDS)} (comma-separated, e.g. --redact emails,names)",
        )
    return tuple(word for word in FIELDS if word in words)


def mask(field: str, value: Any) -> Any:
    """``value`` as ``field:<short sha256>`` (empty and non-string values unchanged)."""
    if not isinstance(value, str) or not value:
        return value
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:_HASH_DIGITS]
    return f"{field}:{digest}"


def redact(plan: Plan, spec: str) -> Plan:
    """The plan with the fields named in ``spec`` replaced by stable short hashes."""
    words = parse(spec)
    fields = frozenset(FIELDS[word] for word in words)
    note = f"Redacted {' and '.join(words)}: shown as short hashes (the same value, the same hash)."
    # The digest shown stays the saved plan's, so a redacted review names what apply gets.
    digest = planfile.changes_digest(plan)
    return replace(
        plan,
        changes=tuple(_change(change, fields) for change in plan.changes),
        notes=(*plan.notes, note),
        extra={**plan.extra, "redacted": words, "changes_digest": digest},
    )


def _record(record: AccountRecord, fields: frozenset[str]) -> AccountRecord:
    return replace(
        record,
        name=mask("name", record.name) if "name" in fields else record.name,
        email=mask("email", record.email) if "email" in fields else record.email,
    )


def _change(change: Change, fields: frozenset[str]) -> Change:
    return replace(
        change,
        before=_record(change.before, fields) if change.before is not None else None,
        after=_record(change.after, fields),
        fields=tuple(
            FieldChange(field=f.field, before=mask(f.field, f.before), after=mask(f.field, f.after))
            if f.field in fields
            else f
            for f in change.fields
        ),
    )
