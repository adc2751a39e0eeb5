"""The state in PostgreSQL's rows: a head row per workspace, and a row per part of it.

The head row (``reconciler_states``) holds the lineage and serial, which every write
compares-and-swaps, and its ``document``: the state document without ``accounts``,
``pending`` and ``events``, whose entries are rows of their own (a record each, ``jsonb``,
exactly what the document holds in its place). So a write changes the rows of what
changed, in one transaction with the head row, and an ad-hoc query reads an account with
``record->>'email'``.

A head row may also hold a whole document (schema 1's one row per workspace, or a row
repaired by hand): it is read as it is, provided no rows of the same part exist, and the
next write splits it into rows. Reading assembles the document and parses it exactly as
the file backend parses its own (``model.from_json``): the same checks, the same errors.

Works through the ``pg_tables.Connection`` protocol: ``postgres`` stays the one module
that imports psycopg, and translates its errors.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from reconciler.errors import StateCorrupt
from reconciler.stores import decoding, model, pg_sql
from reconciler.stores import delta as deltas
from reconciler.stores.model import AccountRecord, EventRecord, State
from reconciler.stores.pg_tables import Connection
from reconciler.values import frozen, replace

_PARTS = ("accounts", "pending", "events")  # the document's members that are rows

# Many rows into one table at once (COPY): table, columns, rows. ``postgres`` provides it.
Bulk = Callable[[str, Sequence[str], Iterable[tuple[Any, ...]]], None]


@frozen
class Stored:
    """A workspace's state as read, and what a writer needs to know of its rows."""

    xmin: str  # of the head row: it changes with every write, by anyone
    state: State
    split: bool  # the parts are rows (else the head row holds the whole document)


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def read(
    conn: Connection,
    workspace: str,
    *,
    where: str,
    repair_hint: str,
    names: model.Names | None = None,
) -> Stored | None:
    """The workspace's state (one statement: one snapshot); None when it has none.
    ``names``: its records take their equal strings (``decoding.shared_names``)."""
    row = conn.execute(pg_sql.READ_STATE, (workspace,)).fetchone()
    if row is None:
        return None
    xmin, lineage, serial, document, *parts = row
    # Records decoded as they are parsed (``decoding``); a document that path cannot take
    # whole is assembled again the plain way, whose checks decide and word any refusal.
    with decoding.not_too_deep(where, repair_hint):
        data, split = _assemble(document, parts, where=where, repair_hint=repair_hint, fast=True)
        loaded = decoding.state(
            data, where=where, repair_hint=repair_hint, schema_checked=False, names=names
        )
        if loaded is None:
            data, split = _assemble(
                document, parts, where=where, repair_hint=repair_hint, fast=False
            )
            loaded = model.from_json(data, where=where, repair_hint=repair_hint)
    if (loaded.lineage, loaded.serial) != (lineage, serial):
        raise StateCorrupt(
            f"state {where}: the document says lineage {loaded.lineage} serial "
            f"{loaded.serial}, its row says lineage {lineage} serial {serial}",
            hint=repair_hint,
        )
    return Stored(xmin=xmin, state=loaded, split=split)


def _assemble(
    document: str, parts: Sequence[str | None], *, where: str, repair_hint: str, fast: bool
) -> tuple[Any, bool]:
    """The state document from the head row's and the parts' JSON, and whether it was split
    into rows; ``fast``: account records decoded as they are parsed (``decoding.loads``)."""

    def loads(text: str) -> Any:
        try:
            if fast:
                return decoding.loads(text, schema_checked=False)
            return json.loads(text, parse_constant=decoding.refuse_constant)
        except (json.JSONDecodeError, decoding.NotJson) as exc:
            raise StateCorrupt(
                f"state {where} is not valid JSON ({exc})", hint=repair_hint
            ) from exc

    data = loads(document)
    split = isinstance(data, dict) and not any(part in data for part in _PARTS)
    if isinstance(data, dict):
        for part, text in zip(_PARTS, parts, strict=True):
            if text is not None and part in data:
                raise StateCorrupt(
                    f"state {where}: its head row holds {part} and so do its rows",
                    hint=repair_hint,
                )
            if text is not None:
                data[part] = loads(text)
            elif split:
                data[part] = [] if part == "pending" else {}
    return data, split


def head(state: State) -> str:
    """The head row's document: the state document without the parts kept in rows."""
    document = model.to_json(replace(state, accounts={}, pending=(), events={}))
    return _dumps({key: value for key, value in document.items() if key not in _PARTS})


def insert(conn: Connection, bulk: Bulk, workspace: str, state: State) -> str | None:
    """A new workspace: its head row and every row; the head's xmin, None if it exists."""
    done = conn.execute(
        pg_sql.INSERT_STATE, (workspace, state.lineage, state.serial, head(state))
    ).fetchone()
    if done is None:
        return None
    _write_all_rows(bulk, workspace, state)
    return str(done[0])


def replace_all(
    conn: Connection, bulk: Bulk, workspace: str, state: State, *, was: State
) -> str | None:
    """Every row rewritten (a forced write, a push, a head that held the whole document)."""
    for table, _ in (*pg_sql.PARTS.values(), ("reconciler_pending", "batch_id")):
        conn.execute(pg_sql.DELETE_ALL.format(table=table), (workspace,))
    _write_all_rows(bulk, workspace, state)
    return _update_head(conn, workspace, state, was=was)


def update(conn: Connection, workspace: str, state: State, *, was: State) -> str | None:
    """Only the rows that changed from ``was`` (as stored) to ``state``; the head's xmin."""
    change = deltas.between(was, state)
    _write_part(conn, workspace, "accounts", change.accounts, removed=change.removed)
    _write_part(conn, workspace, "events", change.events, removed=change.events_removed)
    positions = {batch.batch_id: index for index, batch in enumerate(state.pending)}
    if change.order is not None:
        conn.execute(pg_sql.KEEP_PENDING, (workspace, _dumps(positions)))
    if change.batches:
        batches = {
            batch.batch_id: [positions[batch.batch_id], model.batch_to_json(batch)]
            for batch in change.batches
        }
        conn.execute(pg_sql.UPSERT_PENDING, (workspace, _dumps(batches)))
    if change.marks:
        marks = {
            batch_id: {"task_id": m.task_id, "recorded_at": m.recorded_at, "sent_at": m.sent_at}
            for batch_id, m in change.marks.items()
        }
        conn.execute(pg_sql.MARK_PENDING, (_dumps(marks), workspace))
    if change.order is not None:
        conn.execute(pg_sql.ORDER_PENDING, (_dumps(positions), workspace))
    return _update_head(conn, workspace, state, was=was)


def _update_head(conn: Connection, workspace: str, state: State, *, was: State) -> str | None:
    """The head row moved from ``was`` to ``state`` (compare-and-swap); its new xmin."""
    done = conn.execute(
        pg_sql.UPDATE_STATE,
        (state.lineage, state.serial, head(state), workspace, was.lineage, was.serial),
    ).fetchone()
    return None if done is None else str(done[0])


def _write_all_rows(bulk: Bulk, workspace: str, state: State) -> None:
    """Every row of ``state`` into tables that hold none of the workspace's."""
    accounts = state.accounts
    bulk(
        "reconciler_accounts",
        ("workspace", "account", "record"),
        ((workspace, k, _dumps(model.account_to_json(accounts[k]))) for k in accounts),
    )
    events = state.events
    bulk(
        "reconciler_events",
        ("workspace", "event_id", "record"),
        ((workspace, k, _dumps(model.event_to_json(events[k]))) for k in events),
    )
    bulk(
        "reconciler_pending",
        ("workspace", "batch_id", "position", "record"),
        (
            (workspace, batch.batch_id, position, _dumps(model.batch_to_json(batch)))
            for position, batch in enumerate(state.pending)
        ),
    )


def _write_part(
    conn: Connection,
    workspace: str,
    part: str,
    changed: Mapping[str, AccountRecord] | Mapping[str, EventRecord],
    *,
    removed: tuple[str, ...],
) -> None:
    """Set the ``changed`` entries of one part (key -> record) and delete ``removed`` ones."""
    table, key = pg_sql.PARTS[part]
    if changed:
        records = {k: _record_json(changed[k]) for k in changed}
        conn.execute(pg_sql.UPSERT.format(table=table, key=key), (workspace, _dumps(records)))
    if removed:
        conn.execute(pg_sql.DELETE.format(table=table, key=key), (workspace, _dumps(removed)))


def _record_json(record: AccountRecord | EventRecord) -> dict[str, Any]:
    match record:
        case AccountRecord():
            return model.account_to_json(record)
        case EventRecord():
            return model.event_to_json(record)
