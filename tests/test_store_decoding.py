"""Decoding a state snapshot into records as it is parsed: the same state, the same refusals.

The fast path (``stores.decoding``) must give exactly what the plain reader gives
(``json.loads`` then ``model.from_json``), and refuse exactly what it refuses, in the same
words; it must also actually be taken for an ordinary document, or it saves nothing.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from reconciler.errors import StateCorrupt
from reconciler.stores import decoding, journal, model
from reconciler.stores.local import LocalStore
from reconciler.stores.model import AccountRecord, State
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
        {"format_version": 3, "snapshot": {"journal": "j", "folded": None}, "state": document}
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


def test_a_snapshot_read_as_text_keeps_its_byte_size_and_encoding(tmp_path: Path) -> None:
    """The store decodes the bytes itself (to let go of them early): UTF-16 still reads, as
    ``json.loads`` of bytes read it, and the snapshot's size stays its size in bytes."""
    state = replace(
        sample_state(),
        accounts={"alice": replace(sample_state().accounts["alice"], name="Ålice Žák")},
    )
    document = json.dumps(model.to_json(state), ensure_ascii=False)
    for encoding in ("utf-8", "utf-16"):
        path = tmp_path / f"{encoding}.json"
        path.write_bytes(document.encode(encoding))
        read = LocalStore(path).read()
        assert read == state
    raw = document.encode()
    loaded = journal.load(
        journal.text(raw, where=_WHERE, repair_hint=_HINT),
        b"",
        where=_WHERE,
        repair_hint=_HINT,
        snapshot_bytes=len(raw),
    )
    assert loaded.state == state
    assert loaded.snapshot_bytes == len(raw) > len(document)


def test_a_snapshot_that_is_not_text_is_refused_as_not_json(tmp_path: Path) -> None:
    """Bytes that decode as no text are refused as before: not valid JSON, nothing changed."""
    path = tmp_path / "state.json"
    path.write_bytes(b'{"format_version": 2, "lineage": "\xff\xfe\xfa"}')
    with pytest.raises(StateCorrupt, match="is not valid JSON"):
        LocalStore(path).read()
    assert path.read_bytes() == b'{"format_version": 2, "lineage": "\xff\xfe\xfa"}'
