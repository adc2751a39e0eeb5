"""``state pull`` / ``state push``: the state document in and out of any store.

Both backends store the same document, so pulling from one and pushing to another
moves a state unchanged (lineage included). Push rules, like Terraform's:

* without ``force`` the stored state (if any) must have the same lineage and a serial
  lower than the pushed document's. The document is then written as the direct successor
  of the stored state (serial = stored + 1, or 1 into an empty store) through the store's
  compare-and-swap, so "every write is +1" holds and a write that raced us fails cleanly;
* with ``force`` anything parseable goes: another lineage, an older serial. It is written
  with serial ``max(stored + 1, document serial)`` so that every runner holding the old
  state, and every plan saved against it, sees a change and stops.

A stored state that is corrupt or of a newer format is refused even with ``force`` (the
store's read refuses it): it is evidence, moved aside by hand, never overwritten.
The caller holds the store's lock around :func:`push`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from reconciler.errors import StateConflict, StateError
from reconciler.stores import Store
from reconciler.stores import model as state_codec
from reconciler.stores.model import State


def pull(store: Store) -> dict[str, Any]:
    """The stored state as its JSON document; StateError when there is none."""
    current = store.read()
    if current is None:
        raise StateError(
            f"state {store.describe()} is empty: nothing to pull",
            hint="check --state / RECONCILER_STATE and --workspace",
        )
    return state_codec.to_json(current)


def push(store: Store, document: Any, *, force: bool = False) -> State:
    """Validate ``document`` and write it to ``store`` under the push rules; the result."""
    pushed = state_codec.from_json(document, where="document being pushed")
    current = store.read()
    where = store.describe()
    if current is None:
        serial = max(1, pushed.serial) if force else 1
    elif force:
        serial = max(current.serial + 1, pushed.serial)
    else:
        if current.lineage != pushed.lineage:
            raise StateConflict(
                f"state {where} has lineage {current.lineage}; the pushed document has "
                f"lineage {pushed.lineage}: it is another state; nothing was written",
                hint="pull the current state and work from it, or push --force to replace it",
            )
        if pushed.serial <= current.serial:
            raise StateConflict(
                f"state {where} is at serial {current.serial}; the pushed document's serial "
                f"{pushed.serial} is not newer; nothing was written",
                hint="pull the current state and work from it, or push --force to replace it",
            )
        serial = current.serial + 1
    written = replace(pushed, serial=serial)
    store.write(written, force=force)
    return written
