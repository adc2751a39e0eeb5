"""The file backend's snapshot and journal: appends, torn records, compaction, old formats.

What every backend shares is in ``test_store_contract.py``; this is how the file backend
keeps it while writing only what changed: a write is one journal record; a record a crash
cut short is ignored and cut off; a damaged or foreign journal is refused, never dropped;
a compaction stopped halfway is finished, never replayed twice; older reconcilers refuse
the new snapshot instead of reading it without its journal.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import stat
import threading
from pathlib import Path

import pytest

from reconciler import formats, values
from reconciler.errors import StateConflict, StateCorrupt
from reconciler.formats import Verdict
from reconciler.stores import Expected, revisions, transfer
from reconciler.stores import journal as journals
from reconciler.stores import model as state_codec
from reconciler.stores.local import LocalStore
from reconciler.stores.model import AccountRecord, State
from reconciler.stores.recorded_policy import PolicyRecord
from tests.support.builders import sample_state
from tests.support.stores import with_account


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """Where the state file goes."""
    return tmp_path / "state.json"


def _journal(path: Path) -> Path:
    return path.with_name(path.name + ".journal")


def _lines(path: Path) -> list[dict[str, object]]:
    """The journal's records as JSON objects."""
    raw = _journal(path).read_bytes() if _journal(path).exists() else b""
    return [json.loads(line.split(b" ", 2)[2]) for line in raw.splitlines()]


def _written(path: Path, count: int) -> list[State]:
    """A first state and ``count`` successors (an account each), written one by one."""
    store = LocalStore(path)
    states = [sample_state()]
    store.write(states[0])
    for index in range(count):
        states.append(with_account(states[-1], f"user{index}"))
        store.write(states[-1])
    return states


def test_a_write_appends_one_record_of_what_changed(path: Path) -> None:
    """The snapshot stays as it was; each write is a record naming only its change."""
    states = _written(path, 3)
    snapshot = path.read_bytes()
    assert json.loads(snapshot)["state"]["serial"] == 1
    records = _lines(path)
    assert [r["serial"] for r in records] == [2, 3, 4]
    assert [sorted(r["accounts"]) for r in records] == [["user0"], ["user1"], ["user2"]]
    assert LocalStore(path).read() == states[-1]
    for written in (path, _journal(path)):
        assert stat.S_IMODE(written.stat().st_mode) == 0o600


def test_a_revised_state_writes_only_its_revision(path: Path) -> None:
    """An apply's revision of 1 account in 2,000 is a record of 1 account."""
    records = {
        f"u{i}": AccountRecord(account=f"u{i}", name="N", email="", role_ids=(), enabled=True)
        for i in range(2000)
    }
    store = LocalStore(path)
    first = State.empty().successor(accounts=records)
    store.write(first)
    changed = {"u7": AccountRecord(account="u7", name="M", email="", role_ids=(), enabled=True)}
    store.write(first.successor(accounts=revisions.revise(first.accounts, changed)))
    assert list(_lines(path)[-1]["accounts"]) == ["u7"]  # type: ignore[call-overload]
    assert _journal(path).stat().st_size < 1000


def test_a_record_cut_short_by_a_crash_is_ignored_then_cut_off(path: Path) -> None:
    """kill -9 mid-append: readers see the state before it; the next writer cuts it."""
    states = _written(path, 2)
    journal = _journal(path)
    whole = journal.read_bytes()
    journal.write_bytes(whole[:-7])  # the last record lost its tail (and its newline)
    reread = LocalStore(path).read()
    assert reread == states[1]
    store = LocalStore(path)
    assert store.read() == states[1]
    again = with_account(states[1], "after")
    store.write(again)
    assert LocalStore(path).read() == again
    assert [r["serial"] for r in _lines(path)] == [2, 3]


@pytest.mark.parametrize("where", [0, -1], ids=["first-record", "last-record"])
def test_a_damaged_record_is_refused_and_kept(path: Path, where: int) -> None:
    """A complete line whose checksum fails is corruption, at the end as in the middle."""
    states = _written(path, 3)
    journal = _journal(path)
    lines = journal.read_bytes().splitlines(keepends=True)
    line = lines[where]
    lines[where] = line[:-3] + (b"X" if line[-3:-2] != b"X" else b"Y") + line[-2:]
    journal.write_bytes(b"".join(lines))
    before = journal.read_bytes()
    for attempt in (
        LocalStore(path).read,
        lambda: LocalStore(path).write(with_account(states[-1], "x")),
    ):
        with pytest.raises(StateCorrupt, match="of its journal is damaged"):
            attempt()
    assert journal.read_bytes() == before


def test_a_journal_of_another_snapshot_is_refused_never_dropped(path: Path) -> None:
    """A snapshot restored from its backup, with the current journal beside it: refused."""
    store = LocalStore(path)
    states = _written(path, 1)
    store.compact()  # the snapshot at serial 2 goes to .backup at the next compaction
    store.write(with_account(states[-1], "later"))
    store.compact()
    store.write(with_account(with_account(states[-1], "later"), "latest"))
    shutil.copy(path.with_name("state.json.backup"), path)  # the user "restores" the backup
    with pytest.raises(StateCorrupt, match="do not belong to this snapshot") as caught:
        LocalStore(path).read()
    assert "move" in (caught.value.hint or "")
    assert _journal(path).exists()


def test_a_compaction_stopped_before_removing_the_journal_is_finished(path: Path) -> None:
    """The new snapshot names the journal it took in: left over, it is not replayed again."""
    states = _written(path, 2)
    leftover = _journal(path).read_bytes()
    LocalStore(path).compact()
    assert not _journal(path).exists()
    _journal(path).write_bytes(leftover)  # as if killed between the rename and the unlink
    store = LocalStore(path)
    assert store.read() == states[-1]
    later = with_account(states[-1], "later")
    store.write(later)
    assert LocalStore(path).read() == later
    assert json.loads(path.read_bytes())["state"]["serial"] == later.serial


def test_releasing_the_lock_compacts_a_journal_larger_than_its_snapshot(path: Path) -> None:
    """Journal smaller than the snapshot: kept. Larger: folded into a new snapshot."""
    big = State.empty().successor(
        accounts={
            f"u{i}": AccountRecord(account=f"u{i}", name="N", email="", role_ids=(), enabled=True)
            for i in range(200)
        }
    )
    store = LocalStore(path)
    with store.lock("apply"):
        store.write(big)
        store.write(with_account(big, "one"))
    assert _journal(path).exists()
    with store.lock("apply"):
        state = store.read()
        assert state is not None
        for index in range(150):
            state = with_account(state, f"more{index}")
            store.write(state)
    assert not _journal(path).exists()
    assert json.loads(path.read_bytes())["state"]["serial"] == state.serial
    assert LocalStore(path).read() == state


def test_a_long_run_compacts_once_the_journal_outgrows_its_bound(path: Path) -> None:
    """Past four times the snapshot (and the floor), a write is a new snapshot instead."""
    store = LocalStore(path, journal_floor=0)
    state = sample_state()
    store.write(state)
    serials = []
    for index in range(40):
        state = with_account(state, f"user{index}")
        store.write(state)
        serials.append(json.loads(path.read_bytes())["state"]["serial"])
    assert 1 < len(set(serials)) < 40  # some writes compacted, most appended
    assert LocalStore(path).read() == state


def test_older_reconcilers_refuse_the_snapshot_as_newer(path: Path) -> None:
    """Format 4 is the wrapper: a reader of documents up to 2 or 3 says "newer", never
    misreads (nor writes the state back without its recorded policy)."""
    _written(path, 1)
    wrapper = json.loads(path.read_bytes())
    assert wrapper["format_version"] == 4
    for older in (2, 3):
        verdict = formats.classify(wrapper, newest=older)
        assert verdict.verdict is Verdict.NEWER
        assert verdict.problem == f"format_version 4; this reconciler reads up to {older}"
    assert wrapper["state"]["format_version"] == state_codec.FORMAT_VERSION


def test_a_format_3_snapshot_of_a_format_2_document_is_read_and_rewrapped(path: Path) -> None:
    """The previous wrapper (3, before the recorded policy) reads with its journal; the next
    write's compaction wraps it as 4 and the document as 3."""
    first = sample_state()
    document = {**state_codec.to_json(first), "format_version": 2}
    wrapper = {"format_version": 3, "snapshot": {"journal": "j", "folded": None}, "state": document}
    path.write_text(json.dumps(wrapper), encoding="utf-8")
    store = LocalStore(path)
    assert store.read() == first
    second = with_account(first, "bob")
    store.write(second, force=True)
    rewritten = json.loads(path.read_bytes())
    assert (rewritten["format_version"], rewritten["state"]["format_version"]) == (4, 3)
    assert LocalStore(path).read() == second


def test_the_wrapper_stays_newer_than_every_document_format() -> None:
    """A document format catching up with the wrapper's would let older readers misread it."""
    assert journals.SNAPSHOT_FORMAT > state_codec.FORMAT_VERSION


def test_an_older_reconcilers_file_is_read_and_wrapped_by_the_first_write(path: Path) -> None:
    """A plain format-2 document (no journal) reads as it is; the first write wraps it."""
    first = sample_state()
    path.write_text(json.dumps(state_codec.to_json(first)), encoding="utf-8")
    store = LocalStore(path)
    assert store.read() == first
    second = with_account(first, "bob")
    store.write(second)
    assert json.loads(path.read_bytes())["format_version"] == journals.SNAPSHOT_FORMAT
    assert not _journal(path).exists()  # wrapping is a new snapshot, not a record
    assert LocalStore(path).read() == second


def test_a_journal_without_its_snapshot_is_refused(path: Path) -> None:
    """The snapshot is gone but its journal is not: evidence, never a new empty state."""
    _written(path, 1)
    path.unlink()
    with pytest.raises(StateCorrupt, match="does not exist, but its journal"):
        LocalStore(path).read()
    with pytest.raises(StateCorrupt, match="does not exist, but its journal"):
        LocalStore(path).write(sample_state())


def test_a_push_starts_a_new_snapshot_and_journal(path: Path) -> None:
    """`state push` replaces the state: a new snapshot, the old journal gone."""
    states = _written(path, 2)
    pushed = state_codec.to_json(State(lineage=states[0].lineage, serial=9))
    transfer.push(LocalStore(path), pushed)
    assert not _journal(path).exists()
    assert transfer.pull(LocalStore(path)) == pushed


def _race(path: Path, base: State, names: list[str]) -> list[str]:
    """Writers (each having read ``base``) write a successor at once: who won, or conflict."""
    writers = [LocalStore(path) for _ in names]
    for writer in writers:
        writer.read()
    start, results = threading.Barrier(len(writers)), []

    def write(writer: LocalStore, name: str) -> None:
        start.wait(10)
        try:
            writer.write(with_account(base, name))
            results.append(name)
        except StateConflict:
            results.append("conflict")

    threads = [
        threading.Thread(target=write, args=pair) for pair in zip(writers, names, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return results


def test_two_writers_racing_from_one_serial_exactly_one_wins(path: Path) -> None:
    """Without the lock, writers append at the same serial at once: one record lands."""
    LocalStore(path).write(sample_state())
    for attempt in range(10):
        current = LocalStore(path).read()
        assert current is not None
        results = _race(path, current, [f"w{attempt}-{i}" for i in range(4)])
        winners = [name for name in results if name != "conflict"]
        assert len(winners) == 1, results
        after = LocalStore(path).read()
        assert after is not None
        assert (after.serial, winners[0] in after.accounts) == (current.serial + 1, True)


class _Probing(LocalStore):
    """A store noting, at each fence of a write, whether another reader could get in now."""

    probes: list[bool]

    def fence(self) -> None:
        """Try a shared lock on the snapshot from another descriptor, without waiting."""
        super().fence()
        if not self.file.exists():
            return
        fd = os.open(self.file, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            self.probes.append(True)
        except BlockingIOError:
            self.probes.append(False)
        finally:
            os.close(fd)


def test_a_write_holds_the_snapshot_exclusively_from_its_check_to_its_append(path: Path) -> None:
    """Between the compare-and-swap and the record landing, nobody else can read or write."""
    LocalStore(path).write(sample_state())
    store = _Probing(path)
    store.probes = []
    current = store.read()
    assert current is not None
    store.write(with_account(current, "bob"))
    assert store.probes[1:] == [False]  # the fence before the append: the file is held


def test_a_write_naming_what_it_replaces_is_still_compared(path: Path) -> None:
    """A push-style write over a moved state is refused, and leaves both files as they were."""
    states = _written(path, 1)
    before = (path.read_bytes(), _journal(path).read_bytes())
    jump = State(lineage=states[0].lineage, serial=40)
    with pytest.raises(StateConflict):
        LocalStore(path).write(jump, expected=Expected.of(states[0]))
    assert (path.read_bytes(), _journal(path).read_bytes()) == before


def _dumped(state: State, *, journal: str, folded: str | None) -> bytes:
    """The snapshot's bytes as ``json.dumps`` of the whole wrapper writes them."""
    wrapper = {
        "format_version": journals.SNAPSHOT_FORMAT,
        "snapshot": {"journal": journal, "folded": folded},
        "state": state_codec.to_json(state),
    }
    return json.dumps(wrapper, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _every_field_set(account: str, **changes: object) -> AccountRecord:
    """A record with every field holding a value (not its default), ``changes`` applied."""
    given: dict[str, object] = {}
    for name in values.fields(AccountRecord):
        kind = AccountRecord.__annotations__[name]
        if kind == "bool":
            given[name] = True
        elif kind.startswith("tuple"):
            given[name] = ("1002", "1001")
        else:
            given[name] = f'{name} "é"\\\t\x01'
    given["account"] = account
    return AccountRecord(**{**given, **changes})  # type: ignore[arg-type]


def test_a_snapshot_is_the_bytes_json_dumps_writes_for_the_whole_document() -> None:
    """Put together a record at a time, the snapshot is byte for byte the one json.dumps
    writes: records with every field set, none of the optional ones, adopted or not,
    disabled, without roles, text needing escapes and not ASCII, records of other types
    than declared (a list of roles, a number), a pending batch, an event, a policy."""
    base = sample_state()
    records = [
        _every_field_set("all"),
        _every_field_set("all-off", enabled=False, adopted=False, role_ids=()),
        AccountRecord(account="bare", name="", email="", role_ids=(), enabled=True),
        AccountRecord(account='q"uote é', name="Zoë\n", email="%s", role_ids=("1",), enabled=False),
        AccountRecord(account="listed", name="L", email="l", role_ids=["1"], enabled=True),  # type: ignore[arg-type]
        AccountRecord(account="numbered", name="N", email="n", role_ids=(), enabled=1),  # type: ignore[arg-type]
        AccountRecord(
            account="task", name="T", email="t", role_ids=(), enabled=True, last_task_id=7
        ),  # type: ignore[arg-type]
    ]
    state = values.replace(
        base,
        accounts={**base.accounts, **{r.account: r for r in records}},
        policy=PolicyRecord(protected_accounts=("alice",)),
    )
    for case in (state, base, State.empty(), values.replace(state, accounts={})):
        for folded in (None, "old"):
            assert journals.snapshot(case, journal="j", folded=folded) == _dumped(
                case, journal="j", folded=folded
            )
    assert state_codec.account_text(records[0]) is not None  # the text path was taken
    assert state_codec.account_text(records[4]) is None  # and the dict path for the others
