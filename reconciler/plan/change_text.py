"""A change's canonical JSON text built from pieces, without its document (pure).

``planfile`` writes each change of a plan as canonical JSON (sorted keys, no spaces, ASCII)
and hashes that text. Building each change's document (five dicts and lists) and encoding
it was most of the time of a plan of 100k changes; here the text is put together from the
strings, encoded one by one by the encoder's own string function, and from pieces that
repeat (role-id lists, source files, commits) encoded once per plan. The layout follows
``planfile._reviewed_json``: tests compare the two texts for every kind of change.

Only the shapes a planner makes are built here. Anything else (an end date carried out, an
adopted record, a value that is not a string, a field named twice) raises ``Unusual`` or
``TypeError``, and the caller encodes that change's document instead: never a guess.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from reconciler.desired.commit import Commit
from reconciler.desired.model import Source
from reconciler.plan.model import Action, Change, Field, Reason
from reconciler.stores.model import AccountRecord

# The encoder's own string function (C where the interpreter has it): the same escapes as
# the canonical encoder; TypeError for anything but a string.
_string: Callable[[Any], str] = json.encoder.encode_basestring_ascii

# Keyed by the member's id: an enum's hash is a Python call, and members live as long as
# their class (the ids never change hands).
_REASONS = {id(reason): _string(reason.name.lower()) for reason in Reason}
_FIELDS = {id(field): _string(field.value) for field in Field}
_ACTIONS = {id(action): _string(action.value) for action in Action}


class Unusual(Exception):
    """A change this builder leaves to the document encoder."""


def _false(value: object) -> str:
    """``false`` for False (True is tested first, inline); anything else is Unusual."""
    if value is False:
        return "false"
    raise Unusual  # a bool by type; anything else is encoded as it is


class Texts:
    """The pieces of one plan's change texts: each repeated piece encoded once."""

    __slots__ = ("_encode", "_files", "_ids", "_tails")

    def __init__(self, encode: Callable[[Any], str]) -> None:
        """``encode``: the canonical encoder, for the pieces that repeat."""
        self._encode = encode
        self._ids: dict[tuple[str, ...], str] = {}  # role ids → their JSON list
        self._files: dict[str, str] = {}  # file → ``{"file":…,"line":``
        self._tails: dict[Commit, str] = {}  # commit → ``,"commit":{…}}``

    def ids(self, role_ids: tuple[str, ...]) -> str:
        """``["1","2"]``: each distinct tuple of role ids encoded once."""
        text = self._ids.get(role_ids)
        if text is None:
            text = self._encode(list(role_ids))
            # Only strings are kept: a key equal to another of another type (1 and True)
            # must not reuse its text.
            if all(type(role_id) is str for role_id in role_ids):
                self._ids[role_ids] = text
        return text

    def record(self, record: AccountRecord) -> str:
        """``_attributes_sorted(record)`` as text (an adopted record is Unusual)."""
        return self._record(record, _string(record.email), _string(record.name))

    def _record(self, record: AccountRecord, email: str, name: str) -> str:
        """:meth:`record` given its email and name encoded already."""
        if record.adopted is not False:
            raise Unusual
        enabled = record.enabled
        role_ids = record.role_ids
        return (
            f'{{"email":{email},"enabled":{"true" if enabled is True else _false(enabled)},'
            f'"name":{name},"role_ids":{self._ids.get(role_ids) or self.ids(role_ids)}}}'
        )

    def source(self, source: Source | None, commit_json: Callable[[Commit], Any]) -> str:
        """``planfile._source(source)`` as text (keys in the order it builds them)."""
        if source is None:
            return "null"
        line = source.line
        if type(line) is not int:
            raise Unusual
        head = self._files.get(source.file)
        if head is None:
            head = self._files[source.file] = '{"file":' + _string(source.file) + ',"line":'
        commit = source.commit
        if commit is None:
            return f"{head}{line}}}"
        tail = self._tails.get(commit)
        if tail is None:
            tail = ',"commit":' + self._encode(commit_json(commit)) + "}"
            # Only a commit of strings is kept, as the role ids are: one whose field is equal
            # to another of another type (1 and True) must not reuse its text.
            if (
                type(commit.hash) is str
                and type(commit.author) is str
                and (type(commit.date) is str)
            ):
                self._tails[commit] = tail
        return f"{head}{line}{tail}"

    def change(self, change: Change) -> str:
        """``_reviewed_json(change)`` as canonical text (Unusual or TypeError: not built).

        Written out in one piece, each string encoded once (a MODIFY's new value serves
        its field change and its wire entry): calls cost more than the text here."""
        if change.expired:
            raise Unusual
        known, ids = self._ids.get, self.ids
        account = _string(change.account)
        action = change.action
        named = _ACTIONS[id(action)]
        after = change.after
        email, name = _string(after.email), _string(after.name)
        after_text = self._record(after, email, name)
        before = change.before
        before_text = "null" if before is None else self.record(before)
        fields = ""
        if action is Action.DISABLE:
            wire = f'{{"action":{named},"userAccount":{account}}}'
            if change.fields:
                raise Unusual
        elif action is Action.CREATE or change.reason is Reason.ADOPT:
            # Every attribute is sent (a CREATE, or an adopt: the tenant's are unknown).
            role_ids = after.role_ids
            wire = (
                f'{{"action":{named},"email":{email},"roleIds":{known(role_ids) or ids(role_ids)},'
                f'"userAccount":{account},"userName":{name}}}'
            )
            if change.fields:
                fields = ",".join(
                    f'{{"after":{_string(item.after)},"before":{_string(item.before)},'
                    f'"field":{_FIELDS[id(item.field)]}}}'
                    for item in change.fields
                )
        else:
            sets_email = sets_name = ""
            for item in change.fields:
                value = _string(item.after)
                if item.field is Field.EMAIL and not sets_email:
                    sets_email = f',"email":{value}'
                elif item.field is Field.NAME and not sets_name:
                    sets_name = f',"userName":{value}'
                else:
                    raise Unusual  # a field named twice: the wire entry keeps one
                text = (
                    f'{{"after":{value},"before":{_string(item.before)},'
                    f'"field":{_FIELDS[id(item.field)]}}}'
                )
                fields = f"{fields},{text}" if fields else text
            role_ids = after.role_ids
            roles = (
                f',"roleIds":{known(role_ids) or ids(role_ids)}'
                if change.roles_added or change.roles_removed
                else ""
            )
            wire = f'{{"action":{named}{sets_email}{roles},"userAccount":{account}{sets_name}}}'
        added, removed = change.roles_added, change.roles_removed
        return (
            f'{{"account":{account},"action":{named},"after":{after_text},'
            f'"before":{before_text},"expired":[],'
            f'"fields":[{fields}],"reason":{_REASONS[id(change.reason)]},'
            f'"roles_added":{known(added) or ids(added)},'
            f'"roles_removed":{known(removed) or ids(removed)},"wire":{wire}}}'
        )
