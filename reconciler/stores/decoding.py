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

The file backend goes one step further (:func:`stream`): it hands over the snapshot's bytes
in chunks, and the top of the document (the wrapper, the state, its ``accounts``) is parsed
member by member here, every other value by json's C scanner, so each chunk is freed once
decoded and the bytes, their text and the records never stand in memory together. Anything
that is not plain JSON to this parser raises Irregular: the caller reads the bytes again
and the plain reader decides.
"""

from __future__ import annotations

import codecs
import contextlib
import gc
import json
import json.decoder
import json.scanner
import re
from collections.abc import Callable, Iterator
from typing import Any

from reconciler import schemas, values
from reconciler.errors import StateCorrupt
from reconciler.stores import model
from reconciler.stores.model import AccountRecord, State
from reconciler.values import replace

_RECORD_KEYS = frozenset(
    (*model.ATTRIBUTES, "last_task_id", "created_at", "updated_at", "source_commit", "adopted")
)
_REQUIRED_KEYS = frozenset(model.ATTRIBUTES)


class NotJson(ValueError):
    """NaN, Infinity or -Infinity: Python's json reads them, JSON has no such number (and a
    NaN limit would pass every comparison of a guard rail)."""


def refuse_constant(name: str) -> Any:
    """json's ``parse_constant``: a state holds no NaN nor infinity."""
    raise NotJson(f"{name} is not a JSON number")


def holds_surrogates(document: Any) -> bool:
    """Whether the text of JSON ``document`` holds a lone surrogate (the exact check, after
    a scan said it may: it encodes the whole document)."""
    try:
        json.dumps(document, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def surrogate_refusal(where: str, repair_hint: str) -> StateCorrupt:
    """The refusal of a state whose text holds a lone surrogate."""
    return StateCorrupt(
        f"state {where} holds text that is not Unicode (a lone surrogate, U+D800 to U+DFFF, "
        "written as a \\u escape or in its bytes): no reconciler writes one",
        hint=repair_hint,
    )


@contextlib.contextmanager
def not_too_deep(where: str, repair_hint: str) -> Iterator[None]:
    """StateCorrupt for a document nested deeper than Python's recursion lets its readers
    (json's decoder, the schema, the records' walk) go: no state nests that far."""
    try:
        yield
    except RecursionError:
        raise StateCorrupt(
            f"state {where} nests its lists or objects too deeply to be a state",
            hint=repair_hint,
        ) from None


# The decoder's constructor: each slot set through its descriptor, as ``__init__`` does,
# without passing every field by keyword (from when a frozen dataclass's ``__init__`` called
# ``object.__setattr__`` per field: half the cost of a record).
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
) = (getattr(AccountRecord, name).__set__ for name in values.fields(AccountRecord))


def shared_names(names: model.Names, account: str, record: AccountRecord) -> str:
    """``account`` (a key of ``accounts``) as the string ``names`` holds for it, and
    ``record``'s name and email as the strings of ``names[account]`` where they are equal
    (the record is one the decoder made a moment ago, not yet published).

    The desired state and the recorded one mostly say the same: a plan of a million
    accounts then holds one copy of each account, name and email instead of two, and the
    decoded copies are freed as soon as they are replaced. The values never change: only
    which of two equal strings is kept.
    """
    named = names.get(account)
    if named is None:
        return account
    name, email, shared = named.name, named.email, named.account
    if type(name) is str and record.name == name:
        _set_name(record, name)
    if type(email) is str and record.email == email:
        _set_email(record, email)
    return shared if type(shared) is str and shared == account else account


class _Records:
    """The ``object_hook``: a record-shaped JSON object that fits becomes an AccountRecord.

    Its ``account`` is blank until :func:`state` names it after its key in ``accounts``.
    Role-id lists repeat (a few hundred combinations among a million accounts): each
    distinct one is a single tuple of interned ids, as are repeated task ids and times.
    With ``names``, the record of an account that ``named`` is set to (the decoder sets it
    while it decodes that account's value) takes its name and email where they are equal,
    as :func:`shared_names` does.
    """

    __slots__ = ("_fits", "_role_ids", "_texts", "named", "names")

    def __init__(
        self, fits: Callable[[Any], bool] | None, names: model.Names | None = None
    ) -> None:
        self._fits = fits
        self.names = names
        self.named: model.Named | None = None
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
        name, email, named = obj["name"], obj["email"], self.named
        if named is not None:  # equal texts held once (see shared_names)
            if name == named.name:
                name = named.name
            if email == named.email:
                email = named.email
        record: AccountRecord = _new(AccountRecord)
        _set_account(record, "")
        _set_name(record, name)
        _set_email(record, email)
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

    Raises what ``json.loads`` raises on bytes that are not JSON, NotJson for NaN or an
    infinity.
    """
    fits = None if schema_checked else schemas.part_check("state", "account")
    with _collector_paused():
        return json.loads(data, object_hook=_Records(fits), parse_constant=refuse_constant)


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


def state(
    document: Any,
    *,
    where: str,
    repair_hint: str,
    schema_checked: bool,
    names: model.Names | None = None,
) -> State | None:
    """The state in a document from :func:`loads`; None when the plain reader must decide.

    With ``names``, each record takes their equal strings (:func:`shared_names`; its key
    in ``accounts`` stays the decoded one). Raises StateCorrupt (``model.from_json``'s)
    when the rest of the document is refused.
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
        _set_account(record, account if names is None else shared_names(names, account, record))
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


# -- decoding a snapshot from its chunks, letting go of each as the parser moves on -------

CHUNK_BYTES = 4 * 1024 * 1024
# Objects parsed here key by key, so that their members (records above all) are made
# while the chunks behind them are freed; every other value goes to json's C scanner whole.
_ACCOUNTS = frozenset({("accounts",), ("state", "accounts")})
_STREAMED = frozenset({(), ("state",), *_ACCOUNTS})
_SPACE = re.compile(r"[ \t\n\r]*")
# A member's key as JSON writes one without escapes (no quote, backslash or control
# character: a string with any of those goes through json's own scanstring), and its colon.
_SIMPLE_MEMBER = re.compile(r'[ \t\n\r]*"([^"\\\x00-\x1f]*)"[ \t\n\r]*:[ \t\n\r]*')


class Irregular(Exception):
    """The chunks hold something :func:`stream` does not take: decode the bytes plainly."""


# What a lone surrogate can be written as in a state's bytes: a \u escape of D800-DFFF
# (json reads one alone as it is), or UTF-8's own encoding of one (the decoders pass
# surrogates through). Text holding one is not Unicode: no reconciler writes it, and
# printing or writing it fails. A scan of the bytes tells the rare state worth a look.
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
_ENCODED_SURROGATE = re.compile(rb"\xed[\xa0-\xbf]")
_UTF8 = frozenset({"utf-8", "utf-8-sig"})
_KEEP = 5  # bytes of one chunk searched again with the next: a match cut between them


def may_hold_surrogates(data: bytes) -> bool:
    """Whether JSON ``data`` may decode to text with a lone surrogate (bytes in another
    encoding than UTF-8 are not scanned: they may)."""
    return json.detect_encoding(data[:4]) not in _UTF8 or _surrogate_in(data)


def _surrogate_in(data: bytes) -> bool:
    """Whether UTF-8 ``data`` holds a lone surrogate's escape or bytes. The regular
    expressions run only where a plain search (memchr's speed: a 26 MB state in a few
    milliseconds, where one expression took 80) finds their first bytes."""
    if b"\\u" in data and _ESCAPED_SURROGATE.search(data) is not None:
        return True
    return b"\xed" in data and _ENCODED_SURROGATE.search(data) is not None


class Chunks:
    """A snapshot's bytes as consecutive chunks, taken (and so let go of) from the front:
    from a list, emptied as they are taken, or from an iterator that reads each only when
    it is asked for (then the bytes never stand in memory whole). Each chunk taken is
    scanned as :func:`may_hold_surrogates` scans (``suspect``)."""

    __slots__ = ("_head", "_next", "_tail", "size", "suspect")

    def __init__(self, chunks: list[bytes] | Iterator[bytes]) -> None:
        self._next = _popping(chunks) if isinstance(chunks, list) else chunks
        self.size = 0  # of the chunks taken so far: all of them once the decoder is done
        self.suspect = False  # of the chunks taken so far
        self._head = self._tail = b""

    def take(self) -> bytes | None:
        """The next chunk, which this no longer holds; None after the last."""
        chunk = next(self._next, None)
        if chunk is None:
            if len(self._head) < 4:  # the whole of a short snapshot is its head
                self.suspect = self.suspect or may_hold_surrogates(self._head)
            return None
        self.size += len(chunk)
        if not self.suspect:
            if len(self._head) < 4:
                self._head = (self._head + chunk)[:4]
                self.suspect = json.detect_encoding(self._head) not in _UTF8
            # The chunk, and where it meets the one before (a match cut between them):
            # never the two joined whole (a copy of every chunk).
            junction = self._tail + chunk[:_KEEP]
            self.suspect = self.suspect or _surrogate_in(junction) or _surrogate_in(chunk)
            self._tail = (self._tail + chunk)[-_KEEP:] if len(chunk) < _KEEP else chunk[-_KEEP:]
        return chunk


def _popping(chunks: list[bytes]) -> Iterator[bytes]:
    """The chunks of ``chunks`` in order, each removed from the list as it is taken."""
    chunks.reverse()
    while chunks:
        yield chunks.pop()


class _Window:
    """The decoded text from the parser's position on, refilled from the chunks."""

    __slots__ = ("_chunks", "_decoder", "pos", "text")

    def __init__(self, chunks: Chunks) -> None:
        first = b""
        while len(first) < 4 and (chunk := chunks.take()) is not None:
            first += chunk  # the encoding is told by the first four bytes
        encoding = json.detect_encoding(first)
        self._decoder: codecs.IncrementalDecoder | None = codecs.getincrementaldecoder(encoding)(
            "surrogatepass"
        )
        self._chunks = chunks
        self.text, self.pos = "", 0
        self._add(first)

    def _add(self, chunk: bytes | None) -> None:
        decoder = self._decoder
        assert decoder is not None
        try:
            more = decoder.decode(chunk or b"", final=chunk is None)
        except UnicodeDecodeError:
            raise Irregular from None  # the plain reader words it, at its position
        if chunk is None:
            self._decoder = None
        self.text = self.text[self.pos :] + more
        self.pos = 0

    def more(self) -> bool:
        """Add the next chunk's text; False when there is none."""
        if self._decoder is None:
            return False
        self._add(self._chunks.take())
        return True

    def next_char(self) -> str:
        """The next character after white space ('' at the end), the position on it."""
        while True:
            match = _SPACE.match(self.text, self.pos)
            assert match is not None
            self.pos = match.end()
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.more():
                return ""


def stream(chunks: Chunks, *, schema_checked: bool, names: model.Names | None = None) -> Any:
    """What :func:`loads` makes of the chunks' bytes, never holding all of their text; with
    ``names``, each record of ``accounts`` takes their equal strings as it is decoded
    (:func:`shared_names`), keyed by the same string as its ``account``.

    Raises Irregular for anything that is not plain JSON (the plain reader then decides).
    """
    fits = None if schema_checked else schemas.part_check("state", "account")
    hook = _Records(fits, names)
    decoder = json.JSONDecoder(object_hook=hook, parse_constant=refuse_constant)
    scan = json.scanner.make_scanner(decoder)  # type: ignore[arg-type]  # typeshed: a class
    window = _Window(chunks)
    with _collector_paused():
        document = _value(window, (), scan, hook)
    if window.next_char():
        raise Irregular  # more after the document
    return document


def _value(window: _Window, path: tuple[str, ...], scan: Any, hook: _Records) -> Any:
    """The JSON value at the window's position (after white space)."""
    char = window.next_char()
    if char == "{" and path in _STREAMED:
        return _object(window, path, scan, hook)
    return _scanned(window, scan)


def _scanned(window: _Window, scan: Any) -> Any:
    """The JSON value at the window's position, by json's C scanner."""
    while True:
        try:
            value, end = scan(window.text, window.pos)
        except (StopIteration, json.JSONDecodeError):
            if window.more():
                continue  # cut by the window's end, perhaps
            raise Irregular from None
        if end == len(window.text) and window.more():
            continue  # a number or a word may go on in the next chunk
        window.pos = end
        return value


def _object(window: _Window, path: tuple[str, ...], scan: Any, hook: _Records) -> Any:
    """A JSON object member by member (the window is on its ``{``)."""
    window.pos += 1
    members: dict[str, Any] = {}
    # The members of ``accounts`` (records) are never streamed: each goes to the scanner
    # without a path of its own; with names, each record takes their strings.
    records = path in _ACCOUNTS
    names = hook.names if records else None
    if window.next_char() == "}":
        window.pos += 1
        return hook(members)
    while True:
        key = _member_key(window)
        if not records:
            members[key] = _value(window, (*path, key), scan, hook)
        elif names is None:
            members[key] = _scanned(window, scan)
        else:  # the record made takes named's equal strings, keyed by its account's
            named = hook.named = names.get(key)
            value = _scanned(window, scan)
            hook.named = None  # (left set when that raises: the decoding is given up)
            if named is not None and type(value) is AccountRecord and named.account == key:
                key = named.account
            members[key] = value
        match window.next_char():
            case ",":
                window.pos += 1
            case "}":
                window.pos += 1
                return hook(members)
            case _:
                raise Irregular


def _member_key(window: _Window) -> str:
    """The key of the object member at the window's position (before white space), the
    position moved onto its value's first character. A key without escapes, its colon and
    the white space around them are one match (a record's key is one of a million); any
    other key, or a member the window's end cuts, goes step by step."""
    match = _SIMPLE_MEMBER.match(window.text, window.pos)
    if match is not None and match.end() < len(window.text):
        window.pos = match.end()
        return match.group(1)
    if window.next_char() != '"':
        raise Irregular
    key = _key(window)
    if window.next_char() != ":":
        raise Irregular
    window.pos += 1
    window.next_char()
    return key


def _key(window: _Window) -> str:
    """The string at the window's position (on its opening quote)."""
    while True:
        try:
            key, end = json.decoder.scanstring(window.text, window.pos + 1, True)  # type: ignore[attr-defined]
        except json.JSONDecodeError:
            if window.more():
                continue
            raise Irregular from None
        window.pos = end
        return str(key)
