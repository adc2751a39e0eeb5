"""PostgreSQL DSNs: the workspace taken out, the password masked for messages.

Pure string handling, kept apart from the backend so it needs no psycopg.
"""

from __future__ import annotations

import urllib.parse

from reconciler.errors import ConfigError

_CONNECT_TIMEOUT = ("connect_timeout", "10")


def split(dsn: str) -> tuple[str, str | None, str, tuple[str, ...]]:
    """(DSN for libpq, workspace from ``?workspace=``, redacted DSN, secrets to scrub)."""
    parts = urllib.parse.urlsplit(dsn)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(
            "the PostgreSQL state location must be a postgresql:// URL",
            hint="e.g. postgresql://user@host:5432/dbname?workspace=prod",
        )
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    workspaces = [value for key, value in query if key == "workspace"]
    rest = [(key, value) for key, value in query if key != "workspace"]
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
    if len(set(workspaces)) > 1:
        raise ConfigError(f"{redacted} names several workspaces; name one")
    return connect, (workspaces[0] if workspaces else None), redacted, tuple(secrets)
