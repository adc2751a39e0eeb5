"""Notes that help a reviewer read a plan (pure): what the changes mean taken together."""

from __future__ import annotations

from reconciler.plan.model import Action, Change


def notes(changes: tuple[Change, ...]) -> tuple[str, ...]:
    """The review notes of ``changes``, in a stable order."""
    return renames(changes)


def renames(changes: tuple[Change, ...]) -> tuple[str, ...]:
    """A DISABLE of one account and a CREATE of another with the same email (case-folded):
    most likely a rename, which the API cannot do; say what will happen instead."""
    created = {
        change.after.email.lower(): change.account
        for change in changes
        if change.action is Action.CREATE
    }
    found = []
    for change in changes:
        if change.action is not Action.DISABLE or change.before is None:
            continue
        new = created.get(change.before.email.lower())
        if new is not None:
            found.append(
                f"looks like a rename: the API cannot rename an account; {change.account} "
                f"will be disabled and {new} created"
            )
    return tuple(found)
