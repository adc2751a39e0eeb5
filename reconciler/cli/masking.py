"""Secrets out of what the CLI prints itself: ``--debug`` tracebacks and error lines.

Messages are built without secrets, but a traceback also prints what third-party
exceptions say about themselves, anywhere in the chain (``__cause__``, ``__context__``,
their args): psycopg, for one, quotes a DSN's password. So every printed line goes
through :func:`mask`, which replaces each known secret — the values of the secret
environment variables, DSN passwords (as written and percent-decoded) from ``--state``
and ``RECONCILER_STATE`` — and anything shaped like a credential (a URL's password, a
``password=`` parameter, a bearer token, a token or secret field in JSON).
"""

from __future__ import annotations

import functools
import re
import urllib.parse
from collections.abc import Iterable, Mapping

MASK = "***"
# Variables reconciler reads that hold secrets, and name endings that say so.
SECRET_VARIABLES = (
    "RECONCILER_FEDERATION_APP_SECRET",
    "VOLCENGINE_SECRET_KEY",
    "VOLCENGINE_SESSION_TOKEN",
    "PGPASSWORD",
)
SECRET_SUFFIXES = ("_SECRET", "_SECRET_KEY", "_TOKEN", "_PASSWORD")
DSN_VARIABLES = ("RECONCILER_STATE",)


@functools.cache
def _shapes() -> tuple[re.Pattern[str], ...]:
    """What a credential looks like, compiled when a line is first masked: every command
    loads this module after parsing, and a run that succeeds masks nothing (compiling these
    at import cost validate's start-up ~5M instructions)."""
    return (
        # scheme://user:PASSWORD@host
        # (the scheme: a whole run of scheme characters, tried from its start only, so a
        # long run is scanned once, not once per character: linear, not quadratic)
        re.compile(r"(?P<keep>(?<![A-Za-z0-9+.-])[A-Za-z0-9+.-]+://[^\s:/@]*:)[^\s@/]+(?=@)"),
        # password=..., sslpassword=..., in a DSN's query or libpq's key=value form
        re.compile(r"(?P<keep>\b\w*password\s*=\s*)[^\s&'\"]+", re.IGNORECASE),
        # Authorization: Bearer TOKEN
        re.compile(r"(?P<keep>\bBearer\s+)[A-Za-z0-9._~+/=-]+"),
        # "AccessToken": "…", "app_secret": "…", "X-Security-Token": "…"
        re.compile(
            r"(?P<keep>[\"']?(?:AccessToken|access_token|app_secret|secret_key|SecretKey|"
            r"X-Security-Token|x-security-token)[\"']?\s*[:=]\s*[\"']?)[^\"'\s,}]+",
        ),
    )


def known_secrets(env: Mapping[str, str], dsns: Iterable[str | None] = ()) -> tuple[str, ...]:
    """Every secret value this process knows of: longest first, so none is half-masked."""
    found: set[str] = set()
    for name, value in env.items():
        if value and (name in SECRET_VARIABLES or name.endswith(SECRET_SUFFIXES)):
            found.add(value)
    for dsn in (*dsns, *(env.get(name) for name in DSN_VARIABLES)):
        found.update(_dsn_passwords(dsn))
    return tuple(sorted(found, key=len, reverse=True))


def _dsn_passwords(dsn: str | None) -> set[str]:
    """A URL's password and ``password=``/``sslpassword=`` parameters, as written and
    percent-decoded."""
    if not dsn or "://" not in dsn:
        return set()
    try:
        parts = urllib.parse.urlsplit(dsn)
    except ValueError:
        return set()
    userinfo, at, _ = parts.netloc.rpartition("@")
    raw = [userinfo.partition(":")[2]] if at and ":" in userinfo else []
    raw += _query_secrets(parts.query)
    return {form for value in raw if value for form in (value, urllib.parse.unquote(value))}


def _query_secrets(raw_query: str) -> list[str]:
    """Password-like parameters' values as written (``stores.pg_dsn.query_secrets``'s rule,
    kept here so that start-up loads no store: a test holds the two to the same answer)."""
    found = []
    for item in raw_query.split("&"):
        key, _, value = item.partition("=")
        if value and urllib.parse.unquote(key).lower().endswith("password"):
            found.append(value)
    return found


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every known secret and every credential-shaped value replaced."""
    for secret in secrets:
        text = text.replace(secret, MASK)
    for shape in _shapes():
        text = shape.sub(lambda match: match["keep"] + MASK, text)
    return text


def traceback_text(error: BaseException, secrets: Iterable[str]) -> str:
    """The whole traceback of ``error`` (its causes and contexts included), masked."""
    import traceback  # noqa: PLC0415 - only --debug and a bug need it: start-up stays short

    return mask("".join(traceback.format_exception(error)), tuple(secrets))
