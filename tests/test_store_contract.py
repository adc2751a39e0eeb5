"""One contract for every state backend: the file backend and PostgreSQL.

PostgreSQL tests use ``RECONCILER_TEST_PG_DSN`` (default: the local test database) with
a unique workspace per test; they skip when the server is unreachable, or fail under
``RECONCILER_REQUIRE_PG=1``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.errors import (
    BackendUnavailable,
    ConfigError,
    StateConflict,
    StateCorrupt,
    StateError,
    StateLocked,
)
from reconciler.formats import Verdict
from reconciler.stores import LockInfo, Store, locked_error, transfer
from reconciler.stores import model as state_codec
from reconciler.stores.local import LocalStore
from reconciler.stores.model import (
    AccountRecord,
    State,
)
from tests.support.builders import sample_state
from tests.support.format_versions import VERSIONS, Mutate, check_answer
from tests.support.pg import pg_dsn, pg_execute, unique_workspace


@dataclass(frozen=True, slots=True, kw_only=True)
class Backend:
    """A store under test plus what the contract needs to poke at its storage."""

    kind: str
    store: Store
    reopen: Callable[[], Store]  # another handle on the same state: "another runner"
    put_raw: Callable[[str], None]  # replace the stored document with raw text
    raw: Callable[[], str | None]  # the stored document as text


def _local_backend(tmp_path: Path) -> Backend:
    path = tmp_path / "state" / "state.json"

    def put_raw(text: str) -> None:
        path.write_text(text, encoding="utf-8")

    return Backend(
        kind="local",
        store=LocalStore(path),
        reopen=lambda: LocalStore(path),
        put_raw=put_raw,
        raw=lambda: path.read_text(encoding="utf-8") if path.exists() else None,
    )


def _pg_backend(dsn: str, workspace: str) -> Backend:
    from reconciler.stores.postgres import PostgresStore  # noqa: PLC0415 - optional extra

    def raw() -> str | None:
        rows = pg_execute(
            dsn, "SELECT document FROM reconciler_states WHERE workspace = %s", (workspace,)
        )
        return str(rows[0][0]) if rows else None

    def put_raw(text: str) -> None:
        pg_execute(
            dsn,
            "UPDATE reconciler_states SET document = %s WHERE workspace = %s",
            (text, workspace),
        )

    return Backend(
        kind="postgres",
        store=PostgresStore.from_dsn(dsn, workspace=workspace),
        reopen=lambda: PostgresStore.from_dsn(dsn, workspace=workspace),
        put_raw=put_raw,
        raw=raw,
    )


@pytest.fixture(params=["local", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each backend in turn, empty and private to the test."""
    if request.param == "local":
        yield _local_backend(tmp_path)
        return
    dsn = pg_dsn()
    workspace = unique_workspace()
    yield _pg_backend(dsn, workspace)
    for table in ("reconciler_states", "reconciler_locks"):
        pg_execute(dsn, f"DELETE FROM {table} WHERE workspace = %s", (workspace,))


def with_account(state: State, account: str) -> State:
    """The successor of ``state`` with one more account."""
    record = AccountRecord(account=account, name=account, email="", role_ids=(), enabled=True)
    return state.successor(accounts={**state.accounts, account: record})


@contextlib.contextmanager
def held_in_thread(
    store: Store, operation: str = "apply"
) -> Iterator[tuple[LockInfo, threading.Event]]:
    """Hold ``store``'s lock in another thread until the yielded event is set."""
    held, release = threading.Event(), threading.Event()
    infos: list[LockInfo] = []

    def run() -> None:
        with store.lock(operation) as info:
            infos.append(info)
            held.set()
            release.wait(30)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert held.wait(10), "the holder thread did not get the lock"
    try:
        yield infos[0], release
    finally:
        release.set()
        thread.join(10)


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


def test_force_write_skips_compare_and_swap(backend: Backend) -> None:
    """A forced write replaces a valid state of another lineage and serial."""
    backend.store.write(sample_state())
    stranger = State(lineage=str(uuid.uuid4()), serial=7)
    backend.store.write(stranger, force=True)
    loaded = backend.store.read()
    assert loaded is not None
    assert (loaded.lineage, loaded.serial) == (stranger.lineage, 7)


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


# -- locking --------------------------------------------------------------------------


def test_second_lock_is_refused_naming_the_holder(backend: Backend) -> None:
    """While one runner holds the lock, another is refused with the holder's details."""
    with (
        backend.store.lock("apply") as info,
        pytest.raises(StateLocked) as caught,
        backend.reopen().lock("plan"),
    ):
        pass
    error = caught.value
    assert error.lock_id == info.lock_id
    for part in (info.lock_id, socket.gethostname(), f"pid {os.getpid()}", "`apply`"):
        assert part in error.message
    assert info.lock_id in (error.hint or "")


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
    with backend.reopen().lock("plan") as info:
        assert info.operation == "plan"


def test_lock_timeout_waits_then_fails(backend: Backend) -> None:
    """With a timeout, a runner keeps trying until the deadline, then gives up."""
    with held_in_thread(backend.store):
        started = time.monotonic()
        with pytest.raises(StateLocked), backend.reopen().lock("plan", timeout=0.6):
            pass
        assert time.monotonic() - started >= 0.6


def test_lock_waits_for_a_release_within_the_timeout(backend: Backend) -> None:
    """A runner waiting with a timeout gets the lock once the holder lets go."""
    with held_in_thread(backend.store) as (_, release):
        timer = threading.Timer(0.4, release.set)
        timer.start()
        started = time.monotonic()
        with backend.reopen().lock("plan", timeout=20) as info:
            assert info.operation == "plan"
        assert time.monotonic() - started >= 0.3
        timer.join()


def test_force_unlock(backend: Backend) -> None:
    """force-unlock refuses a wrong id, and with the right one frees the lock."""
    other = backend.reopen()
    with held_in_thread(backend.store) as (info, _):
        with pytest.raises(StateError, match="does not match"):
            other.force_unlock("not-the-lock-id")
        with pytest.raises(StateLocked), other.lock("plan"):
            pass
        other.force_unlock(info.lock_id)
        with other.lock("plan", timeout=10) as taken:
            assert taken.lock_id != info.lock_id


def test_force_unlock_without_a_lock_is_an_error(backend: Backend) -> None:
    """Nothing to unlock is reported, not silently accepted."""
    with pytest.raises(StateError, match=r"not locked|no recorded lock holder"):
        backend.store.force_unlock(str(uuid.uuid4()))


# -- pull and push --------------------------------------------------------------------


def test_pull_of_an_empty_store_is_an_error(backend: Backend) -> None:
    """There is nothing to pull from a store nobody wrote to."""
    with pytest.raises(StateError, match="nothing to pull"):
        transfer.pull(backend.store)


def test_push_into_an_empty_store_then_pull(backend: Backend) -> None:
    """A pushed document keeps its lineage, starts at serial 1, and pulls back the same."""
    document = state_codec.to_json(sample_state().successor().successor())
    written = transfer.push(backend.store, document)
    assert (written.lineage, written.serial) == (document["lineage"], 1)
    pulled = transfer.pull(backend.reopen())
    assert pulled == {**document, "serial": 1}


def test_push_rules(backend: Backend) -> None:
    """Push needs the same lineage and a newer serial, and then writes stored + 1."""
    state = with_account(sample_state(), "bob")  # serial 2
    transfer.push(backend.store, state_codec.to_json(state.successor()))
    stored = backend.store.read()
    assert stored is not None
    assert stored.serial == 1
    newer = state_codec.to_json(stored.successor().successor().successor())  # serial 4
    assert transfer.push(backend.store, newer).serial == 2
    before = backend.raw()
    with pytest.raises(StateConflict, match="not newer"):
        transfer.push(backend.store, {**newer, "serial": 2})
    with pytest.raises(StateConflict, match="lineage"):
        transfer.push(backend.store, {**newer, "lineage": str(uuid.uuid4())})
    with pytest.raises(StateCorrupt):
        transfer.push(backend.store, {**newer, "serial": "ten"})
    assert backend.raw() == before


def test_forced_push_replaces_anything_valid(backend: Backend) -> None:
    """push --force takes another lineage and an old serial, and still moves forward."""
    first = sample_state()
    backend.store.write(first)
    backend.store.write(with_account(first, "bob"))
    stranger = state_codec.to_json(State(lineage=str(uuid.uuid4()), serial=1))
    written = transfer.push(backend.store, stranger, force=True)
    assert (written.lineage, written.serial) == (stranger["lineage"], 3)
    assert transfer.pull(backend.store)["serial"] == 3


# -- file backend only ----------------------------------------------------------------


def test_local_keeps_a_backup(tmp_path: Path) -> None:
    """The file backend keeps the previous state beside the current one."""
    store = LocalStore(tmp_path / "state.json")
    first = sample_state()
    store.write(first)
    store.write(with_account(first, "bob"))
    backup = json.loads((tmp_path / "state.json.backup").read_text())
    assert (backup["serial"], set(backup["accounts"])) == (1, {"alice"})


def test_local_file_mode_is_0600(tmp_path: Path) -> None:
    """The state file is readable by its owner only."""
    store = LocalStore(tmp_path / "state.json")
    store.write(sample_state())
    assert stat.S_IMODE((tmp_path / "state.json").stat().st_mode) == 0o600


# -- PostgreSQL only ------------------------------------------------------------------


def test_pg_workspaces_are_independent() -> None:
    """Two workspaces in one database hold separate states and separate locks."""
    dsn = pg_dsn()
    from reconciler.stores.postgres import PostgresStore  # noqa: PLC0415 - optional extra

    names = unique_workspace(), unique_workspace()
    try:
        one = PostgresStore.from_dsn(f"{dsn}?workspace={names[0]}")
        two = PostgresStore.from_dsn(dsn, workspace=names[1])
        one.write(sample_state())
        assert two.read() is None
        two.write(sample_state())
        assert one.read() != two.read()
        with one.lock("apply"), two.lock("apply") as info:
            assert info.operation == "apply"
    finally:
        for table in ("reconciler_states", "reconciler_locks"):
            pg_execute(dsn, f"DELETE FROM {table} WHERE workspace = ANY(%s)", (list(names),))


def test_pg_describe_and_errors_never_show_the_password() -> None:
    """The DSN's password is masked in describe() and in connection errors."""
    pytest.importorskip("psycopg")
    from reconciler.stores.postgres import PostgresStore  # noqa: PLC0415 - optional extra

    secret = "Sup3r-s3cret"
    store = PostgresStore.from_dsn(f"postgresql://postgres:{secret}@127.0.0.1:1/test?workspace=x")
    assert store.describe() == "postgresql://postgres:***@127.0.0.1:1/test?workspace=x"
    with pytest.raises(BackendUnavailable) as caught:
        store.read()
    rendered = f"{caught.value.message} {caught.value.hint}"
    assert secret not in rendered
    assert "127.0.0.1:1" in rendered
    query = PostgresStore.from_dsn(f"postgresql://127.0.0.1:1/test?password={secret}")
    assert secret not in query.describe()
    with pytest.raises(BackendUnavailable) as caught:
        query.read()
    assert secret not in caught.value.message


@pytest.mark.parametrize(
    ("dsn", "workspace", "expected"),
    [
        ("postgresql://h/db", None, "default"),
        ("postgresql://h/db?workspace=prod", None, "prod"),
        ("postgresql://h/db", "stage", "stage"),
        ("postgresql://h/db?workspace=prod", "prod", "prod"),
    ],
)
def test_pg_workspace_selection(dsn: str, workspace: str | None, expected: str) -> None:
    """The workspace comes from ?workspace= or the argument, default ``default``."""
    pytest.importorskip("psycopg")
    from reconciler.stores.postgres import PostgresStore  # noqa: PLC0415 - optional extra

    store = PostgresStore.from_dsn(dsn, workspace=workspace)
    assert store.workspace == expected
    assert store.describe().endswith(f"workspace={expected}")


@pytest.mark.parametrize(
    ("dsn", "workspace"),
    [
        ("postgresql://h/db?workspace=prod", "stage"),
        ("postgresql://h/db?workspace=a%20b", None),
        ("postgresql://h/db", "x" * 65),
        ("postgresql://h/db", "../etc"),
        ("mysql://h/db", None),
    ],
)
def test_pg_bad_locations_are_refused(dsn: str, workspace: str | None) -> None:
    """Conflicting or invalid workspace names and non-PostgreSQL URLs are config errors."""
    pytest.importorskip("psycopg")
    from reconciler.stores.postgres import PostgresStore  # noqa: PLC0415 - optional extra

    with pytest.raises(ConfigError):
        PostgresStore.from_dsn(dsn, workspace=workspace)


def test_pg_concurrent_first_use_creates_the_tables_once(pg_schema_dsn: str) -> None:
    """Many runners starting together on an empty database all succeed."""
    from reconciler.stores.postgres import PostgresStore  # noqa: PLC0415 - optional extra

    errors: list[BaseException] = []

    def first_use(index: int) -> None:
        try:
            PostgresStore.from_dsn(pg_schema_dsn, workspace=f"w{index}").write(sample_state())
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=first_use, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert pg_execute(pg_schema_dsn, "SELECT count(*) FROM reconciler_states") == [(6,)]
    assert pg_execute(pg_schema_dsn, "SELECT value FROM reconciler_meta") == [("1",)]


def test_pg_newer_schema_version_is_refused_untouched(pg_schema_dsn: str) -> None:
    """A database written by a newer reconciler's schema is refused and left as it is."""
    from reconciler.stores.postgres import PostgresStore  # noqa: PLC0415 - optional extra

    PostgresStore.from_dsn(pg_schema_dsn).write(sample_state())
    pg_execute(pg_schema_dsn, "UPDATE reconciler_meta SET value = '99'")
    before = pg_execute(pg_schema_dsn, "SELECT xmin::text, document FROM reconciler_states")
    fresh = PostgresStore.from_dsn(pg_schema_dsn)
    for action in (fresh.read, lambda: fresh.write(sample_state(), force=True)):
        with pytest.raises(StateCorrupt, match="schema_version '99'"):
            action()
    assert pg_execute(pg_schema_dsn, "SELECT xmin::text, document FROM reconciler_states") == before


def test_pg_without_psycopg_says_how_to_install_it() -> None:
    """Without the optional extra, opening a PostgreSQL store names the pip command."""
    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "from reconciler.errors import BackendUnavailable\n"
        "from pathlib import Path\n"
        "from reconciler.stores import open_store\n"
        "try:\n"
        "    open_store('postgresql://h/db', base_dir=Path('.'))\n"
        "except BackendUnavailable as exc:\n"
        "    print(exc.hint)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install 'reconciler[postgres]'" in done.stdout
