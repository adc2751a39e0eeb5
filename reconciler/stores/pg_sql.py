"""The SQL of the PostgreSQL backend: its tables, and the statements that are not one-liners.

Pure text, kept apart from ``postgres`` (the one module that imports psycopg)::

    reconciler_meta(key text primary key, value text)          -- ('schema_version', '1')
    reconciler_states(workspace text primary key, lineage text, serial bigint,
                      document text, updated_at timestamptz)
    reconciler_locks(workspace text primary key, lock_id text, holder jsonb,
                     backend_pid integer, created_at timestamptz)
"""

from __future__ import annotations

SCHEMA_VERSION = 1  # CREATE_TABLES records it

CREATE_META = """
CREATE TABLE IF NOT EXISTS reconciler_meta (key text PRIMARY KEY, value text NOT NULL)"""

CREATE_TABLES = """
CREATE TABLE IF NOT EXISTS reconciler_states (workspace text PRIMARY KEY, lineage text NOT NULL,
    serial bigint NOT NULL, document text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS reconciler_locks (workspace text PRIMARY KEY, lock_id text NOT NULL,
    holder jsonb NOT NULL, backend_pid integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO reconciler_meta (key, value) VALUES ('schema_version', '1')"""

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
