"""The PostgreSQL backend's own rules: workspaces, DSNs and passwords, first use of a new
database by any operation, the lock's session as the writer's fence, and timeouts.

The rules every backend shares are in ``test_store_contract.py``.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.errors import (
    BackendUnavailable,
    ConfigError,
    StateCorrupt,
    StateError,
    StateLockLost,
)
from reconciler.stores import Store, open_store, transfer
from reconciler.stores import model as state_codec
from reconciler.stores import pg_dsn as dsn_rules

pytest.importorskip("psycopg")
from reconciler.stores.postgres import PostgresStore
from tests.support.builders import sample_state
from tests.support.pg import drop_workspaces, pg_dsn, pg_execute, unique_workspace
from tests.support.stores import with_account


def with_params(dsn: str, **params: str) -> str:
    """``dsn`` with more query parameters."""
    parts = urllib.parse.urlsplit(dsn)
    query = urllib.parse.parse_qsl(parts.query) + list(params.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


@pytest.fixture
def workspace() -> Iterator[str]:
    """A DSN naming a fresh workspace of the test database, cleaned up afterwards."""
    dsn = pg_dsn()
    name = unique_workspace()
    yield with_params(dsn, workspace=name)
    drop_workspaces(dsn, name)


# -- a new database: whatever comes first works ---------------------------------------


def _lock_and_fence(store: Store) -> None:
    with store.lock("apply") as lock:
        lock.verify()


def _force_unlock(store: Store) -> None:
    with pytest.raises(StateError, match="no recorded lock holder"):
        store.force_unlock("nobody")


def _pull(store: Store) -> None:
    with pytest.raises(StateError, match="nothing to pull"):
        transfer.pull(store)


FIRST_OPERATIONS: dict[str, Callable[[Store], object]] = {
    "read": lambda store: store.read(),
    "write": lambda store: store.write(sample_state()),
    "lock": _lock_and_fence,
    "holder": lambda store: store.holder(),
    "force-unlock": _force_unlock,
    "pull": _pull,
    "push": lambda store: transfer.push(store, state_codec.to_json(sample_state())),
}


@pytest.mark.parametrize("operation", FIRST_OPERATIONS)
def test_any_first_operation_on_a_new_database_works(fresh_database: str, operation: str) -> None:
    """The first thing a team does against a new database creates the tables and works."""
    FIRST_OPERATIONS[operation](PostgresStore.from_dsn(fresh_database))
    assert pg_execute(fresh_database, "SELECT value FROM reconciler_meta") == [("2",)]
    later = PostgresStore.from_dsn(fresh_database)  # and everything works after it
    with later.lock("apply"):
        current = later.read()
        later.write(with_account(current, "bob") if current else sample_state())


# -- workspaces and DSNs --------------------------------------------------------------


def test_pg_workspaces_are_independent() -> None:
    """Two workspaces in one database hold separate states and separate locks."""
    dsn = pg_dsn()
    names = unique_workspace(), unique_workspace()
    try:
        one = PostgresStore.from_dsn(with_params(dsn, workspace=names[0]))
        two = PostgresStore.from_dsn(dsn, workspace=names[1])
        one.write(sample_state())
        assert two.read() is None
        two.write(sample_state())
        assert one.read() != two.read()
        with one.lock("apply"), two.lock("apply") as lock:
            assert lock.operation == "apply"
    finally:
        drop_workspaces(dsn, *names)


def test_pg_describe_and_errors_never_show_the_password() -> None:
    """The DSN's password is masked in describe(), the location and connection errors."""
    secret = "Sup3r-s3cret"
    store = PostgresStore.from_dsn(f"postgresql://postgres:{secret}@127.0.0.1:1/test?workspace=x")
    assert store.describe() == "postgresql://postgres:***@127.0.0.1:1/test?workspace=x"
    assert (
        store.location.absent()
        == "no state at postgresql://postgres:***@127.0.0.1:1/test (workspace x)"
    )
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
    store = PostgresStore.from_dsn(dsn, workspace=workspace)
    assert store.workspace == expected
    assert store.describe().endswith(f"workspace={expected}")
    assert store.location.workspace == expected


@pytest.mark.parametrize(
    ("dsn", "workspace"),
    [
        ("postgresql://h/db?workspace=prod", "stage"),
        ("postgresql://h/db?workspace=a%20b", None),
        ("postgresql://h/db?workspace=a&workspace=b", None),
        ("postgresql://h/db", "x" * 65),
        ("postgresql://h/db", "../etc"),
        ("postgresql://h/db", ""),  # M1: an empty name is not the default workspace
        ("postgresql://h/db?workspace=", None),
        ("postgresql://h/db?workspace=", "default"),
        ("mysql://h/db", None),
        ("postgresql:/h/db", None),
        ("postgresql://h/db?lock_timeout=soon", None),
        ("postgresql://h/db?statement_timeout=-1", None),
    ],
)
def test_pg_bad_locations_are_refused(dsn: str, workspace: str | None) -> None:
    """Conflicting or invalid workspaces and timeouts, and non-PostgreSQL URLs: config errors."""
    with pytest.raises(ConfigError):
        PostgresStore.from_dsn(dsn, workspace=workspace)


@pytest.mark.parametrize(
    ("dsn", "environ", "expected"),
    [
        ("postgresql://h/db", {}, dsn_rules.Timeouts(lock="30s", statement="120s")),
        (
            "postgresql://h/db",
            {"RECONCILER_PG_LOCK_TIMEOUT": "5s", "RECONCILER_PG_STATEMENT_TIMEOUT": "0"},
            dsn_rules.Timeouts(lock="5s", statement="0"),
        ),
        (
            "postgresql://h/db?lock_timeout=250ms&statement_timeout=2min",
            {"RECONCILER_PG_LOCK_TIMEOUT": "5s"},
            dsn_rules.Timeouts(lock="250ms", statement="2min"),
        ),
    ],
    ids=["defaults", "environment", "dsn-wins"],
)
def test_pg_timeouts_come_from_the_dsn_then_the_environment(
    dsn: str, environ: dict[str, str], expected: dsn_rules.Timeouts
) -> None:
    """The DSN's lock_timeout/statement_timeout win over the environment, then defaults."""
    parsed = dsn_rules.split(dsn, timeouts=dsn_rules.Timeouts.from_env(environ))
    assert parsed.timeouts == expected
    assert "timeout=" not in parsed.redacted.replace("connect_timeout", "")
    assert "lock_timeout" not in parsed.connect  # ours: never handed to libpq


def test_pg_a_bad_timeout_in_the_environment_is_refused() -> None:
    """RECONCILER_PG_LOCK_TIMEOUT must be a duration; the error says what is wrong."""
    with pytest.raises(ConfigError, match="RECONCILER_PG_LOCK_TIMEOUT"):
        open_store(
            "postgresql://h/db",
            base_dir=Path("."),
            environ={"RECONCILER_PG_LOCK_TIMEOUT": "forever"},
        )


# -- the first use of a schema --------------------------------------------------------


def test_pg_concurrent_first_use_creates_the_tables_once(pg_schema_dsn: str) -> None:
    """Many runners starting together on an empty database all succeed."""
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def first_use(index: int) -> None:
        try:
            start.wait(10)
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
    assert pg_execute(pg_schema_dsn, "SELECT value FROM reconciler_meta") == [("2",)]


def test_pg_newer_schema_version_is_refused_untouched(pg_schema_dsn: str) -> None:
    """A database written by a newer reconciler's schema is refused and left as it is."""
    PostgresStore.from_dsn(pg_schema_dsn).write(sample_state())
    pg_execute(pg_schema_dsn, "UPDATE reconciler_meta SET value = '99'")
    before = pg_execute(pg_schema_dsn, "SELECT xmin::text, document FROM reconciler_states")
    fresh = PostgresStore.from_dsn(pg_schema_dsn)
    for action in (fresh.read, lambda: fresh.write(sample_state(), force=True)):
        with pytest.raises(StateCorrupt, match="schema_version '99'"):
            action()
    assert pg_execute(pg_schema_dsn, "SELECT xmin::text, document FROM reconciler_states") == before


# -- the lock's session fences its writes ---------------------------------------------


def _lock_session_pid(dsn: str, lock_id: str) -> int:
    rows = pg_execute(
        dsn, "SELECT backend_pid FROM reconciler_locks WHERE lock_id = %s", (lock_id,)
    )
    return int(rows[0][0])


def test_pg_a_holder_whose_session_ended_does_not_reconnect_and_write(workspace: str) -> None:
    """The lock session ended (network, an administrator): the holder's writes stop there."""
    store = PostgresStore.from_dsn(workspace)
    first = sample_state()
    store.write(first)
    before = PostgresStore.from_dsn(workspace).read()
    with store.lock("apply") as lock:
        pid = _lock_session_pid(pg_dsn(), lock.lock_id)
        pg_execute(pg_dsn(), "SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(StateLockLost, match="session ended"):
            store.write(with_account(first, "bob"))
        with pytest.raises(StateLockLost):
            store.fence()
    assert PostgresStore.from_dsn(workspace).read() == before


def test_pg_a_holder_whose_row_names_another_lock_writes_nothing(workspace: str) -> None:
    """The holder row no longer names our lock id: refused though our session lives."""
    store = PostgresStore.from_dsn(workspace)
    first = sample_state()
    store.write(first)
    with store.lock("apply") as lock:
        pg_execute(pg_dsn(), "DELETE FROM reconciler_locks WHERE lock_id = %s", (lock.lock_id,))
        with pytest.raises(StateLockLost, match="holder row was removed"):
            store.write(with_account(first, "bob"))
    stored = PostgresStore.from_dsn(workspace).read()
    assert stored is not None
    assert stored.serial == 1


# -- timeouts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "setting"),
    [
        ({"lock_timeout": "100ms"}, "lock_timeout 100ms"),
        ({"lock_timeout": "0", "statement_timeout": "100ms"}, "statement_timeout 100ms"),
    ],
    ids=["lock_timeout", "statement_timeout"],
)
def test_pg_a_row_locked_by_another_session_fails_clearly(
    workspace: str, params: dict[str, str], setting: str
) -> None:
    """A forgotten `psql` transaction holding the row: a clear error, not a hang."""
    import psycopg  # noqa: PLC0415 - the optional extra, present here

    PostgresStore.from_dsn(workspace).write(sample_state())
    store = PostgresStore.from_dsn(with_params(workspace, **params))
    name = urllib.parse.parse_qs(urllib.parse.urlsplit(workspace).query)["workspace"][0]
    with psycopg.connect(pg_dsn()) as blocker:  # a transaction left open
        blocker.execute("SELECT 1 FROM reconciler_states WHERE workspace = %s FOR UPDATE", (name,))
        current = store.read()
        assert current is not None
        with pytest.raises(StateError) as caught:
            store.write(with_account(current, "bob"))
        blocker.rollback()
    assert setting in caught.value.message
    assert "pg_stat_activity" in (caught.value.hint or "")
    assert "nothing was changed" in caught.value.message


def test_pg_timeouts_from_the_environment_apply(workspace: str) -> None:
    """RECONCILER_PG_LOCK_TIMEOUT reaches every session of a store opened by open_store."""
    import psycopg  # noqa: PLC0415 - the optional extra, present here

    PostgresStore.from_dsn(workspace).write(sample_state())
    store = open_store(
        workspace,
        base_dir=Path("."),
        environ={"RECONCILER_PG_LOCK_TIMEOUT": "100ms"},
    )
    name = urllib.parse.parse_qs(urllib.parse.urlsplit(workspace).query)["workspace"][0]
    with psycopg.connect(pg_dsn()) as blocker:
        blocker.execute("SELECT 1 FROM reconciler_states WHERE workspace = %s FOR UPDATE", (name,))
        with store.lock("apply"):
            current = store.read()
            assert current is not None
            with pytest.raises(StateError, match="lock_timeout 100ms"):
                store.write(with_account(current, "bob"))
        blocker.rollback()


def test_pg_without_psycopg_says_how_to_install_it() -> None:
    """Without the optional extra, opening a PostgreSQL store names the pip command."""
    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "from reconciler.errors import BackendUnavailable\n"
        "from pathlib import Path\n"
        "from reconciler.stores import open_store\n"
        "try:\n"
        "    open_store('postgresql://h/db', base_dir=Path('.'), environ={})\n"
        "except BackendUnavailable as exc:\n"
        "    print(exc.hint)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install 'reconciler[postgres]'" in done.stdout
