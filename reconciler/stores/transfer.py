"""``state pull`` / ``state push``: the state document in and out of any store.

Both backends store the same document, so pulling from one and pushing to another
moves a state unchanged — lineage *and* serial, so history is never lost. Push rules:

* into an empty store the document is written as it is: its lineage and its serial (a
  file state at serial 46 is at 46 in PostgreSQL too, so an old copy of it can never
  pass for newer than the state that continued from it);
* into a store holding a state, without ``force``, the document must have the same
  lineage and a strictly newer serial, and is written with its own serial;
* with ``force`` anything parseable goes: another lineage, an older serial. It is written
  with serial ``max(stored + 1, document serial)`` so that every runner holding the old
  state, and every plan saved against it, sees a change and stops.

Every push is a compare-and-swap against the state it read, and a serial must leave room
for the writes after it: a document above ``LAST_STARTING_SERIAL`` (2^63-1 - 2^32) is
refused, even forced.
A stored state that is corrupt or of a newer format is refused even with ``force`` (the
store's read refuses it): it is evidence, moved aside by hand, never overwritten.
The caller holds the store's lock around :func:`push`.
"""

from __future__ import annotations

from typing import Any

from reconciler.errors import StateConflict, StateError
from reconciler.stores import Expected, Store
from reconciler.stores import model as state_codec
from reconciler.stores.model import LAST_STARTING_SERIAL, MAX_SERIAL, State
from reconciler.values import frozen, replace


@frozen
class Pushed:
    """What a push did: the state written, and the one it replaced (None: was empty)."""

    written: State
    replaced: State | None


def pull(store: Store) -> dict[str, Any]:
    """The stored state as its JSON document; StateError when there is none."""
    current = store.read()
    if current is None:
        raise StateError(
            f"{store.location.absent()}: nothing to pull",
            hint="check --state / RECONCILER_STATE and --workspace",
        )
    return state_codec.to_json(current)


def parse(document: Any) -> State:
    """The state a pushed document holds; StateCorrupt when it is not a valid one."""
    return state_codec.from_json(document, where="document being pushed")


def push(store: Store, document: Any, *, force: bool = False) -> Pushed:
    """Validate ``document`` and write it to ``store`` under the push rules."""
    pushed = parse(document)
    if pushed.serial > LAST_STARTING_SERIAL:
        raise StateError(
            f"the pushed document has serial {pushed.serial}, which leaves no room for a "
            f"later apply (one starts at serial {LAST_STARTING_SERIAL} at most; serials end "
            f"at {MAX_SERIAL}); nothing was written",
            hint=f"give the document a serial below {LAST_STARTING_SERIAL}, then push it "
            "into an empty store",
        )
    current = store.read()
    serial = pushed.serial
    if current is not None and force:
        serial = max(current.serial + 1, pushed.serial)
    elif current is not None:
        _check_newer(current, pushed, where=store.describe())
    written = replace(pushed, serial=serial)
    store.write(written, expected=Expected.of(current))
    return Pushed(written=written, replaced=current)


def _check_newer(current: State, pushed: State, *, where: str) -> None:
    """StateConflict unless ``pushed`` continues ``current``: same lineage, newer serial."""
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
