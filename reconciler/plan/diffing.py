"""Attribute-level differences between two account records, compared directly.

A MODIFY compares three fields: name, email (as values) and role_ids (as sets). A direct
comparison costs well under a microsecond a record where a generic nested diff cost about
100 µs, so planning 100k modified accounts stays near the parse's time; DeepDiff is kept
for differences a person reads (``reconciler.stores.comparing``), never the plan path.
"""

from __future__ import annotations

from reconciler.plan.model import Field, FieldChange
from reconciler.stores.model import AccountRecord

COMPARED = ("name", "email", "role_ids")


def field_changes(
    before: AccountRecord, after: AccountRecord
) -> tuple[tuple[FieldChange, ...], tuple[str, ...], tuple[str, ...]]:
    """(name/email changes, in ``Field`` order, role ids added, role ids removed)."""
    # Each field spelled out: a loop over ``Field`` with getattr cost more than the
    # comparisons on 100k modified accounts (a test keeps the two in step).
    fields: tuple[FieldChange, ...] = ()
    if before.name != after.name:
        fields = (FieldChange(field=Field.NAME, before=before.name, after=after.name),)
    if before.email != after.email:
        fields += (FieldChange(field=Field.EMAIL, before=before.email, after=after.email),)
    if before.role_ids == after.role_ids:
        return fields, (), ()
    old, new = set(before.role_ids), set(after.role_ids)
    return fields, tuple(sorted(new - old)), tuple(sorted(old - new))
