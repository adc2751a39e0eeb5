"""Decoding a state snapshot into records as it is parsed: the same state, the same refusals.

The fast path (``stores.decoding``) must give exactly what the plain reader gives
(``json.loads`` then ``model.from_json``), and refuse exactly what it refuses, in the same
words; it must also actually be taken for an ordinary document, or it saves nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.errors import StateCorrupt
from reconciler.stores import decoding, files, journal, model
from reconciler.stores.local import LocalStore
from reconciler.stores.model import AccountRecord, State
from reconciler.values import frozen, replace
from tests.support.builders import sample_state

_WHERE, _HINT = "state.json", "restore it"


def _with_adopted(state: State) -> State:
    """``sample_state`` plus an adopted account with every optional field."""
    bob = AccountRecord(
        account="bob",
        name="Bob",
        email="bob@example.com",
        role_ids=("7",),
        enabled=False,
        last_task_id="t-2",
        created_at="2024-01-01T00:00:00Z",
        updated_at="2024-01-02T00:00:00Z",
        source_commit="abc",
        adopted=True,
    )
    return replace(state, accounts={**state.accounts, "bob": bob})


def _fast(document: Any, *, schema_checked: bool = False) -> State | None:
    decoded = decoding.loads(json.dumps(document).encode(), schema_checked=schema_checked)
    return decoding.state(decoded, where=_WHERE, repair_hint=_HINT, schema_checked=schema_checked)


def _plain_error(document: Any) -> str:
    with pytest.raises(StateCorrupt) as caught:
        model.from_json(document, where=_WHERE, repair_hint=_HINT)
    return str(caught.value)


@pytest.mark.parametrize("schema_checked", [False, True])
def test_an_ordinary_document_takes_the_fast_path_and_decodes_the_same(
    schema_checked: bool,
) -> None:
    """Records, pending batches (targets included) and events come out as the plain reader's."""
    state = _with_adopted(sample_state())
    document = model.to_json(state)
    fast = _fast(document, schema_checked=schema_checked)
    assert fast is not None  # the path is taken: no plain re-decode
    assert fast == model.from_json(document, where=_WHERE) == state
    assert all(account == record.account for account, record in fast.accounts.items())


def test_a_format_1_document_decodes_the_same() -> None:
    """Records without ``adopted`` (format 1) read as not adopted, on the fast path too."""
    document = model.to_json(sample_state())
    document["format_version"] = 1
    fast = _fast(document)
    assert fast is not None
    assert fast == model.from_json(document, where=_WHERE)


@pytest.mark.parametrize("schema_checked", [False, True])
def test_a_record_shaped_wire_is_left_to_the_plain_reader(schema_checked: bool) -> None:
    """A wire that looks like a record stays the JSON it is: the plain reader decodes it."""
    document = model.to_json(sample_state())
    wire = {"name": "x", "email": "y", "role_ids": ["1"], "enabled": True}
    document["pending"][0]["entries"][0]["wire"] = wire
    assert _fast(document, schema_checked=schema_checked) is None
    data = json.dumps(
        {
            "format_version": journal.SNAPSHOT_FORMAT,
            "snapshot": {"journal": "j", "folded": None},
            "state": document,
        }
    ).encode()
    loaded = journal.load(data, b"", where=_WHERE, repair_hint=_HINT)
    assert loaded.state.pending[0].entries[0].wire == wire


def _broken(change: str) -> dict[str, Any]:
    document = model.to_json(_with_adopted(sample_state()))
    match change:
        case "numeric role id":
            document["accounts"]["bob"]["role_ids"] = [7]
        case "unknown key":
            document["accounts"]["bob"]["colour"] = "blue"
        case "missing email":
            del document["accounts"]["bob"]["email"]
        case "accounts a list":
            document["accounts"] = [document["accounts"]["bob"]]
        case "bad target":
            document["pending"][0]["entries"][0]["target"]["enabled"] = "yes"
        case "bad lineage":
            document["lineage"] = "not-a-uuid"
        case "newer and a bad record":
            document["format_version"] = 99
            document["accounts"]["bob"]["role_ids"] = [7]
    return document


@pytest.mark.parametrize(
    "change",
    [
        "numeric role id",
        "unknown key",
        "missing email",
        "accounts a list",
        "bad target",
        "bad lineage",
        "newer and a bad record",
    ],
)
def test_a_bad_document_is_refused_in_the_plain_readers_words(change: str) -> None:
    """Whatever the plain reader refuses, reading the snapshot refuses with its message."""
    document = _broken(change)
    expected = _plain_error(document)
    with pytest.raises(StateCorrupt) as caught:
        journal.load(json.dumps(document).encode(), b"", where=_WHERE, repair_hint=_HINT)
    assert str(caught.value) == expected


def test_records_share_their_repeated_strings() -> None:
    """Role ids, task ids and timestamps are one object across records, not one each."""
    state = _with_adopted(sample_state())
    state = replace(
        state,
        accounts={
            **state.accounts,
            "carol": replace(state.accounts["bob"], account="carol", name="Carol"),
        },
    )
    fast = _fast(model.to_json(state))
    assert fast is not None
    bob, carol = fast.accounts["bob"], fast.accounts["carol"]
    assert bob.role_ids[0] is carol.role_ids[0]
    assert bob.created_at is carol.created_at
    assert bob.last_task_id is carol.last_task_id


def _chunked(raw: bytes, size: int) -> decoding.Chunks:
    return decoding.Chunks([raw[i : i + size] for i in range(0, len(raw), size)])


def _snapshot_bytes(state: State, *, indent: int | None, encoding: str = "utf-8") -> bytes:
    wrapper = {
        "format_version": journal.SNAPSHOT_FORMAT,
        "snapshot": {"journal": "j", "folded": None},
        "state": model.to_json(state),
    }
    return json.dumps(wrapper, indent=indent, ensure_ascii=False).encode(encoding)


def _non_ascii() -> State:
    state = _with_adopted(sample_state())
    alice = replace(
        state.accounts["alice"], account="ålice", name="Ålice Žák 😀", email="ålice@example.com"
    )
    return replace(state, serial=12345678901234, accounts={**state.accounts, "ålice": alice})


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 10_000])
@pytest.mark.parametrize("indent", [None, 2])
@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16"])
def test_a_snapshot_decoded_chunk_by_chunk_is_the_same_state(
    size: int, indent: int | None, encoding: str
) -> None:
    """However the bytes are cut (inside numbers, keys, multi-byte characters, white space),
    the chunked decoder gives the plain reader's state and the snapshot's size in bytes."""
    state = _non_ascii()
    raw = _snapshot_bytes(state, indent=indent, encoding=encoding)
    loaded = journal.load(_chunked(raw, size), b"", where=_WHERE, repair_hint=_HINT)
    assert loaded.state == state
    assert loaded.snapshot_bytes == len(raw)
    assert loaded.journal == "j"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"format_version": 2} {}',  # more after the document
        b'{"format_version": 2, "accounts": {"a": }}',  # not JSON
        b'{"format_version": 2, "lineage": "\xff\xfe\xfa"}'.decode("unicode_escape").encode(
            "latin-1"
        ),  # not UTF-8
        b'{"format_version": 2, "accounts": {"a": {"name": "x"}',  # cut short
        b"[]",
        b'{"accounts": {"a": {"name": "x", "email": "y", "role_ids": ["1"], "enabled": true}}}',
    ],
)
def test_what_the_chunked_decoder_does_not_take_goes_to_the_plain_reader(
    tmp_path: Path, raw: bytes
) -> None:
    """Chunked, it is Irregular (or refused after a clean decode); read from a file, the
    refusal is the plain reader's own, word for word, and the file is left as it was."""
    with pytest.raises((decoding.Irregular, StateCorrupt)):
        journal.load(_chunked(raw, 5), b"", where=_WHERE, repair_hint=_HINT)
    with pytest.raises(StateCorrupt) as plain:
        journal.load(raw, b"", where=str(tmp_path / "state.json"), repair_hint=_HINT)
    path = tmp_path / "state.json"
    path.write_bytes(raw)
    with pytest.raises(StateCorrupt) as read:
        LocalStore(path).read()
    assert str(read.value) == str(plain.value)
    assert path.read_bytes() == raw


def test_a_large_state_file_reads_back_through_the_chunked_path(tmp_path: Path) -> None:
    """A state larger than a chunk is written and read back whole (by another handle)."""
    first = sample_state()
    alice = first.accounts["alice"]
    accounts = {
        f"user{i:06d}": replace(alice, account=f"user{i:06d}", name=f"User {i}")
        for i in range(decoding.CHUNK_BYTES // 100)
    }
    state = replace(first, accounts=accounts)
    path = tmp_path / "state.json"
    LocalStore(path).write(state)
    assert path.stat().st_size > decoding.CHUNK_BYTES
    assert LocalStore(path).read() == state


def test_a_snapshot_that_is_not_text_is_refused_as_not_json(tmp_path: Path) -> None:
    """Bytes that decode as no text are refused as before: not valid JSON, nothing changed."""
    path = tmp_path / "state.json"
    path.write_bytes(b'{"format_version": 2, "lineage": "\xff\xfe\xfa"}')
    with pytest.raises(StateCorrupt, match="is not valid JSON"):
        LocalStore(path).read()
    assert path.read_bytes() == b'{"format_version": 2, "lineage": "\xff\xfe\xfa"}'


@frozen
class _Named:
    account: str
    name: str
    email: str


@pytest.mark.parametrize("chunk", [None, 7])
def test_records_take_the_equal_strings_of_the_names_given(chunk: int | None) -> None:
    """Chunked or whole, a snapshot read with ``names`` is the same state, each record
    holding their strings where equal (non-ASCII ones too); the key too when chunked."""
    state = _non_ascii()
    raw = _snapshot_bytes(state, indent=None)
    named = state.accounts["ålice"]
    names = {
        "ålice": _Named(
            account="".join(list("ålice")),
            name="".join(list(named.name)),
            email="".join(list(named.email)),
        ),
        "bob": _Named(account="".join(list("bob")), name="Other", email="other@example.com"),
    }
    data = raw if chunk is None else _chunked(raw, chunk)
    loaded = journal.load(data, b"", where=_WHERE, repair_hint=_HINT, names=names)
    assert loaded.state == state
    record = loaded.state.accounts["ålice"]
    assert record.account is names["ålice"].account
    assert record.name is names["ålice"].name
    assert record.email is names["ålice"].email
    assert loaded.state.accounts["bob"].name == "Bob"
    assert loaded.state.accounts["bob"].account is names["bob"].account
    key = next(key for key in loaded.state.accounts if key == "ålice")
    assert (key is names["ålice"].account) is (chunk is not None)


class _Logged(dict[str, _Named]):
    """Names that log each account the decoder asks about (as it makes its record)."""

    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    def get(self, key: str, default: Any = None) -> Any:
        self.log.append(f"record {key}")
        return super().get(key, default)


def test_chunks_from_an_iterator_are_read_only_as_the_decoder_needs_them() -> None:
    """Chunks read as they are asked for: the first records are made before the last
    chunk is read (the bytes never stand whole), and the size is that of all of them."""
    first = sample_state()
    alice = first.accounts["alice"]
    state = replace(
        first,
        accounts={f"user{i:04d}": replace(alice, account=f"user{i:04d}") for i in range(200)},
    )
    raw = _snapshot_bytes(state, indent=None)
    log: list[str] = []

    def read() -> Iterator[bytes]:
        for start in range(0, len(raw), 1000):
            log.append("chunk")
            yield raw[start : start + 1000]

    loaded = journal.load(
        decoding.Chunks(read()), b"", where=_WHERE, repair_hint=_HINT, names=_Logged(log)
    )
    assert loaded.state == state
    assert loaded.snapshot_bytes == len(raw)
    assert log.count("chunk") == -(-len(raw) // 1000) > 10
    last_chunk = len(log) - 1 - log[::-1].index("chunk")
    assert log.index("record user0000") < log.index("record user0100") < last_chunk


def test_without_a_check_record_the_file_is_read_as_it_is_decoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No check record to look up: the snapshot is decoded from the file chunk by chunk
    (never read whole first), the same state and the same size; its journal is replayed."""
    path = tmp_path / "state.json"
    store = LocalStore(path)
    state = sample_state()
    store.write(state)
    later = state.successor(
        accounts={**state.accounts, "zed": replace(state.accounts["alice"], account="zed")}
    )
    store.write(later)  # a journal record
    assert path.with_name("state.json.journal").stat().st_size > 0

    def read_whole_first(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the snapshot was read whole before decoding")

    monkeypatch.setattr(files, "read_pair", read_whole_first)
    monkeypatch.setattr(decoding, "CHUNK_BYTES", 64)
    fresh = LocalStore(path)
    assert fresh.read() == later
    fresh.write(later.successor())  # the signature it read at lets it append
    assert LocalStore(path).read() == later.successor()


@pytest.mark.parametrize("size", [1, 5, 64, 10_000])
def test_keys_written_with_escapes_decode_as_the_plain_reader_does(size: int) -> None:
    """Keys spelt with \\u escapes (an account's, a record's, the state's own) take the
    step-by-step path and mean what the plain reader reads: the same state."""
    state = _non_ascii()
    raw = _snapshot_bytes(state, indent=2, encoding="utf-8")
    for plain, escaped in (
        (b'"accounts":', b'"\\u0061ccounts":'),
        (b'"alice":', b'"\\u0061lice" :'),
        (b'"name":', b'"n\\u0061me":'),
        (b'"lineage":', b'"lineag\\u0065"\n:'),
    ):
        assert plain in raw
        raw = raw.replace(plain, escaped)
    loaded = journal.load(_chunked(raw, size), b"", where=_WHERE, repair_hint=_HINT)
    assert loaded.state == journal.load(raw, b"", where=_WHERE, repair_hint=_HINT).state
    assert loaded.state == state


def test_a_key_with_a_raw_control_character_is_refused() -> None:
    """A control character inside a key is not JSON: never read as a plain key."""
    raw = _snapshot_bytes(_non_ascii(), indent=None, encoding="utf-8").replace(
        b'"alice":', b'"al\x01ice":'
    )
    with pytest.raises((decoding.Irregular, StateCorrupt)):
        journal.load(_chunked(raw, 10_000), b"", where=_WHERE, repair_hint=_HINT)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("chunk", [None, 3, 10_000], ids=["plain", "chunk-3", "chunk-10k"])
def test_a_number_json_has_not_is_refused_as_not_json(constant: str, chunk: int | None) -> None:
    """NaN or an infinity anywhere in a snapshot (a hand edit: Python's json reads them, JSON
    has none, and a NaN percent passes every guard-rail comparison): not valid JSON, on the
    plain and the chunked path alike, never a crash later in plan."""
    raw = _snapshot_bytes(sample_state(), indent=None)
    document = json.loads(raw)
    document["state"]["serial"] = float("nan")  # any number: refused before any check
    spoilt = json.dumps(document).encode().replace(b"NaN", constant.encode())
    data = spoilt if chunk is None else _chunked(spoilt, chunk)
    with pytest.raises(StateCorrupt, match=f"not valid JSON .{constant} is not a JSON number"):
        journal.load(data, b"", where=_WHERE, repair_hint=_HINT)


def test_a_journal_record_with_nan_is_refused() -> None:
    """A journal line holding NaN (its CRC recomputed, so it reads as intact) is refused."""
    import zlib  # noqa: PLC0415 - only this test forges a journal line

    raw = _snapshot_bytes(sample_state(), indent=None)
    payload = b'{"journal":"j","serial":NaN}'
    line = b"%d %08x %s\n" % (len(payload), zlib.crc32(payload), payload)
    with pytest.raises(StateCorrupt, match="record 1 of its journal"):
        journal.load(raw, line, where=_WHERE, repair_hint=_HINT)


@pytest.mark.parametrize("depth", [600, 100_000])
@pytest.mark.parametrize("chunk", [None, 10_000], ids=["plain", "chunked"])
def test_a_state_nested_too_deeply_is_refused(depth: int, chunk: int | None) -> None:
    """Lists nested deeper than the readers can recurse (in the policy, where the schema
    walks them; or past json's own limit): StateCorrupt saying so, never a RecursionError."""
    document = json.loads(_snapshot_bytes(sample_state(), indent=None))
    document["state"]["policy"] = {"protected_accounts": ["NEST", "NEST"]}
    nest = "[" * depth + '"a"' + "]" * depth
    raw = json.dumps(document).replace('"NEST"', nest).encode()
    data = raw if chunk is None else _chunked(raw, chunk)
    with pytest.raises(StateCorrupt, match="nests its lists or objects too deeply"):
        journal.load(data, b"", where=_WHERE, repair_hint=_HINT)


@pytest.mark.parametrize(
    "spelt",
    [b"\\ud800", b"\\uDFFF", b"x\\udc00y", b"\xed\xa0\x80"],
    ids=["high-escape", "low-escape-upper", "low-inside", "utf8-bytes-of-one"],
)
@pytest.mark.parametrize("chunk", [None, 1, 3, 10_000], ids=["plain", "c1", "c3", "c10k"])
def test_a_lone_surrogate_in_a_snapshot_is_refused(spelt: bytes, chunk: int | None) -> None:
    """A name holding a lone surrogate (escaped, or in its bytes): not Unicode, refused as
    corrupt on every path (it crashed the plan's JSON and `show` once printed)."""
    raw = _snapshot_bytes(sample_state(), indent=None).replace(b'"Alice', b'"' + spelt + b"Alice")
    assert raw != _snapshot_bytes(sample_state(), indent=None)
    data = raw if chunk is None else _chunked(raw, chunk)
    with pytest.raises(StateCorrupt, match="lone surrogate"):
        journal.load(data, b"", where=_WHERE, repair_hint=_HINT)


@pytest.mark.parametrize("chunk", [None, 1, 10_000], ids=["plain", "c1", "c10k"])
def test_a_surrogate_pair_escape_is_a_character_not_a_refusal(chunk: int | None) -> None:
    """ "\\ud83d\\ude00" (a pair, as an ASCII-only writer escapes 😀) is one character: read."""
    raw = _snapshot_bytes(sample_state(), indent=None).replace(b'"Alice', b'"\\ud83d\\ude00Alice')
    data = raw if chunk is None else _chunked(raw, chunk)
    loaded = journal.load(data, b"", where=_WHERE, repair_hint=_HINT)
    assert any(r.name.startswith("\U0001f600") for r in loaded.state.accounts.values())


def test_a_lone_surrogate_in_a_journal_record_is_refused(tmp_path: Path) -> None:
    """A journal line (its CRC recomputed) that renames an account to a lone surrogate: the
    replayed state is refused, the files left as they were."""
    import zlib  # noqa: PLC0415 - only this test forges a journal line

    path = tmp_path / "state.json"
    store = LocalStore(path)
    state = sample_state()
    store.write(state)
    account = next(iter(state.accounts))
    renamed = replace(state.accounts[account], name="Renamed")
    store.write(
        replace(state, serial=state.serial + 1, accounts={**state.accounts, account: renamed})
    )
    journal_path = path.with_name(path.name + ".journal")
    lines = journal_path.read_bytes().splitlines(keepends=True)
    assert lines
    assert b'"Renamed"' in lines[-1]
    payload = lines[-1].split(b" ", 2)[2].rstrip(b"\n").replace(b'"Renamed"', b'"\\udbff"')
    lines[-1] = b"%d %08x %s\n" % (len(payload), zlib.crc32(payload), payload)
    journal_path.write_bytes(b"".join(lines))
    before = path.read_bytes(), journal_path.read_bytes()
    with pytest.raises(StateCorrupt, match="lone surrogate"):
        LocalStore(path).read()
    assert (path.read_bytes(), journal_path.read_bytes()) == before


@pytest.mark.parametrize("spelt", [b"\\ud800", b"\xed\xa0\x80"], ids=["escape", "utf8-bytes"])
def test_a_lone_surrogate_cut_between_two_chunks_is_refused(spelt: bytes) -> None:
    """Wherever the chunks' border falls in the spelling of a lone surrogate (the chunk
    before ending anywhere in it), the chunked read refuses it."""
    clean = _snapshot_bytes(sample_state(), indent=None)
    raw = clean.replace(b'"Alice', b'"' + spelt + b"Alice", 1)  # one place: that border
    assert raw.count(spelt) == 1
    at = raw.index(spelt)
    for cut in range(at - 1, at + len(spelt) + 1):
        chunks = decoding.Chunks([raw[:cut], raw[cut : cut + 64], raw[cut + 64 :]])
        with pytest.raises(StateCorrupt, match="lone surrogate"):
            journal.load(chunks, b"", where=_WHERE, repair_hint=_HINT)
