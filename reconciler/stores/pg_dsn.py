"""PostgreSQL DSNs: reconciler's own parameters taken out, the password masked for messages.

Pure string handling, kept apart from the backend so it needs no psycopg. reconciler's
parameters in the query string are not libpq's and never reach it::

    workspace=NAME             which state of the database (default ``default``)
    lock_timeout=30s           how long a statement waits for a lock another session holds
    statement_timeout=120s     how long one statement may run

The timeouts are PostgreSQL durations (``500ms``, ``30s``, ``2min``; a bare number is
milliseconds; ``0`` turns the limit off). The DSN wins over the environment
(``RECONCILER_PG_LOCK_TIMEOUT``, ``RECONCILER_PG_STATEMENT_TIMEOUT``), which wins over the
defaults: a row locked by a forgotten ``psql`` session must not block an apply forever.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from reconciler.errors import ConfigError

_CONNECT_TIMEOUT = ("connect_timeout", "10")
_DURATION = re.compile(r"^[0-9]{1,9}(?:us|ms|s|min|h|d)?$")
_OURS = ("workspace", "lock_timeout", "statement_timeout")
ENV_LOCK_TIMEOUT = "RECONCILER_PG_LOCK_TIMEOUT"
ENV_STATEMENT_TIMEOUT = "RECONCILER_PG_STATEMENT_TIMEOUT"


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    """PostgreSQL's ``lock_timeout`` and ``statement_timeout`` for every store session."""

    lock: str = "30s"
    statement: str = "120s"

    @staticmethod
    def from_env(environ: Mapping[str, str]) -> Timeouts:
        """The defaults, overridden by the environment's settings (checked)."""
        default = Timeouts()
        return Timeouts(
            lock=_duration(ENV_LOCK_TIMEOUT, environ.get(ENV_LOCK_TIMEOUT, default.lock)),
            statement=_duration(
                ENV_STATEMENT_TIMEOUT, environ.get(ENV_STATEMENT_TIMEOUT, default.statement)
            ),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Dsn:
    """A state DSN, understood."""

    connect: str  # for libpq: reconciler's parameters removed, a connect timeout added
    redacted: str  # for messages: the password masked, reconciler's parameters removed
    workspace: str | None
    timeouts: Timeouts
    secrets: tuple[str, ...]  # to scrub from libpq's messages


def split(dsn: str, *, timeouts: Timeouts | None = None) -> Dsn:
    """Understand ``dsn``; ``timeouts`` are the defaults its parameters override."""
    if not dsn.startswith(("postgresql://", "postgres://")):
        raise ConfigError(
            "the PostgreSQL state location must be a postgresql:// URL",
            hint="e.g. postgresql://user@host:5432/dbname?workspace=prod",
        )
    parts = urllib.parse.urlsplit(dsn)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    rest = [(key, value) for key, value in query if key not in _OURS]
    secrets: list[str] = [value for key, value in rest if key == "password" and value]
    userinfo, at, hostpart = parts.netloc.rpartition("@")
    netloc = parts.netloc
    if at and ":" in userinfo:
        user, _, password = userinfo.partition(":")
        if password:
            secrets += [password, urllib.parse.unquote(password)]
        netloc = f"{user}:***@{hostpart}"
    # libpq waits forever by default on a black-holed host.
    timeout = [] if any(key == "connect_timeout" for key, _ in rest) else [_CONNECT_TIMEOUT]
    # quote, not quote_plus: libpq does not decode "+" as a space in URI parameters.
    connect = urllib.parse.urlunsplit(
        parts._replace(query=urllib.parse.urlencode(rest + timeout, quote_via=urllib.parse.quote))
    )
    shown = [(key, "***" if key == "password" else value) for key, value in rest]
    redacted = urllib.parse.urlunsplit(
        parts._replace(
            netloc=netloc, query=urllib.parse.urlencode(shown, quote_via=urllib.parse.quote)
        )
    )
    ours = {key: _one(redacted, key, query) for key in _OURS}
    base = timeouts or Timeouts()
    return Dsn(
        connect=connect,
        redacted=redacted,
        workspace=ours["workspace"],
        timeouts=Timeouts(
            lock=_duration("lock_timeout", ours["lock_timeout"] or base.lock),
            statement=_duration("statement_timeout", ours["statement_timeout"] or base.statement),
        ),
        secrets=tuple(secrets),
    )


def _one(redacted: str, key: str, query: list[tuple[str, str]]) -> str | None:
    values = {value for name, value in query if name == key}
    if len(values) > 1:
        raise ConfigError(f"{redacted} names several values of {key}; name one")
    return values.pop() if values else None


def _duration(name: str, value: str) -> str:
    if not _DURATION.fullmatch(value):
        raise ConfigError(
            f"{name} must be a PostgreSQL duration, not {value!r}",
            hint="e.g. 500ms, 30s or 2min (0 turns the limit off)",
        )
    return value
