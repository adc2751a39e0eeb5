"""The SQL of the PostgreSQL backend: its tables, and the statements that are not one-liners.

Pure text, kept apart from ``postgres`` (the one module that imports psycopg)::

    reconciler_meta(key text primary key, value text)          -- ('schema_version', '2')
    reconciler_states(workspace text primary key, lineage text, serial bigint,
                      document text, updated_at timestamptz)   -- one head row per workspace
    reconciler_accounts(workspace, account, record jsonb)      -- a row per account,
    reconciler_pending(workspace, batch_id, position, record jsonb)   -- per pending batch,
    reconciler_events(workspace, event_id, record jsonb)       -- per provisioning event
    reconciler_locks(workspace text primary key, lock_id text, holder jsonb,
                     backend_pid integer, created_at timestamptz)

The rows reference their head row ``ON UPDATE CASCADE ON DELETE CASCADE``: renaming or
deleting a workspace's head row takes its rows along. Schema 1 had the head row only, its
``document`` the whole state; schema 2 (``MIGRATE_TO_2``) adds the row tables.
"""

from __future__ import annotations

SCHEMA_VERSION = 2  # the migrations record it

CREATE_META = """
CREATE TABLE IF NOT EXISTS reconciler_meta (key text PRIMARY KEY, value text NOT NULL)"""

CREATE_TABLES = """
CREATE TABLE IF NOT EXISTS reconciler_states (workspace text PRIMARY KEY, lineage text NOT NULL,
    serial bigint NOT NULL, document text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS reconciler_locks (workspace text PRIMARY KEY, lock_id text NOT NULL,
    holder jsonb NOT NULL, backend_pid integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO reconciler_meta (key, value) VALUES ('schema_version', '1')"""

# Schema 1 -> 2: a row per account, pending batch and event. A head row still holding a
# whole document (schema 1's) is read as it is, and split into rows by its next write.
MIGRATE_TO_2 = """
CREATE TABLE IF NOT EXISTS reconciler_accounts (
    workspace text NOT NULL REFERENCES reconciler_states (workspace)
        ON UPDATE CASCADE ON DELETE CASCADE,
    account text NOT NULL, record jsonb NOT NULL, PRIMARY KEY (workspace, account));
CREATE TABLE IF NOT EXISTS reconciler_pending (
    workspace text NOT NULL REFERENCES reconciler_states (workspace)
        ON UPDATE CASCADE ON DELETE CASCADE,
    batch_id text NOT NULL, position bigint NOT NULL, record jsonb NOT NULL,
    PRIMARY KEY (workspace, batch_id));
CREATE TABLE IF NOT EXISTS reconciler_events (
    workspace text NOT NULL REFERENCES reconciler_states (workspace)
        ON UPDATE CASCADE ON DELETE CASCADE,
    event_id text NOT NULL, record jsonb NOT NULL, PRIMARY KEY (workspace, event_id));
UPDATE reconciler_meta SET value = '2' WHERE key = 'schema_version'"""

# The server pid of the session holding an advisory lock (key split in two int4 halves).
HOLDER_BACKEND = """
SELECT pid FROM pg_locks
WHERE locktype = 'advisory' AND granted AND objsubid = 1
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND classid::bigint = %s AND objid::bigint = %s"""

# Every session of a store: bounded waits for locks and statements (``pg_dsn.Timeouts``).
SET_TIMEOUTS = """
SELECT set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false)"""

# The lock session: named in pg_stat_activity, and the server notices a vanished host.
SET_LOCK_SESSION = """
SELECT set_config('application_name', %s, false),
       set_config('tcp_keepalives_idle', '60', false),
       set_config('tcp_keepalives_interval', '10', false),
       set_config('tcp_keepalives_count', '6', false)"""

# Recorded by the lock's session: a row left by a holder that died is stale, we hold it now.
RECORD_HOLDER = """
INSERT INTO reconciler_locks (workspace, lock_id, holder, backend_pid)
VALUES (%s, %s, %s::jsonb, pg_backend_pid()) ON CONFLICT (workspace) DO
UPDATE SET lock_id = excluded.lock_id, holder = excluded.holder,
    backend_pid = excluded.backend_pid, created_at = now()"""

# The fence, in the write's transaction: FOR SHARE makes force-unlock (FOR UPDATE) wait
# until the write is committed, so a write is wholly before an unlock or refused by it.
FENCE = "SELECT lock_id FROM reconciler_locks WHERE workspace = %s FOR SHARE"

ROW_FOR_UPDATE = """
SELECT xmin::text, lineage, serial FROM reconciler_states WHERE workspace = %s FOR UPDATE"""

# The whole state in one statement (one snapshot of the data): the head row, and the rows
# of each part already as the JSON text of the document's member.
READ_STATE = """
SELECT h.xmin::text, h.lineage, h.serial, h.document,
    (SELECT '{' || string_agg(to_json(a.account)::text || ':' || a.record::text, ',') || '}'
     FROM reconciler_accounts a WHERE a.workspace = h.workspace),
    (SELECT '[' || string_agg(p.record::text, ',' ORDER BY p.position) || ']'
     FROM reconciler_pending p WHERE p.workspace = h.workspace),
    (SELECT '{' || string_agg(to_json(e.event_id)::text || ':' || e.record::text, ',') || '}'
     FROM reconciler_events e WHERE e.workspace = h.workspace)
FROM reconciler_states h WHERE h.workspace = %s"""

# A part's rows, set (inserted or replaced) and deleted many at once: (table, key column).
# The rows travel as one JSON object (key -> record) or array (keys): one parameter the
# server unpacks, instead of arrays the driver would build element by element.
PARTS = {
    "accounts": ("reconciler_accounts", "account"),
    "events": ("reconciler_events", "event_id"),
}
UPSERT = """
INSERT INTO {table} (workspace, {key}, record)
SELECT %s, e.key, e.value FROM jsonb_each(%s::jsonb) AS e
ON CONFLICT (workspace, {key}) DO UPDATE SET record = excluded.record"""
DELETE = """
DELETE FROM {table} WHERE workspace = %s
AND {key} IN (SELECT jsonb_array_elements_text(%s::jsonb))"""
DELETE_ALL = "DELETE FROM {table} WHERE workspace = %s"

# Pending batches: batch id -> [position, record].
UPSERT_PENDING = """
INSERT INTO reconciler_pending (workspace, batch_id, position, record)
SELECT %s, e.key, (e.value->>0)::bigint, e.value->1 FROM jsonb_each(%s::jsonb) AS e
ON CONFLICT (workspace, batch_id) DO UPDATE
SET position = excluded.position, record = excluded.record"""
# A batch's own fields (task id, times) changed, its entries not: merged into its record.
MARK_PENDING = """
UPDATE reconciler_pending AS p SET record = p.record || e.value
FROM jsonb_each(%s::jsonb) AS e WHERE p.workspace = %s AND p.batch_id = e.key"""
# batch id -> position, for every pending batch; the others are no longer pending.
ORDER_PENDING = """
UPDATE reconciler_pending AS p SET position = e.value::bigint
FROM jsonb_each(%s::jsonb) AS e
WHERE p.workspace = %s AND p.batch_id = e.key AND p.position <> e.value::bigint"""
KEEP_PENDING = """
DELETE FROM reconciler_pending WHERE workspace = %s
AND NOT (%s::jsonb ? batch_id)"""

INSERT_STATE = """
INSERT INTO reconciler_states (workspace, lineage, serial, document)
VALUES (%s, %s, %s, %s) ON CONFLICT (workspace) DO NOTHING RETURNING xmin::text"""

UPDATE_STATE = """
UPDATE reconciler_states SET lineage = %s, serial = %s, document = %s, updated_at = now()
WHERE workspace = %s AND lineage = %s AND serial = %s RETURNING xmin::text"""

# A pasteable query naming the sessions that may hold what a timed-out statement waited for.
WHO_BLOCKS = (
    "SELECT pid, usename, application_name, state, xact_start, query FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid() ORDER BY xact_start"
)
