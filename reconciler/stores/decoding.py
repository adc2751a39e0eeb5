"""Decoding a state document straight into records: no dict per account is ever kept.

``json.loads`` calls a hook on every JSON object as soon as it is parsed. An object with an
account record's keys that passes the record's part of the state schema becomes an
``AccountRecord`` there and then, so a million accounts never stand as a million dicts
(the document of dicts was most of the peak of reading a large state). The rest of the
document, which is small, goes through the whole of ``formats.check`` as before, its
``accounts`` left out (each was checked as it was decoded).

The records must stand where the schema puts them: the values of ``accounts`` (and the
``target`` of pending entries, turned back into JSON for the check). When the decoded
document is anything else (a record that failed its check and stayed a dict, a
record-shaped object inside a ``wire``, ``accounts`` not an object), :func:`state` answers
None and the reader decodes the bytes again the plain way, whose checks and messages then
decide: this path never accepts what the plain one refuses, nor says it differently.

A snapshot whose bytes passed the schema before (``stores.checked``) is decoded without
the per-record check: the whole document was checked, records included.
"""

from __future__ import annotations

import contextlib
import gc
import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from reconciler import schemas
from reconciler.stores import model
from reconciler.stores.model import AccountRecord, State

_RECORD_KEYS = frozenset(
    (*model.ATTRIBUTES, "last_task_id", "created_at", "updated_at", "source_commit", "adopted")
)
_REQUIRED_KEYS = frozenset(model.ATTRIBUTES)


# The decoder's constructor: each slot set through its descriptor, as ``__init__`` would,
# without a frozen dataclass's ``object.__setattr__`` per field (half the cost of a record).
_new = object.__new__
(
    _set_account,
    _set_name,
    _set_email,
    _set_role_ids,
    _set_enabled,
    _set_last_task_id,
    _set_created_at,
    _set_updated_at,
    _set_source_commit,
    _set_adopted,
) = (getattr(AccountRecord, name).__set__ for name in AccountRecord.__slots__)


class _Records:
    """The ``object_hook``: a record-shaped JSON object that fits becomes an AccountRecord.

    Its ``account`` is blank until :func:`state` names it after its key in ``accounts``.
    Role-id lists repeat (a few hundred combinations among a million accounts): each
    distinct one is a single tuple of interned ids, as are repeated task ids and times.
    """

    __slots__ = ("_fits", "_role_ids", "_texts")

    def __init__(self, fits: Callable[[Any], bool] | None) -> None:
        self._fits = fits
        self._role_ids: dict[tuple[Any, ...], tuple[str, ...]] = {}
        self._texts: dict[Any, Any] = {}

    def __call__(self, obj: dict[str, Any]) -> Any:
        if "role_ids" not in obj or not (_REQUIRED_KEYS <= obj.keys() <= _RECORD_KEYS):
            return obj
        if self._fits is not None and not self._fits(obj):
            return obj  # stays JSON: the plain reader reports what is wrong with it
        try:
            return self._record(obj)
        except TypeError:  # unhashable where a text belongs: the plain reader decides
            return obj

    def _record(self, obj: dict[str, Any]) -> AccountRecord:
        get, texts = obj.get, self._texts
        listed = tuple(obj["role_ids"])
        role_ids = self._role_ids.get(listed)
        if role_ids is None:
            role_ids = tuple([model.shared(role_id) for role_id in listed])
            self._role_ids[listed] = role_ids
        last_task_id, created_at = get("last_task_id"), get("created_at")
        updated_at = get("updated_at")
        record: AccountRecord = _new(AccountRecord)
        _set_account(record, "")
        _set_name(record, obj["name"])
        _set_email(record, obj["email"])
        _set_role_ids(record, role_ids)
        _set_enabled(record, obj["enabled"])
        _set_last_task_id(record, texts.setdefault(last_task_id, last_task_id))
        _set_created_at(record, texts.setdefault(created_at, created_at))
        _set_updated_at(record, texts.setdefault(updated_at, updated_at))
        _set_source_commit(record, get("source_commit"))
        _set_adopted(record, get("adopted", False))  # absent in format 1: nothing was adopted
        return record


def loads(data: bytes | str, *, schema_checked: bool) -> Any:
    """``json.loads(data)`` with account records decoded as they are parsed.

    Raises what ``json.loads`` raises on bytes that are not JSON.
    """
    fits = None if schema_checked else schemas.part_check("state", "account")
    with _collector_paused():
        return json.loads(data, object_hook=_Records(fits))


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while decoding: JSON makes no cycles, and the collector,
    set off by every 700 new objects, walked all the records made so far each time it
    reached the oldest generation (a million records took 3x as long to decode)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def state(document: Any, *, where: str, repair_hint: str, schema_checked: bool) -> State | None:
    """The state in a document from :func:`loads`; None when the plain reader must decide.

    Raises StateCorrupt (``model.from_json``'s) when the rest of the document is refused.
    """
    if type(document) is not dict:
        return None
    accounts = document.get("accounts")
    if type(accounts) is not dict:
        return None
    for account, record in accounts.items():
        if type(record) is not AccountRecord:
            return None
        # Not yet published: the decoder made it, blank, a moment ago (see _Records).
        _set_account(record, account)
    skeleton = _skeleton(document)
    if skeleton is None:
        return None
    bare = model.from_json(
        skeleton, where=where, repair_hint=repair_hint, schema_checked=schema_checked
    )
    return replace(bare, accounts=accounts)


def _skeleton(document: dict[str, Any]) -> dict[str, Any] | None:
    """The document as JSON without its accounts; None if a record stands anywhere else."""
    rest = {key: value for key, value in document.items() if key not in ("accounts", "pending")}
    skeleton: dict[str, Any] = {**rest, "accounts": {}}
    if "pending" in document:
        pending = document["pending"]
        skeleton["pending"] = (
            [_plain_batch(batch) for batch in pending] if type(pending) is list else pending
        )
    return None if _holds_record(skeleton) else skeleton


def _plain_batch(batch: Any) -> Any:
    """A pending batch with its entries' targets (records) back as JSON."""
    if type(batch) is not dict or type(batch.get("entries")) is not list:
        return batch
    entries = [
        {**entry, "target": model.account_to_json(entry["target"])}
        if type(entry) is dict and type(entry.get("target")) is AccountRecord
        else entry
        for entry in batch["entries"]
    ]
    return {**batch, "entries": entries}


def _holds_record(value: Any) -> bool:
    """Whether an AccountRecord stands anywhere inside ``value`` (JSON otherwise)."""
    if type(value) is AccountRecord:
        return True
    if type(value) is dict:
        return any(_holds_record(item) for item in value.values())
    if type(value) is list:
        return any(_holds_record(item) for item in value)
    return False
