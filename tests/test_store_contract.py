"""One contract for every state backend: the file backend and PostgreSQL.

Every store-level rule is a test here, run over both backends: reading and writing,
compare-and-swap, the serial's range, locking (with an injected clock: no test waits on
the wall clock), fencing of a holder that lost its lock, force-unlock, pull and push.
Backend-specific rules live in ``test_store_local.py`` and ``test_store_postgres.py``.

PostgreSQL tests use ``RECONCILER_TEST_PG_DSN`` (default: the local test database) with
a unique workspace per test; they skip when the server is unreachable, or fail under
``RECONCILER_REQUIRE_PG=1``.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from pathlib import Path

import pytest

from reconciler.errors import (
    StateConflict,
    StateCorrupt,
    StateError,
    StateLocked,
    StateLockLost,
)
from reconciler.formats import Verdict
from reconciler.stores import Expected, Lock, LockInfo, locked_error, transfer
from reconciler.stores import model as state_codec
from reconciler.stores.local import LocalStore
from reconciler.stores.model import (
    MAX_SERIAL,
    State,
)
from reconciler.stores.recorded_policy import PolicyRecord
from reconciler.values import frozen, replace
from tests.support.builders import sample_state
from tests.support.format_versions import VERSIONS, Mutate, check_answer
from tests.support.stores import Backend, FakeClock, held_in_thread, with_account

# -- reading and writing ------------------------------------------------------------


def test_empty_state_reads_none(backend: Backend) -> None:
    """A store nobody wrote to has no state."""
    assert backend.store.read() is None


def test_round_trip(backend: Backend) -> None:
    """What is written is read back identically, by this and another handle."""
    state = sample_state()
    backend.store.write(state)
    for store in (backend.store, backend.reopen()):
        loaded = store.read()
        assert loaded is not None
        assert state_codec.to_json(loaded) == state_codec.to_json(state)


def test_first_write_must_be_serial_1(backend: Backend) -> None:
    """Writing serial 2 into an empty store is a conflict and writes nothing."""
    with pytest.raises(StateConflict, match="does not exist"):
        backend.store.write(sample_state().successor())
    assert backend.store.read() is None


def test_successive_writes(backend: Backend) -> None:
    """Each write must follow the stored one; another handle sees the latest."""
    first = sample_state()
    backend.store.write(first)
    backend.store.write(with_account(first, "bob"))
    loaded = backend.reopen().read()
    assert loaded is not None
    assert loaded.serial == 2
    assert set(loaded.accounts) == {"alice", "bob"}


def test_wrong_lineage_is_a_conflict(backend: Backend) -> None:
    """A successor of another lineage is refused and nothing is written."""
    backend.store.write(sample_state())
    before = backend.raw()
    stranger = State(lineage=str(uuid.uuid4()), serial=1).successor()
    with pytest.raises(StateConflict, match="lineage"):
        backend.store.write(stranger)
    assert backend.raw() == before


def test_stale_serial_is_a_conflict(backend: Backend) -> None:
    """Two runners read serial 1; the second to write serial 2 fails, nothing written."""
    backend.store.write(sample_state())
    one, two = backend.reopen(), backend.reopen()
    read_one, read_two = one.read(), two.read()
    assert read_one is not None
    assert read_two is not None
    one.write(with_account(read_one, "bob"))
    with pytest.raises(StateConflict, match="serial"):
        two.write(with_account(read_two, "carol"))
    loaded = backend.store.read()
    assert loaded is not None
    assert (loaded.serial, set(loaded.accounts)) == (2, {"alice", "bob"})


def test_a_second_first_write_is_a_conflict(backend: Backend) -> None:
    """Two runners that both found no state: the second new state is refused."""
    backend.store.write(sample_state())
    before = backend.raw()
    with pytest.raises(StateConflict, match="exists"):
        backend.reopen().write(sample_state())
    assert backend.raw() == before


def test_expected_version_is_compared_exactly(backend: Backend) -> None:
    """A write that names what it replaces may jump serials, only over exactly that."""
    first = sample_state()
    backend.store.write(first)
    jump = State(lineage=first.lineage, serial=46)
    with pytest.raises(StateConflict, match="serial"):
        backend.store.write(jump, expected=Expected(lineage=first.lineage, serial=7))
    backend.store.write(jump, expected=Expected.of(first))
    loaded = backend.reopen().read()
    assert loaded is not None
    assert loaded.serial == 46


def test_force_write_skips_compare_and_swap(backend: Backend) -> None:
    """A forced write replaces a valid state of another lineage and serial."""
    backend.store.write(sample_state())
    stranger = State(lineage=str(uuid.uuid4()), serial=7)
    backend.store.write(stranger, force=True)
    loaded = backend.store.read()
    assert loaded is not None
    assert (loaded.lineage, loaded.serial) == (stranger.lineage, 7)


def test_the_largest_serial_is_written_and_none_beyond_it(backend: Backend) -> None:
    """Serials stop at 2^63-1 in both backends: beyond it a clear error, nothing written."""
    last = State(lineage=str(uuid.uuid4()), serial=MAX_SERIAL - 1)
    backend.store.write(last, force=True)
    backend.store.write(last.successor())
    before = backend.raw()
    for beyond in (last.successor().successor(), State(lineage=last.lineage, serial=2**70)):
        for force in (False, True):
            with pytest.raises(StateError, match="serials run from 1 to") as caught:
                backend.reopen().write(beyond, force=force)
            assert not isinstance(caught.value, StateConflict)
    assert backend.raw() == before
    loaded = backend.reopen().read()
    assert loaded is not None
    assert loaded.serial == MAX_SERIAL


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[]",
        '{"format_version": 1, "lineage": "x", "serial": 1, "accounts": {}}',
    ],
    ids=["not-json", "not-object", "schema-invalid"],
)
def test_corrupt_document_is_refused_and_kept(backend: Backend, text: str) -> None:
    """A corrupt stored document is refused by read, write and forced write, and kept."""
    state = sample_state()
    backend.store.write(state)
    backend.put_raw(text)
    with pytest.raises(StateCorrupt):
        backend.store.read()
    with pytest.raises(StateCorrupt):
        backend.store.write(with_account(state, "bob"))
    with pytest.raises(StateCorrupt):
        backend.reopen().write(with_account(state, "bob"), force=True)
    assert backend.raw() == text


def test_the_recorded_policy_is_kept_by_every_write(backend: Backend) -> None:
    """A policy recorded by one write reads back from another handle, survives writes that
    do not touch it, and a write that changes only the policy is a write of its own."""
    first = sample_state()
    backend.store.write(first)
    assert backend.reopen().read() == first
    assert first.policy is None
    strict = PolicyRecord(max_disable_count=2, protected_accounts=("alice",))
    second = first.successor(policy=strict)
    backend.store.write(second)
    assert backend.reopen().read() == second
    third = with_account(second, "bob")
    backend.store.write(third)
    assert backend.reopen().read() == third
    assert third.policy == strict
    loose = replace(strict, max_disable_count=50, protected_accounts=())
    fourth = third.successor(policy=loose)
    backend.store.write(fourth)
    read = backend.reopen().read()
    assert read == fourth
    assert read is not None
    assert read.policy == loose
    fifth = fourth.successor(policy=None)
    backend.store.write(fifth)
    assert backend.reopen().read() == fifth


def test_newer_format_version_is_refused(backend: Backend) -> None:
    """A document from a newer reconciler is refused with an upgrade hint, and kept."""
    state = sample_state()
    backend.store.write(state)
    document = {**state_codec.to_json(state), "format_version": state_codec.FORMAT_VERSION + 1}
    text = json.dumps(document)
    backend.put_raw(text)
    with pytest.raises(StateCorrupt, match="newer") as caught:
        backend.store.read()
    assert "upgrade" in (caught.value.hint or "")
    with pytest.raises(StateCorrupt, match="newer"):
        backend.store.write(with_account(state, "bob"), force=True)
    assert backend.raw() == text


@pytest.mark.parametrize(("mutate", "verdict", "tail"), VERSIONS)
def test_format_version_rule_holds_for_every_backend(
    backend: Backend, mutate: Mutate, verdict: Verdict, tail: str
) -> None:
    """Each row of the shared format_version table: read, or refused with that message."""
    state = sample_state()
    backend.store.write(state)
    backend.put_raw(json.dumps(mutate(state_codec.to_json(state))))
    caught: StateCorrupt | None = None
    try:
        backend.reopen().read()
    except StateCorrupt as exc:
        caught = exc
    where = backend.store.describe()
    check_answer(caught, verdict, tail, subject=f"state {where}", kind="state")


def test_location_names_the_state_without_secrets(backend: Backend) -> None:
    """describe() is the location's one-string form; absent() says loudly what is missing."""
    location = backend.store.location
    assert backend.store.describe() == location.describe()
    assert location.absent().startswith(f"no state at {location.where}")
    if backend.kind == "postgres":
        assert location.workspace is not None
        assert location.absent().endswith(f"(workspace {location.workspace})")
    else:
        assert location.workspace is None


# -- locking --------------------------------------------------------------------------


def test_second_lock_is_refused_naming_the_holder(backend: Backend) -> None:
    """While one runner holds the lock, another is refused with the holder's details."""
    with (
        backend.store.lock("apply") as lock,
        pytest.raises(StateLocked) as caught,
        backend.reopen().lock("plan"),
    ):
        pass
    error = caught.value
    assert error.lock_id == lock.lock_id
    for part in (lock.lock_id, socket.gethostname(), f"pid {os.getpid()}", "`apply`"):
        assert part in error.message
    assert lock.lock_id in (error.hint or "")


def test_the_lock_handle_and_the_recorded_holder(backend: Backend) -> None:
    """lock() yields a handle naming this process; holder() reads it back until release."""
    assert backend.store.holder() is None
    with backend.store.lock("apply") as lock:
        assert isinstance(lock, Lock)
        assert (lock.operation, lock.info.pid, lock.info.host) == (
            "apply",
            os.getpid(),
            socket.gethostname(),
        )
        lock.verify()
        assert backend.reopen().holder() == lock.info
    assert backend.reopen().holder() is None


_HOLDER = LockInfo(
    lock_id="l-1", operation="apply", host="ci-7", pid=42, user="ci", created_at="2024-01-01"
)


@pytest.mark.parametrize(
    ("holder", "detail", "message", "hint"),
    [
        pytest.param(
            _HOLDER,
            "",
            "state s is locked: lock l-1 held by ci@ci-7 pid 42 for `apply` since 2024-01-01",
            "wait for it to finish (--lock-timeout SECONDS waits), or if that process is "
            "gone: reconciler force-unlock l-1",
            id="holder-known",
        ),
        pytest.param(
            None,
            "",
            "state s is locked by another process",
            "wait for it to finish, or pass --lock-timeout SECONDS to wait",
            id="holder-unknown",
        ),
        pytest.param(
            None,
            "PostgreSQL backend pid 7",
            "state s is locked by another process (PostgreSQL backend pid 7)",
            "wait for it to finish, or pass --lock-timeout SECONDS to wait",
            id="holder-unknown-with-detail",
        ),
    ],
)
def test_locked_error_is_the_same_for_every_backend(
    holder: LockInfo | None, detail: str, message: str, hint: str
) -> None:
    """Both backends build StateLocked here: the holder and its force-unlock, or what is known."""
    error = locked_error("s", holder, detail=detail)
    assert (error.message, error.hint, error.lock_id) == (
        message,
        hint,
        holder.lock_id if holder else "",
    )


def test_lock_is_released_after_the_block(backend: Backend) -> None:
    """Leaving the block (even by an exception) frees the lock at once."""
    with pytest.raises(RuntimeError), backend.store.lock("apply"):
        raise RuntimeError("boom")
    with backend.reopen().lock("plan") as lock:
        assert lock.operation == "plan"


def test_lock_timeout_polls_until_the_deadline_then_fails(backend: Backend) -> None:
    """With a timeout, a runner keeps trying (sleeping between tries) until the deadline."""
    clock = FakeClock()
    contender = backend.reopen(monotonic=clock.monotonic, sleep=clock.sleep)
    with (
        held_in_thread(backend.store) as holder,
        pytest.raises(StateLocked) as caught,
        contender.lock("plan", timeout=0.6),
    ):
        pass
    assert caught.value.lock_id == holder.info.lock_id
    assert clock.now == pytest.approx(0.6)
    assert len(clock.slept) >= 3  # polled several times, never slept past the deadline


def test_without_a_timeout_a_runner_does_not_wait(backend: Backend) -> None:
    """The default timeout 0 tries once and fails without sleeping."""
    clock = FakeClock()
    contender = backend.reopen(monotonic=clock.monotonic, sleep=clock.sleep)
    with held_in_thread(backend.store), pytest.raises(StateLocked), contender.lock("plan"):
        pass
    assert clock.slept == []


def test_lock_waits_for_a_release_within_the_timeout(backend: Backend) -> None:
    """A runner waiting with a timeout gets the lock once the holder lets go."""
    with held_in_thread(backend.store) as holder:

        def let_go_during_the_second_wait(sleeps: int) -> None:
            if sleeps == 2:
                holder.release.set()
                assert holder.released.wait(10)

        clock = FakeClock(on_sleep=let_go_during_the_second_wait)
        contender = backend.reopen(monotonic=clock.monotonic, sleep=clock.sleep)
        with contender.lock("plan", timeout=20) as lock:
            assert lock.lock_id != holder.info.lock_id
    assert len(clock.slept) == 2


def test_force_unlock(backend: Backend) -> None:
    """force-unlock refuses a wrong id, and with the right one frees the lock."""
    other = backend.reopen()
    with held_in_thread(backend.store) as holder:
        with pytest.raises(StateError, match="does not match"):
            other.force_unlock("not-the-lock-id")
        with pytest.raises(StateLocked), other.lock("plan"):
            pass
        other.force_unlock(holder.info.lock_id)
        with other.lock("plan") as taken:
            assert taken.lock_id != holder.info.lock_id


def test_force_unlock_without_a_lock_is_an_error(backend: Backend) -> None:
    """Nothing to unlock is reported, not silently accepted."""
    with pytest.raises(StateError, match=r"not locked|no recorded lock holder"):
        backend.store.force_unlock(str(uuid.uuid4()))


# -- fencing --------------------------------------------------------------------------


def test_a_holder_writes_and_fences_while_its_lock_is_its_own(backend: Backend) -> None:
    """Inside its lock a runner writes (serial after serial) and every fence passes."""
    first = sample_state()
    with backend.store.lock("apply") as lock:
        backend.store.write(first)
        backend.store.fence()
        lock.verify()
        backend.store.write(with_account(first, "bob"))
    loaded = backend.reopen().read()
    assert loaded is not None
    assert loaded.serial == 2


def test_a_holder_that_was_force_unlocked_writes_nothing(backend: Backend) -> None:
    """force-unlock of a live holder: its next write and fence stop it, nothing is written."""
    first = sample_state()
    backend.store.write(first)
    before = backend.raw()
    with backend.store.lock("apply") as lock:
        backend.reopen().force_unlock(lock.lock_id)
        for check in (backend.store.fence, lock.verify):
            with pytest.raises(StateLockLost, match=lock.lock_id):
                check()
        with pytest.raises(StateLockLost) as caught:
            backend.store.write(with_account(first, "bob"))
        assert "stopped before writing" in caught.value.message
        with backend.reopen().lock("apply") as successor:  # the next runner has it now
            with pytest.raises(StateLockLost):
                backend.store.write(with_account(first, "bob"))
            assert successor.lock_id != lock.lock_id
    assert backend.raw() == before


def test_without_a_lock_there_is_nothing_to_fence(backend: Backend) -> None:
    """A store that holds no lock writes by compare-and-swap alone; fence() has no holder."""
    backend.store.fence()
    backend.store.write(sample_state())
    loaded = backend.reopen().read()
    assert loaded is not None


def test_a_store_cannot_take_its_own_lock_twice(backend: Backend) -> None:
    """A second lock() on the same handle is a programming error, refused at once."""
    with (
        backend.store.lock("apply"),
        pytest.raises(StateError, match="already locked"),
        backend.store.lock("plan"),
    ):
        pass


# -- pull and push --------------------------------------------------------------------


def test_pull_of_an_empty_store_is_an_error(backend: Backend) -> None:
    """There is nothing to pull from a store nobody wrote to, and the error says where."""
    with pytest.raises(StateError, match="nothing to pull") as caught:
        transfer.pull(backend.store)
    assert caught.value.message.startswith(backend.store.location.absent())


def test_push_into_an_empty_store_keeps_lineage_and_serial(backend: Backend) -> None:
    """A pushed document is stored as it is: its lineage and its serial, and pulls back the same."""
    document = state_codec.to_json(State(lineage=str(uuid.uuid4()), serial=46))
    done = transfer.push(backend.store, document)
    assert (done.written.lineage, done.written.serial, done.replaced) == (
        document["lineage"],
        46,
        None,
    )
    assert transfer.pull(backend.reopen()) == document


def test_push_into_a_state_needs_its_lineage_and_a_newer_serial(backend: Backend) -> None:
    """Without force: same lineage, strictly newer serial, written with its own serial."""
    first = sample_state()
    backend.store.write(first)
    newer = state_codec.to_json(State(lineage=first.lineage, serial=9))
    done = transfer.push(backend.store, newer)
    assert (done.written.serial, done.replaced) == (9, first)
    before = backend.raw()
    for refused, message in [
        ({**newer, "serial": 9}, "not newer"),
        ({**newer, "serial": 3}, "not newer"),
        ({**newer, "lineage": str(uuid.uuid4()), "serial": 10}, "lineage"),
    ]:
        with pytest.raises(StateConflict, match=message):
            transfer.push(backend.store, refused)
    with pytest.raises(StateCorrupt):
        transfer.push(backend.store, {**newer, "serial": "ten"})
    assert backend.raw() == before


def test_moving_a_state_never_loses_its_history(backend: Backend, tmp_path: Path) -> None:
    """A file state at serial 46 moved here stays at 46; an old copy can never undo it."""
    source = LocalStore(tmp_path / "old" / "state.json")
    state = State(lineage=str(uuid.uuid4()), serial=45).successor(accounts={})
    source.write(state, force=True)
    old_copy = transfer.pull(source)
    transfer.push(backend.store, old_copy)
    moved = backend.store.read()
    assert moved is not None
    for account in ("renamed", "later"):  # the team goes on from 46: 47, 48
        moved = with_account(moved, account)
        backend.store.write(moved)
    with pytest.raises(StateConflict, match="not newer"):
        transfer.push(backend.reopen(), old_copy)
    loaded = backend.reopen().read()
    assert loaded is not None
    assert (loaded.serial, set(loaded.accounts)) == (48, {"renamed", "later"})


def test_moving_a_state_out_keeps_its_serial(backend: Backend, tmp_path: Path) -> None:
    """Pulled from this backend, pushed into a new file: the same lineage and serial."""
    backend.store.write(State(lineage=str(uuid.uuid4()), serial=30), force=True)
    target = LocalStore(tmp_path / "new" / "state.json")
    done = transfer.push(target, transfer.pull(backend.store))
    assert done.written.serial == 30
    assert transfer.pull(target) == transfer.pull(backend.reopen())


def test_forced_push_replaces_anything_valid(backend: Backend) -> None:
    """push --force takes another lineage and an old serial, and still moves forward."""
    first = sample_state()
    backend.store.write(first)
    backend.store.write(with_account(first, "bob"))
    stranger = state_codec.to_json(State(lineage=str(uuid.uuid4()), serial=1))
    done = transfer.push(backend.store, stranger, force=True)
    assert (done.written.lineage, done.written.serial) == (stranger["lineage"], 3)
    later = state_codec.to_json(State(lineage=str(uuid.uuid4()), serial=70))
    assert transfer.push(backend.store, later, force=True).written.serial == 70
    assert transfer.pull(backend.store)["serial"] == 70


@pytest.mark.parametrize("force", [False, True], ids=["plain", "forced"])
@pytest.mark.parametrize(
    ("serial", "error"),
    [
        (MAX_SERIAL, "leaves no room"),  # its next write would be out of range
        (2**70, "serial"),  # beyond 64 bits: not a valid state document at all
    ],
    ids=["2^63-1", "2^70"],
)
def test_push_refuses_a_serial_without_room(
    backend: Backend, serial: int, error: str, force: bool
) -> None:
    """Even forced, a serial that no later write could follow is refused; nothing written."""
    backend.store.write(sample_state())
    before = backend.raw()
    document = {**state_codec.to_json(sample_state()), "serial": serial}
    with pytest.raises(StateError, match=error):
        transfer.push(backend.store, document, force=force)
    assert backend.raw() == before


def test_records_read_share_repeated_values(backend: Backend) -> None:
    """Accounts read back hold one tuple per distinct role-id list and one copy of each
    repeated task id (a million records would otherwise hold a million of each)."""
    first = sample_state()
    alice = first.accounts["alice"]
    state = replace(
        first,
        accounts={
            account: replace(alice, account=account, name=account, role_ids=("1001", "1002"))
            for account in ("alice", "bob", "carol")
        },
    )
    backend.store.write(state)
    read = backend.reopen().read()
    assert read == state
    bob, carol = read.accounts["bob"], read.accounts["carol"]
    assert bob.role_ids is carol.role_ids
    assert bob.last_task_id is carol.last_task_id


@frozen
class _Named:
    """A desired user as the stores see one (``model.Named``)."""

    account: str
    name: str
    email: str


def _fresh(text: str) -> str:
    """An equal string that is no other string object."""
    return "".join(list(text))


def test_records_read_take_the_equal_strings_of_the_names_given(backend: Backend) -> None:
    """Read with ``names``, a record holds their account, name and email where equal (one
    copy of each, not two): the state read is the same, only which equal string is kept."""
    first = sample_state()
    alice = first.accounts["alice"]
    state = replace(
        first,
        accounts={
            account: replace(alice, account=account, name=account.title(), email=f"{account}@x")
            for account in ("alice", "bob", "carol")
        },
    )
    backend.store.write(state)
    names = {
        "alice": _Named(account=_fresh("alice"), name=_fresh("Alice"), email=_fresh("alice@x")),
        "bob": _Named(account=_fresh("bob"), name="Robert", email=_fresh("bob@x")),
        "dave": _Named(account="dave", name="Dave", email="dave@x"),
    }
    read = backend.reopen().read(names=names)
    assert read == state
    assert read.accounts.keys() == state.accounts.keys()
    alice_read, bob_read = read.accounts["alice"], read.accounts["bob"]
    assert alice_read.account is names["alice"].account
    assert alice_read.name is names["alice"].name
    assert alice_read.email is names["alice"].email
    assert bob_read.name == "Bob"  # not equal: the recorded name stays
    assert bob_read.email is names["bob"].email
    if backend.kind == "local":  # decoded as it streams: the key is the shared string too
        assert next(key for key in read.accounts if key == "alice") is names["alice"].account
    assert backend.reopen().read() == state  # without names: the same state
