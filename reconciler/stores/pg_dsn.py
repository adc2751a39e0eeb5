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

from reconciler.errors import ConfigError
from reconciler.values import frozen

_CONNECT_TIMEOUT = ("connect_timeout", "10")
_DURATION = re.compile(r"^[0-9]{1,9}(?:us|ms|s|min|h|d)?$")
_OURS = ("workspace", "lock_timeout", "statement_timeout")
_SCHEMES = ("postgresql://", "postgres://")
# What libpq reads as the user, password and hosts: everything up to the first / or ?.
_AUTHORITY = re.compile(r"[^/?]*")
# One host of a (multi-)host list: a name or address, or [IPv6], and an optional port.
_HOST = re.compile(r"(?:\[[0-9A-Za-z:.%]*\]|[^:\[\]]*)(?::[0-9]*)?")
_PARAMETER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ENV_LOCK_TIMEOUT = "RECONCILER_PG_LOCK_TIMEOUT"
ENV_STATEMENT_TIMEOUT = "RECONCILER_PG_STATEMENT_TIMEOUT"


@frozen
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


@frozen
class Dsn:
    """A state DSN, understood."""

    connect: str  # for libpq: reconciler's parameters removed, a connect timeout added
    redacted: str  # for messages: the password masked, reconciler's parameters removed
    workspace: str | None
    timeouts: Timeouts
    secrets: tuple[str, ...]  # to scrub from libpq's messages


def is_secret_parameter(key: str) -> bool:
    """Whether a libpq parameter holds a secret: ``password``, ``sslpassword``, ... masked.

    ``passfile`` names a file, not a secret, and is shown.
    """
    return key.lower().endswith("password")


def split(dsn: str, *, timeouts: Timeouts | None = None) -> Dsn:
    """Understand ``dsn``; ``timeouts`` are the defaults its parameters override."""
    scheme = next((s for s in _SCHEMES if dsn.startswith(s)), None)
    if scheme is None:
        raise ConfigError(
            "the PostgreSQL state location must be a postgresql:// URL",
            hint="e.g. postgresql://user@host:5432/dbname?workspace=prod",
        )
    _refuse_ambiguous(dsn[len(scheme) :])
    parts = urllib.parse.urlsplit(dsn)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    rest = [(key, value) for key, value in query if key not in _OURS]
    secrets = query_secrets(parts.query)
    userinfo, at, hostpart = parts.netloc.rpartition("@")
    netloc = parts.netloc
    if at and ":" in userinfo:
        user, _, password = userinfo.partition(":")
        if password:
            secrets += [password, urllib.parse.unquote(password)]
            netloc = f"{user}:***@{hostpart}"
    # libpq waits forever by default on a black-holed host.
    timeout = [] if any(key == "connect_timeout" for key, _ in rest) else [_CONNECT_TIMEOUT]
    connect = _join(scheme, parts.netloc, parts.path, rest + timeout)
    shown = [(key, "***" if is_secret_parameter(key) else value) for key, value in rest]
    redacted = _join(scheme, netloc, parts.path, shown, safe="*")
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


def _join(
    scheme: str, netloc: str, path: str, query: list[tuple[str, str]], *, safe: str = ""
) -> str:
    """The URL again. Not ``urlunsplit``: it drops the ``//`` of an empty host
    (``postgresql:///db?host=/run/pg`` became ``postgresql:/db``, which libpq refuses)."""
    # quote, not quote_plus: libpq does not decode "+" as a space in URI parameters.
    encoded = urllib.parse.urlencode(query, safe=safe, quote_via=urllib.parse.quote)
    return f"{scheme}{netloc}{path}" + (f"?{encoded}" if encoded else "")


def query_secrets(raw_query: str) -> list[str]:
    """Secret parameters' values, as written and percent-decoded."""
    found: list[str] = []
    for item in raw_query.split("&"):
        key, _, value = item.partition("=")
        if value and is_secret_parameter(urllib.parse.unquote(key)):
            found += [value, urllib.parse.unquote(value)]
    return found


def _refuse_ambiguous(rest: str) -> None:
    """ConfigError, the DSN not shown, unless ``rest`` (after ``scheme://``) splits into
    user, password, hosts, database and parameters exactly as libpq splits it.

    A password with a raw ``#``, ``/``, ``?`` or ``@`` is split differently by Python
    and by libpq (libpq takes the *first* ``@``), so the host or database could be taken
    from the password, and the password printed as a host name.
    """
    authority = _AUTHORITY.match(rest)
    assert authority is not None  # the pattern matches the empty string
    path, _, raw_query = rest[authority.end() :].partition("?")
    userinfo, _, hosts = authority[0].rpartition("@")
    reason = None
    if "#" in rest:
        reason = "it contains '#'"
    elif "@" in userinfo or "@" in path:
        reason = "it contains '@' more than once before the database name"
    elif not all(_HOST.fullmatch(host) for host in hosts.split(",")):
        reason = "a host's port is not a number"
    elif not all(_PARAMETER.fullmatch(item.partition("=")[0]) for item in _items(raw_query)):
        reason = "a parameter name after '?' is not a name"
    elif any(item.startswith("host=") and not item[5:] for item in _items(raw_query)):
        reason = "'host=' is empty (for a Unix socket give its directory: host=/var/run/postgresql)"
    if reason is not None:
        raise ConfigError(
            f"the PostgreSQL state location cannot be read exactly: {reason}; it is not "
            "shown, as it may hold a password",
            hint="percent-encode these characters in a password: # as %23, / as %2F, ? as "
            "%3F, @ as %40 (e.g. postgresql://user:p%40ss@host:5432/dbname?workspace=NAME), "
            "or leave the password out of the URL and set PGPASSWORD",
        )


def _items(raw_query: str) -> list[str]:
    return [item for item in raw_query.split("&") if item]


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
