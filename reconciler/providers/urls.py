"""The one URL, loopback and TLS policy for the provider APIs' base URLs.

Both settings readers (``RECONCILER_FEDERATION_URL``, ``RECONCILER_CLOUDIDENTITY_URL``)
check their URL here, so the two can never accept different things: http(s) only, plain
http only on loopback (the sandbox), no credentials, query or fragment, a valid host and
port. Errors name the variable and give an example, but never repeat the URL: whatever
was pasted into it (a key, a token in a path or query) stays out of output and logs.

TLS verification cannot be turned off: :func:`tls_verify` gives httpx either ``True``
(the default trust store) or a verifying context for an extra CA bundle, never ``False``.
Pure apart from reading a CA bundle: no httpx.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
from typing import Literal
from urllib.parse import SplitResult, urlsplit

from reconciler.errors import ConfigError

LOOPBACK = "127.0.0.0/8, ::1, localhost"
# A DNS name after IDNA encoding: letters, digits, '-', '_' (seen in internal DNS), dots.
_HOST_NAME = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an IP literal, without brackets) is this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, *, variable: str, example: str) -> None:
    """Refuse a base URL that is unsafe or malformed; ``variable`` is where it came from."""
    hint = f"set {variable} to a URL such as {example}"
    try:
        parts: SplitResult | None = urlsplit(url)
    except ValueError:  # e.g. unbalanced [ ] around an IPv6 host
        parts = None  # raised outside the handler: the ValueError quotes part of the URL
    if parts is None:
        raise ConfigError(f"{variable} is not a valid URL", hint=hint)
    if "@" in parts.netloc:
        # Never echo this URL: the part before '@' is a credential.
        raise ConfigError(
            f"{variable} must not contain credentials (user:password@)",
            hint=f"set {variable} without them, e.g. {example}; the credentials have "
            "variables of their own",
        )
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"{variable} must be an https:// URL", hint=hint)
    host = parts.hostname or ""
    if not _valid_host(host) or not _valid_port(parts):
        raise ConfigError(f"{variable} does not name a valid host and port", hint=hint)
    if parts.query or parts.fragment:
        raise ConfigError(f"{variable} must not have a query (?) or fragment (#)", hint=hint)
    if parts.scheme == "http" and not is_loopback(host):
        raise ConfigError(
            f"{variable} uses plain http for {host}; that is allowed only for the sandbox "
            f"on loopback ({LOOPBACK})",
            hint=f"use https, e.g. {example}",
        )


def _valid_port(parts: SplitResult) -> bool:
    try:
        port = parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError:
        return False
    return port != 0  # urlsplit accepts 0, which no server listens on


def _valid_host(host: str) -> bool:
    if not host:
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return True
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    return _HOST_NAME.fullmatch(ascii_host) is not None


def tls_verify(ca_bundle: str | None, *, variable: str) -> ssl.SSLContext | Literal[True]:
    """What httpx gets as ``verify``: the CA bundle's context, else True (never False)."""
    if ca_bundle is None:
        return True
    try:
        if os.path.isdir(ca_bundle):
            return ssl.create_default_context(capath=ca_bundle)
        return ssl.create_default_context(cafile=ca_bundle)
    except OSError as exc:  # ssl.SSLError is an OSError too
        raise ConfigError(
            f"{variable} {ca_bundle!r} cannot be loaded as a CA bundle ({type(exc).__name__})",
            hint="point it at a readable PEM file (or directory) of CA certificates",
        ) from exc
