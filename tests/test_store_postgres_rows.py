"""PostgreSQL keeps a state as rows: a head row per workspace, a row per account, batch, event.

A write changes only the rows of what changed; a database of schema 1 (one document per
workspace) is migrated on first use and its documents are split by their next write; a
state whose head row and rows both hold a part is refused; moving a corrupt head row
aside takes its rows along.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from reconciler.errors import StateCorrupt
from reconciler.stores import model as state_codec
from reconciler.stores import pg_sql, revisions
from reconciler.stores.model import AccountRecord, State
from tests.support.builders import sample_state
from tests.support.pg import pg_dsn, pg_execute
from tests.support.stores import with_account

pytest.importorskip("psycopg")
from reconciler.stores.postgres import PostgresStore


@pytest.fixture
def workspace() -> Iterator[str]:
    """A workspace name of the test database, its rows removed afterwards."""
    name = f"rows-{uuid.uuid4().hex[:12]}"
    yield name
    pg_execute(pg_dsn(), "DELETE FROM reconciler_states WHERE workspace LIKE %s", (f"{name}%",))


def _store(workspace: str) -> PostgresStore:
    return PostgresStore.from_dsn(pg_dsn(), workspace=workspace)


def _accounts(dsn: str, workspace: str) -> dict[str, tuple[str, dict[str, object]]]:
    """account -> (the row's xmin, its record)."""
    rows = pg_execute(
        dsn,
        "SELECT account, xmin::text, record FROM reconciler_accounts WHERE workspace = %s",
        (workspace,),
    )
    return {account: (xmin, record) for account, xmin, record in rows}


def test_a_write_changes_only_the_rows_of_what_changed(workspace: str) -> None:
    """One account revised among 300: its row is rewritten, the others keep their version."""
    records = {
        f"u{i:03d}": AccountRecord(
            account=f"u{i:03d}", name="N", email="", role_ids=(), enabled=True
        )
        for i in range(300)
    }
    store = _store(workspace)
    first = State.empty().successor(accounts=records)
    store.write(first)
    before = _accounts(pg_dsn(), workspace)
    changed = {"u007": AccountRecord(account="u007", name="M", email="", role_ids=(), enabled=True)}
    store.write(first.successor(accounts=revisions.revise(first.accounts, changed)))
    after = _accounts(pg_dsn(), workspace)
    rewritten = sorted(a for a in after if after[a][0] != before[a][0])
    assert rewritten == ["u007"]
    assert after["u007"][1]["name"] == "M"
    loaded = _store(workspace).read()
    assert loaded is not None
    assert (loaded.serial, loaded.accounts["u007"].name) == (2, "M")


def test_the_head_row_holds_the_document_without_its_parts(workspace: str) -> None:
    """Accounts, pending batches and events are rows; the head row has the rest."""
    state = sample_state()
    _store(workspace).write(state)
    [(document,)] = pg_execute(
        pg_dsn(), "SELECT document FROM reconciler_states WHERE workspace = %s", (workspace,)
    )
    head = json.loads(document)
    assert set(head) == {"format_version", "lineage", "serial", "updated_at"}
    for table, count in (("reconciler_pending", 1), ("reconciler_events", 1)):
        rows = pg_execute(
            pg_dsn(), f"SELECT count(*) FROM {table} WHERE workspace = %s", (workspace,)
        )
        assert rows == [(count,)]
    assert list(_accounts(pg_dsn(), workspace)) == ["alice"]


def test_a_part_in_the_head_row_and_in_rows_is_refused(workspace: str) -> None:
    """Two places for the same part cannot both be right: refused, nothing changed."""
    state = sample_state()
    _store(workspace).write(state)
    pg_execute(
        pg_dsn(),
        "UPDATE reconciler_states SET document = %s WHERE workspace = %s",
        (json.dumps(state_codec.to_json(state)), workspace),
    )
    with pytest.raises(StateCorrupt, match="its head row holds accounts and so do its rows"):
        _store(workspace).read()


def test_moving_a_corrupt_state_aside_takes_its_rows_along(workspace: str) -> None:
    """The hint's one UPDATE of the head row moves every row of the workspace with it."""
    _store(workspace).write(sample_state())
    pg_execute(
        pg_dsn(),
        "UPDATE reconciler_states SET workspace = %s WHERE workspace = %s",
        (f"{workspace}.corrupt", workspace),
    )
    assert _store(workspace).read() is None
    assert list(_accounts(pg_dsn(), f"{workspace}.corrupt")) == ["alice"]
    _store(workspace).write(sample_state())  # a good state goes in where it was
    assert _store(f"{workspace}.corrupt").read() is not None


def test_a_schema_1_database_is_migrated_and_its_documents_split(pg_schema_dsn: str) -> None:
    """Tables of schema 1 with a whole document: read as it is, then split by a write."""
    state = sample_state()
    document = json.dumps(state_codec.to_json(state))
    pg_execute(pg_schema_dsn, pg_sql.CREATE_META)
    pg_execute(pg_schema_dsn, pg_sql.CREATE_TABLES)
    pg_execute(
        pg_schema_dsn,
        "INSERT INTO reconciler_states (workspace, lineage, serial, document) "
        "VALUES ('default', %s, %s, %s)",
        (state.lineage, state.serial, document),
    )
    store = PostgresStore.from_dsn(pg_schema_dsn)
    assert store.read() == state
    assert pg_execute(pg_schema_dsn, "SELECT value FROM reconciler_meta") == [("2",)]
    assert _accounts(pg_schema_dsn, "default") == {}  # not split yet: still one document
    later = with_account(state, "bob")
    store.write(later)
    assert sorted(_accounts(pg_schema_dsn, "default")) == ["alice", "bob"]
    [(head,)] = pg_execute(pg_schema_dsn, "SELECT document FROM reconciler_states")
    assert "accounts" not in json.loads(head)
    assert PostgresStore.from_dsn(pg_schema_dsn).read() == later


def test_a_bad_account_row_is_refused_in_the_plain_readers_words(workspace: str) -> None:
    """An account row that breaks the schema is refused as the whole document would be
    (the row-by-row decoder leaves it to the plain reader), never read or crashed on."""
    first = sample_state()
    state = with_account(first, "bob")
    _store(workspace).write(first)
    _store(workspace).write(state)
    record = state_codec.account_to_json(state.accounts["bob"])
    pg_execute(
        pg_dsn(),
        "UPDATE reconciler_accounts SET record = %s WHERE workspace = %s AND account = 'bob'",
        (json.dumps({**record, "role_ids": [7]}), workspace),
    )
    document = state_codec.to_json(state)
    document["accounts"]["bob"]["role_ids"] = [7]
    with pytest.raises(StateCorrupt) as plain:
        state_codec.from_json(document, where="x", repair_hint="")
    with pytest.raises(StateCorrupt) as read:
        _store(workspace).read()
    assert plain.value.args[0].split(": ", 1)[1] in str(read.value)
