"""Attribute-level differences between two account records: the only deepdiff user.

The planner compares records by value first (cheap tuple equality), and only the
records that differ come here, which keeps DeepDiff off the hot path.
"""

from __future__ import annotations

from typing import Any

from deepdiff import DeepDiff

from reconciler.plan.model import Field, FieldChange
from reconciler.stores.model import AccountRecord

COMPARED = ("name", "email", "role_ids")


def _view(record: AccountRecord) -> dict[str, Any]:
    return {"name": record.name, "email": record.email, "role_ids": sorted(record.role_ids)}


def field_changes(
    before: AccountRecord, after: AccountRecord
) -> tuple[tuple[FieldChange, ...], tuple[str, ...], tuple[str, ...]]:
    """(name/email changes, role ids added, role ids removed)."""
    # role_ids are sorted in the view, so order-sensitive comparison is exact and 2x faster.
    diff = DeepDiff(_view(before), _view(after), view="tree")
    changed: set[str] = set()
    for items in diff.values():
        for item in items:
            changed.add(str(item.path(output_format="list")[0]))
    fields = tuple(
        FieldChange(field=field, before=getattr(before, field), after=getattr(after, field))
        for field in Field
        if field in changed
    )
    if "role_ids" not in changed:
        return fields, (), ()
    old, new = set(before.role_ids), set(after.role_ids)
    return fields, tuple(sorted(new - old)), tuple(sorted(old - new))
