"""PostgreSQL for the tests: one fresh database per test run, created on first use.

``RECONCILER_TEST_PG_DSN`` names the *server* (default: the local ``test`` database). The
first test that needs PostgreSQL creates ``reconciler_test_run_<UTC date>_<time>_<hex>`` there,
so every run exercises the first-use path of a database that has never seen reconciler;
``conftest.py`` drops it when the session ends, whatever happened. Databases of crashed runs
(the same prefix, more than a day old) are dropped when the next run creates its own.

Without a reachable server the PostgreSQL tests skip, or fail under ``RECONCILER_REQUIRE_PG=1``.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import re
import secrets
import urllib.parse
import uuid
import warnings
from typing import Any

import pytest

ENV_DSN = "RECONCILER_TEST_PG_DSN"
ENV_REQUIRE = "RECONCILER_REQUIRE_PG"
DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
RUN_PREFIX = "reconciler_test_run_"
STALE_AFTER = dt.timedelta(days=1)
_STAMP = "%Y%m%d_%H%M%S"  # lower case and digits: the name needs no quoting
_RUN_NAME = re.compile(rf"{RUN_PREFIX}(\d{{8}}_\d{{6}})_[0-9a-f]+")


class _Run:
    """This process's run database: its name, its DSN, and the server DSN it came from."""

    server: str | None = None
    name: str | None = None
    dsn: str | None = None
    problem: str | None = None
    saved_env: str | None = None


def pg_dsn() -> str:
    """This run's fresh database; skip (or fail under RECONCILER_REQUIRE_PG=1) without one."""
    if _Run.dsn is None and _Run.problem is None:
        _create_run_database()
    if _Run.problem is not None:
        message = f"{_Run.problem}; set {ENV_DSN} to a reachable PostgreSQL server"
        if os.environ.get(ENV_REQUIRE) == "1":
            pytest.fail(message)
        pytest.skip(message)
    assert _Run.dsn is not None
    return _Run.dsn


def pg_execute(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one SQL statement outside the store (to break or inspect what it stored)."""
    import psycopg  # noqa: PLC0415 - the optional extra; only reached after pg_dsn()

    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def drop_workspaces(dsn: str, *workspaces: str) -> None:
    """Remove what tests stored under ``workspaces`` (a test that never wrote leaves a
    database that never saw reconciler without tables: nothing to remove then)."""
    for table in ("reconciler_states", "reconciler_locks"):
        if pg_execute(dsn, "SELECT to_regclass(%s)", (table,))[0][0] is not None:
            pg_execute(dsn, f"DELETE FROM {table} WHERE workspace = ANY(%s)", (list(workspaces),))


def unique_workspace() -> str:
    """A workspace name no other test (or run) uses."""
    return f"test-{uuid.uuid4().hex[:16]}"


def with_query(dsn: str, **params: str) -> str:
    """``dsn`` with ``params`` added to its query string (``?workspace=...``, ``options``)."""
    parts = urllib.parse.urlsplit(dsn)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query += list(params.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def drop_run_database() -> None:
    """Drop this run's database (at the end of the session), closing what still uses it."""
    server, name = _Run.server, _Run.name
    _Run.dsn = _Run.name = None
    if _Run.saved_env is None:
        os.environ.pop(ENV_DSN, None)
    else:
        os.environ[ENV_DSN] = _Run.saved_env
    if server is None or name is None:
        return
    try:
        _drop(server, name)
    except Exception as exc:
        warnings.warn(f"could not drop the test database {name}: {exc}", stacklevel=1)


def _create_run_database() -> None:
    server = os.environ.get(ENV_DSN, DEFAULT_PG_DSN)
    problem = _server_problem(server)
    if problem is not None:
        _Run.problem = problem
        return
    import psycopg  # noqa: PLC0415 - _server_problem checked it is installed

    now = dt.datetime.now(dt.UTC)
    name = f"{RUN_PREFIX}{now.strftime(_STAMP)}_{secrets.token_hex(4)}"
    _drop_stale(server, now)
    try:
        pg_execute(server, f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        _Run.problem = f"cannot create the test database {name} ({_one_line(exc)})"
        return
    _Run.server, _Run.name = server, name
    _Run.dsn = _with_database(server, name)
    # Real `reconciler` processes started by tests inherit the environment: they get it too.
    _Run.saved_env = os.environ.get(ENV_DSN)
    os.environ[ENV_DSN] = _Run.dsn


@functools.cache
def _server_problem(server: str) -> str | None:
    try:
        import psycopg  # noqa: PLC0415 - the optional extra; tests skip without it
    except ImportError:
        return "psycopg is not installed (pip install 'reconciler[postgres]')"
    try:
        psycopg.connect(server, connect_timeout=3).close()
    except psycopg.Error as exc:
        return f"PostgreSQL is unreachable ({_one_line(exc)})"
    return None


def _drop_stale(server: str, now: dt.datetime) -> None:
    """Drop run databases older than a day: what crashed runs left behind."""
    rows = pg_execute(
        server, "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{RUN_PREFIX}%",)
    )
    for (name,) in rows:
        match = _RUN_NAME.fullmatch(name)
        if match is None:
            continue
        created = dt.datetime.strptime(match[1], _STAMP).replace(tzinfo=dt.UTC)
        if now - created > STALE_AFTER:
            try:
                _drop(server, name)
            except Exception as exc:
                warnings.warn(f"could not drop the stale test database {name}: {exc}", stacklevel=1)


def _drop(server: str, name: str) -> None:
    pg_execute(
        server,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = %s AND pid <> pg_backend_pid()",
        (name,),
    )
    pg_execute(server, f'DROP DATABASE IF EXISTS "{name}"')


def _with_database(dsn: str, name: str) -> str:
    parts = urllib.parse.urlsplit(dsn)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
