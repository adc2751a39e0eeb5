"""The file backend's format: a snapshot, and a journal of the writes made after it.

``state.json`` is the snapshot, the state document wrapped with the id of its journal::

    {"format_version": 4,
     "snapshot": {"journal": "<id>", "folded": "<id of the journal it took in, or null>"},
     "state": {<the state document: format_version 3, what `state pull` prints>}}

``state.json.journal`` holds one record per write since that snapshot, one per line::

    <payload length> <CRC-32 of the payload, 8 hex digits> <payload>\\n

where the payload is compact JSON: ``{"journal": "<id>", <a delta.to_json record>}``.

Reading is the snapshot plus every record replayed in order, each following the one before
(lineage, serial). A last line without its newline is a write cut short by a crash: it was
never acknowledged, so readers ignore it and the next writer cuts it off. Any other line
that does not check out (length, CRC, JSON, schema) makes the state corrupt, as does a
record of another journal: a journal never silently loses a write. The one exception is
the journal the snapshot names as ``folded``: a compaction wrote the snapshot including it
and was stopped before it removed the file, so it is ignored and the next writer removes it.

The wrapper's ``format_version`` is what keeps older reconcilers away: it is always greater
than the document's, so a reconciler from before the journal (reading state files up to
format 2) refuses it as written by a newer reconciler instead of reading the snapshot without
its journal. Wrapper 3 held a format-2 document; wrapper 4 holds format 3, which added the
recorded policy: a reconciler reading up to wrapper 3 refuses it rather than write the state
back without its policy. Both wrappers are read (``WRAPPERS``). A file that is a plain state
document (format 1 or 2, an older reconciler's) is read as a snapshot with no journal; the
first write wraps it.
"""

from __future__ import annotations

import json
import uuid
import zlib
from typing import Any

from reconciler.errors import StateCorrupt
from reconciler.stores import decoding, model
from reconciler.stores import delta as deltas
from reconciler.stores.model import State
from reconciler.values import frozen, replace

SNAPSHOT_FORMAT = 4  # the wrapper, not the document inside it (model.FORMAT_VERSION)
# Wrappers read: 3 (a format-2 document inside, before the recorded policy) and this one.
# A plain document is never one of these versions with a "snapshot" member.
WRAPPERS = (3, SNAPSHOT_FORMAT)  # a tuple: a hand-edited version may be unhashable


@frozen
class Loaded:
    """A state as read from a snapshot and its journal, and what a writer must know of them."""

    state: State
    journal: str | None  # the snapshot's journal id; None: a plain document, no journal yet
    snapshot_bytes: int
    journal_bytes: int  # the valid records' length: where the next record goes
    cut: bool  # the journal file holds more (a torn last record, or a folded journal)
    folded: bool  # the journal file is one the snapshot already took in: to be removed


def new_journal() -> str:
    """A fresh journal id."""
    return str(uuid.uuid4())


def snapshot(state: State, *, journal: str, folded: str | None) -> bytes:
    """The snapshot file's bytes for ``state``, starting journal ``journal``.

    They are ``json.dumps`` of ``{"format_version", "snapshot", "state": model.to_json(state)}``
    with separators ``(",", ":")`` and ``ensure_ascii=False`` (compact: indent makes json
    fall back to its pure-Python encoder; ``state pull`` prints the document readably),
    put together a member at a time: the accounts a record at a time as text
    (``model.account_text``), the rest by the same C encoder.
    """
    document = model.to_json(replace(state, accounts={}))
    members = []
    for key, member in document.items():
        text = _accounts_text(state) if key == "accounts" else _COMPACT(member)
        members.append(f"{_STRING(key)}:{text}")
    head = _COMPACT(
        {"format_version": SNAPSHOT_FORMAT, "snapshot": {"journal": journal, "folded": folded}}
    )
    text = f'{head[:-1]},"state":{{{",".join(members)}}}}}'
    return text.encode() + b"\n"


def _accounts_text(state: State) -> str:
    """The document's ``accounts`` member as compact text, accounts sorted."""
    accounts, strings = state.accounts, _STRING
    texts = []
    for account in sorted(accounts):
        if type(account) is not str:  # json.dumps writes such a key as a string: let it
            return _COMPACT({key: model.account_to_json(accounts[key]) for key in sorted(accounts)})
        record = accounts[account]
        text = model.account_text(record)
        if text is None:
            text = _COMPACT(model.account_to_json(record))
        texts.append(f"{strings(account)}:{text}")
    return "{" + ",".join(texts) + "}"


_STRING = json.encoder.encode_basestring  # what json.dumps(..., ensure_ascii=False) uses
# json.dumps's own encoder and options (its errors too): used for a few members per snapshot.
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def record(change: deltas.Delta, *, journal: str) -> bytes:
    """One journal line for ``change``."""
    payload = json.dumps(
        {"journal": journal, **deltas.to_json(change)}, separators=(",", ":"), ensure_ascii=False
    ).encode()
    return b"%d %08x %s\n" % (len(payload), zlib.crc32(payload), payload)


def load(
    snapshot_data: bytes | decoding.Chunks,
    journal_data: bytes,
    *,
    where: str,
    repair_hint: str,
    schema_checked: bool = False,
    names: model.Names | None = None,
) -> Loaded:
    """The state in a snapshot and its journal; StateCorrupt when they cannot be trusted.

    ``snapshot_data``: the snapshot's bytes, or its chunks, each let go of once decoded
    (then decoding.Irregular means: read the bytes again and load them plainly), and
    perhaps read only as they are decoded.
    ``schema_checked``: they passed the state schema before. ``names``: the snapshot's
    records take their equal strings (``decoding.shared_names``).
    A state whose text holds a lone surrogate is refused (its bytes scanned as they are
    read; only when the scan finds one that may be does the whole state get encoded).
    """
    with decoding.not_too_deep(where, repair_hint):
        loaded = _load(
            snapshot_data,
            journal_data,
            where=where,
            repair_hint=repair_hint,
            schema_checked=schema_checked,
            names=names,
        )
    suspect = (
        snapshot_data.suspect
        if isinstance(snapshot_data, decoding.Chunks)
        else decoding.may_hold_surrogates(snapshot_data)
    )
    if (suspect or decoding.may_hold_surrogates(journal_data)) and decoding.holds_surrogates(
        model.to_json(loaded.state)
    ):
        raise decoding.surrogate_refusal(where, repair_hint)
    return loaded


def _load(
    snapshot_data: bytes | decoding.Chunks,
    journal_data: bytes,
    *,
    where: str,
    repair_hint: str,
    schema_checked: bool,
    names: model.Names | None,
) -> Loaded:
    """:func:`load` but for the check of lone surrogates and of nesting."""
    journal, folded, state = _decode(
        snapshot_data,
        where=where,
        repair_hint=repair_hint,
        schema_checked=schema_checked,
        names=names,
    )
    # Decoded, the chunks were all taken (the decoder reads on to the end of the bytes).
    size = _size(snapshot_data)
    lines, valid = _lines(journal_data)
    sizes = {"snapshot_bytes": size, "journal_bytes": valid}
    cut = valid < len(journal_data)
    if not lines:
        return Loaded(state=state, journal=journal, cut=cut, folded=False, **sizes)
    records = [_payload(line, number, where=where) for number, line in enumerate(lines, 1)]
    ids = {str(payload.get("journal")) for payload in records}
    if folded is not None and ids == {folded}:
        return Loaded(state=state, journal=journal, cut=True, folded=True, **sizes)
    if journal is None or ids != {journal}:
        raise StateCorrupt(
            f"state {where}: its journal {where}.journal holds writes that do not belong to "
            "this snapshot",
            hint=f"if {where} was restored from a copy or its backup, move {where}.journal "
            "aside (it holds the writes made after that copy); nothing was modified",
        )
    replay = deltas.Replay(state)
    for payload in records:
        del payload["journal"]
        replay.apply(deltas.from_json(payload, where=where), where=where)
    return Loaded(state=replay.state(), journal=journal, cut=cut, folded=False, **sizes)


def _size(snapshot_data: bytes | decoding.Chunks) -> int:
    """The snapshot's size in bytes (of chunks: those taken, all of them once decoded)."""
    if isinstance(snapshot_data, decoding.Chunks):
        return snapshot_data.size
    return len(snapshot_data)


def _decode(
    snapshot_data: bytes | decoding.Chunks,
    *,
    where: str,
    repair_hint: str,
    schema_checked: bool,
    names: model.Names | None,
) -> tuple[str | None, str | None, State]:
    """(journal id, folded journal id, the state) of a snapshot file's bytes or text.

    Records are decoded as they are parsed (``decoding``); a document that path cannot take
    whole is decoded again the plain way, which decides and words any refusal.
    """
    streamed = isinstance(snapshot_data, decoding.Chunks)
    try:
        if isinstance(snapshot_data, decoding.Chunks):
            data = decoding.stream(snapshot_data, schema_checked=schema_checked, names=names)
        else:
            data = decoding.loads(snapshot_data, schema_checked=schema_checked)
    except (UnicodeDecodeError, json.JSONDecodeError, decoding.NotJson) as exc:
        raise StateCorrupt(f"state {where} is not valid JSON ({exc})", hint=repair_hint) from exc
    journal, folded, document = _unwrap(data, where=where, repair_hint=repair_hint)
    del data
    state = decoding.state(
        document,
        where=where,
        repair_hint=repair_hint,
        schema_checked=schema_checked,
        names=None if streamed else names,  # streamed: shared as they were decoded
    )
    if state is not None:
        return journal, folded, state
    if isinstance(snapshot_data, decoding.Chunks):
        raise decoding.Irregular  # its bytes are gone: the caller reads them again
    del document
    journal, folded, document = _unwrap(
        json.loads(snapshot_data, parse_constant=decoding.refuse_constant),
        where=where,
        repair_hint=repair_hint,
    )
    plain = model.from_json(
        document, where=where, repair_hint=repair_hint, schema_checked=schema_checked
    )
    return journal, folded, plain


def _unwrap(data: Any, *, where: str, repair_hint: str) -> tuple[str | None, str | None, Any]:
    """(journal id, folded journal id, the state document) of a snapshot file's content."""
    if not (
        isinstance(data, dict) and data.get("format_version") in WRAPPERS and "snapshot" in data
    ):
        return None, None, data  # a plain document: format_version's rules decide
    marks = data.get("snapshot")
    journal = marks.get("journal") if isinstance(marks, dict) else None
    folded = marks.get("folded") if isinstance(marks, dict) else None
    if (
        set(data) != {"format_version", "snapshot", "state"}
        or not isinstance(marks, dict)
        or set(marks) != {"journal", "folded"}
        or not isinstance(journal, str)
        or not (folded is None or isinstance(folded, str))
    ):
        raise StateCorrupt(f"state {where} is not a valid state snapshot", hint=repair_hint)
    return journal, folded, data["state"]


def _lines(data: bytes) -> tuple[list[bytes], int]:
    """The journal's complete lines, and the length they take (a torn last line is not one)."""
    end = data.rfind(b"\n") + 1
    return data[:end].splitlines(), end


def _payload(line: bytes, number: int, *, where: str) -> dict[str, Any]:
    """The JSON object in one journal line; StateCorrupt unless its length and CRC hold."""
    head, _, rest = line.partition(b" ")
    crc, _, payload = rest.partition(b" ")
    try:
        intact = int(head) == len(payload) and int(crc, 16) == zlib.crc32(payload)
        data = json.loads(payload, parse_constant=decoding.refuse_constant) if intact else None
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        raise StateCorrupt(
            f"state {where}: record {number} of its journal is damaged (its length or "
            "checksum does not match)",
            hint="it was not modified; restore the state from a copy (`reconciler state "
            "push`), or cut the journal before that record by hand (the writes from it on "
            "are lost)",
        )
    return data
