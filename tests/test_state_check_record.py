"""The state's check record: the schema is skipped only for the very bytes that passed it."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from reconciler import __version__, schemas
from reconciler.errors import StateCorrupt
from reconciler.seals import Seal
from reconciler.stores import checked
from reconciler.stores.local import LocalStore
from tests.support.blocking import returns_within
from tests.support.builders import sample_state

SEAL = Seal(b"\x01" * 32)  # the tests' own key; the command line uses the user's


def schema_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A spy on the state schema check: the name of each schema checked (it still runs)."""
    calls: list[str] = []
    real = schemas.check

    def check(name: str, document: object) -> tuple[str, ...]:
        calls.append(name)
        return real(name, document)

    monkeypatch.setattr(schemas, "check", check)
    return calls


@pytest.fixture
def state_file(tmp_path: Path) -> Path:
    """A written state (one snapshot, no journal records)."""
    path = tmp_path / "state.json"
    LocalStore(path).write(sample_state())
    return path


def test_a_second_read_of_the_same_bytes_skips_the_schema(
    state_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first read checks and records; a fresh store reading the same bytes does not."""
    calls = schema_checks(monkeypatch)
    first = LocalStore(state_file, check_record=SEAL).read()
    assert calls == ["state"]
    record = checked.record_path(state_file)
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    assert LocalStore(state_file, check_record=SEAL).read() == first
    assert calls == ["state"]


def test_new_bytes_are_checked_again(state_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After the snapshot changes, its record no longer matches: the schema runs."""
    LocalStore(state_file, check_record=SEAL).read()
    store = LocalStore(state_file, check_record=SEAL)
    current = store.read()
    assert current is not None
    store.write(current.successor(), force=True)  # a new snapshot
    calls = schema_checks(monkeypatch)
    LocalStore(state_file, check_record=SEAL).read()
    assert calls == ["state"]


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda b: b.replace(b'"format": 2', b'"format": 3'), id="format"),
        pytest.param(lambda b: b.replace(b'"tool": "reconciler ', b'"tool": "other '), id="tool"),
        pytest.param(lambda b: b[:-5], id="truncated"),
        pytest.param(lambda b: b"not json", id="garbage"),
    ],
)
def test_a_record_that_does_not_check_out_is_ignored_and_rewritten(
    state_file: Path, monkeypatch: pytest.MonkeyPatch, spoil: object
) -> None:
    """A spoilt record means a full check, and a new record."""
    LocalStore(state_file, check_record=SEAL).read()
    record = checked.record_path(state_file)
    spoilt = spoil(record.read_bytes())  # type: ignore[operator]
    assert spoilt != record.read_bytes()
    record.write_bytes(spoilt)
    calls = schema_checks(monkeypatch)
    LocalStore(state_file, check_record=SEAL).read()
    assert calls == ["state"]
    LocalStore(state_file, check_record=SEAL).read()
    assert calls == ["state"]


def test_a_record_of_other_bytes_lets_no_invalid_state_through(state_file: Path) -> None:
    """A state broken after its record was written is refused: the record names old bytes."""
    LocalStore(state_file, check_record=SEAL).read()
    text = state_file.read_text()
    state_file.write_text(text.replace('"enabled":true', '"enabled":"yes"', 1))
    with pytest.raises(StateCorrupt):
        LocalStore(state_file, check_record=SEAL).read()


def test_without_the_record_nothing_is_written_or_skipped(
    state_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``check_record=None`` (--no-cache) checks every time and writes no record."""
    calls = schema_checks(monkeypatch)
    LocalStore(state_file, check_record=None).read()
    LocalStore(state_file, check_record=None).read()
    assert calls == ["state", "state"]
    assert not checked.record_path(state_file).exists()


def test_a_record_others_could_write_is_not_believed(
    state_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group-writable record is ignored."""
    LocalStore(state_file, check_record=SEAL).read()
    checked.record_path(state_file).chmod(0o664)
    calls = schema_checks(monkeypatch)
    LocalStore(state_file, check_record=SEAL).read()
    assert calls == ["state"]


def test_a_fifo_at_the_record_never_blocks_the_read(
    state_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``mkfifo state.json.checked``: the read checks the schema at once (a FIFO is no
    record; the read holds the state's lock, so blocking would block every run), and the
    FIFO is replaced by a real record."""
    record = checked.record_path(state_file)
    os.mkfifo(record)
    calls = schema_checks(monkeypatch)
    returns_within(LocalStore(state_file, check_record=SEAL).read)
    assert calls == ["state"]
    assert stat.S_ISREG(record.lstat().st_mode)


def test_a_symlinked_record_is_not_believed(
    state_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record that is a symlink (even to an intact record of these bytes) is ignored."""
    LocalStore(state_file, check_record=SEAL).read()
    record = checked.record_path(state_file)
    elsewhere = tmp_path / "elsewhere.checked"
    record.rename(elsewhere)
    record.symlink_to(elsewhere)
    calls = schema_checks(monkeypatch)
    LocalStore(state_file, check_record=SEAL).read()
    assert calls == ["state"]


def test_a_huge_record_is_not_read(state_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A record far larger than any record written is ignored without reading it all."""
    LocalStore(state_file, check_record=SEAL).read()
    record = checked.record_path(state_file)
    with record.open("ab") as handle:
        handle.truncate(1 << 30)  # sparse: 1 GiB on paper
    calls = schema_checks(monkeypatch)
    LocalStore(state_file, check_record=SEAL).read()
    assert calls == ["state"]


def test_a_record_copied_from_another_state_is_not_believed(
    state_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another state's record names other bytes: this state is checked in full."""
    other = tmp_path / "other" / "state.json"
    other.parent.mkdir()
    store = LocalStore(other)
    store.write(sample_state())
    store.write(sample_state().successor(), force=True)  # other bytes than state_file's
    LocalStore(
        other, check_record=SEAL
    ).read()  # a fresh store reads the file: its record is written
    shutil.copy(checked.record_path(other), checked.record_path(state_file))
    calls = schema_checks(monkeypatch)
    LocalStore(state_file, check_record=SEAL).read()
    assert calls == ["state"]


@pytest.mark.skipif(os.getuid() != 0, reason="only root can give a file to another user")
def test_another_users_record_is_not_believed(
    state_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record owned by someone else is ignored, however intact."""
    LocalStore(state_file, check_record=SEAL).read()
    os.chown(checked.record_path(state_file), 65534, 65534)
    calls = schema_checks(monkeypatch)
    LocalStore(state_file, check_record=SEAL).read()
    assert calls == ["state"]


def _forged(snapshot: bytes, **fields: object) -> bytes:
    """A record anyone who can write files as the user could make: the right facts, a
    digest over them (what an unsealed record carried), and ``fields``."""
    import hashlib  # noqa: PLC0415 - only this helper forges records
    import json  # noqa: PLC0415

    facts = {
        "format": checked.FORMAT,
        "snapshot": checked.snapshot_digest(snapshot),
        "schema": hashlib.sha256(schemas.schema_path("state").read_bytes()).hexdigest(),
        "tool": f"reconciler {__version__}",
    }
    digest = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()
    return json.dumps({**facts, "digest": digest} | fields, sort_keys=True).encode()


@pytest.mark.parametrize(
    ("store_seal", "fields"),
    [
        pytest.param(SEAL, {}, id="digest-only"),
        pytest.param(SEAL, {"format": 1}, id="old-format"),
        pytest.param(SEAL, {"seal": "0" * 64}, id="wrong-seal"),
        pytest.param(Seal(b"\x02" * 32), {"seal": SEAL.sign(b"")}, id="other-key"),
    ],
)
def test_a_forged_record_lets_no_invalid_state_through(
    state_file: Path, store_seal: Seal, fields: dict[str, object]
) -> None:
    """A state edited to break its schema, beside a record forged for the new bytes with
    a correct digest: the record is not believed and the state is refused."""
    text = state_file.read_text()
    state_file.write_text(text.replace('"enabled":true', '"enabled":"yes"', 1))
    forged = _forged(state_file.read_bytes(), **fields)
    checked.record_path(state_file).write_bytes(forged)
    checked.record_path(state_file).chmod(0o600)
    with pytest.raises(StateCorrupt):
        LocalStore(state_file, check_record=store_seal).read()


def test_a_record_sealed_under_another_key_is_not_believed(
    state_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record written by another user or machine (another key), or before the key was
    rotated: the schema runs, and the record is resealed with this key."""
    LocalStore(state_file, check_record=Seal(b"\x02" * 32)).read()
    calls = schema_checks(monkeypatch)
    LocalStore(state_file, check_record=SEAL).read()
    LocalStore(state_file, check_record=SEAL).read()
    assert calls == ["state"]
