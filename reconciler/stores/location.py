"""Where a state lives: the location rule, and the value every message names it by.

A state location is exactly one of two things, and anything else is refused before a
store is opened (so no file is ever created from it)::

    postgresql://...  postgres://...     the PostgreSQL backend (a libpq URL)
    a plain path                         the file backend, e.g. state.json, ./a:b.json

Refused, with the password masked: any other URL scheme or a misspelt one
(``postgressql://``, ``postgresql:/host``, ``file://``), a libpq ``key=value`` DSN
(``host=db password=... dbname=x``, which would otherwise become a file whose *name*
holds the password), an empty location, and one with surrounding whitespace. A path that
looks like one of these is written with ``./`` in front. Pure string handling.
"""

from __future__ import annotations

import enum
import re

from reconciler.errors import ConfigError
from reconciler.values import frozen

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_KEY_VALUE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\s*=")
_POSTGRES_PREFIXES = ("postgresql://", "postgres://")
_MASKED = "***"
# user:secret@ in anything URL-like, and secret-looking keys in query strings or key=value.
_USERINFO = re.compile(r"(?P<user>[^:/@?#\s]*):(?P<secret>[^@/\s]*)@")
_SECRET_KEY = re.compile(
    r"(?P<key>\b[A-Za-z_]*(?:pass|secret|token)[A-Za-z_]*\s*=\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*'|[^&;\s]*)",
    re.IGNORECASE,
)


class Backend(enum.Enum):
    """The two kinds of state store."""

    FILE = "file"
    POSTGRES = "postgres"


@frozen
class Location:
    """A state's location as messages show it: never a password.

    ``where`` is the file path, or the DSN with its password masked and without the
    workspace; ``workspace`` is the PostgreSQL workspace (None for a file).
    """

    backend: Backend
    where: str
    workspace: str | None = None

    def describe(self) -> str:
        """One pasteable string: the path, or the masked DSN with ``?workspace=``."""
        if self.workspace is None:
            return self.where
        joiner = "&" if "?" in self.where else "?"
        return f"{self.where}{joiner}workspace={self.workspace}"

    def named(self) -> str:
        """The location in a sentence: ``X`` or ``X (workspace W)``."""
        if self.workspace is None:
            return self.where
        return f"{self.where} (workspace {self.workspace})"

    def absent(self) -> str:
        """The loud line for a state that does not exist (yet) at this location."""
        return f"no state at {self.named()}"


def mask(text: str) -> str:
    """``text`` with anything that looks like a password replaced by ``***``."""
    text = _USERINFO.sub(lambda m: f"{m['user']}:{_MASKED}@", text)
    return _SECRET_KEY.sub(lambda m: f"{m['key']}{_MASKED}", text)


def classify(text: str, *, source: str) -> Backend:
    """The backend ``text`` selects; ConfigError (password masked) for anything else.

    ``source`` names where the text came from in the message (``--state``,
    ``RECONCILER_STATE``).
    """
    shown = mask(text)
    if not text:
        raise ConfigError(
            f"{source} is set but empty",
            hint="give the state location (a path or a postgresql:// URL), or leave it unset "
            "for the default .reconciler/state.json beside the desired state",
        )
    if text != text.strip():
        raise ConfigError(
            f"{source} {shown!r} has spaces around it",
            hint="remove the spaces (a path with leading spaces: write it as ./' name')",
        )
    if text.startswith(_POSTGRES_PREFIXES):
        return Backend.POSTGRES
    scheme = _SCHEME.match(text)
    if scheme is not None:
        postgres = "for PostgreSQL write postgresql://user@host:5432/dbname?workspace=NAME"
        url_like = text[scheme.end() :].startswith("/")
        raise ConfigError(
            f"{source} {shown!r} is not a state location: {scheme[1]!r} is not a supported "
            "URL scheme (postgresql:// or postgres://, exactly)",
            hint=postgres if url_like else f"{postgres}; for a file write ./{shown}",
        )
    if _KEY_VALUE.match(text):
        raise ConfigError(
            f"{source} {shown!r} looks like a key=value connection string, which is not supported",
            hint="write it as a URL: postgresql://user@host:5432/dbname?workspace=NAME; "
            f"for a file write ./{shown}",
        )
    return Backend.FILE
