"""Notes that help a reviewer read a plan (pure): what the changes mean taken together."""

from __future__ import annotations

from reconciler.plan.model import Action, Change


def notes(changes: tuple[Change, ...]) -> tuple[str, ...]:
    """The review notes of ``changes``, in a stable order."""
    return renames(changes)


def renames(changes: tuple[Change, ...]) -> tuple[str, ...]:
    """A DISABLE of one account and a CREATE of another with the same email (case-folded):
    most likely a rename, which the API cannot do; say what will happen instead."""
    disabled = [
        (c.account, c.before.email)
        for c in changes
        if c.action is Action.DISABLE and c.before is not None
    ]
    if not disabled:
        return ()  # no email of the creates is looked at (the first apply: 100k of them)
    created = {
        change.after.email.lower(): change.account
        for change in changes
        if change.action is Action.CREATE
    }
    found = []
    for account, email in disabled:
        new = created.get(email.lower())
        if new is not None:
            found.append(
                f"looks like a rename: the API cannot rename an account; {account} "
                f"will be disabled and {new} created"
            )
    return tuple(found)
