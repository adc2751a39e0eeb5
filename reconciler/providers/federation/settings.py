"""Federation API settings: read from the environment, checked before anything is sent.

Plain http is accepted only for the sandbox on loopback, and TLS verification cannot be
turned off: the only TLS knob is an extra CA bundle for private PKI.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from reconciler.errors import ConfigError

ENV_URL = "RECONCILER_FEDERATION_URL"
ENV_APP_KEY = "RECONCILER_FEDERATION_APP_KEY"
ENV_APP_SECRET = "RECONCILER_FEDERATION_APP_SECRET"
ENV_TENANT_SPACE_ID = "RECONCILER_FEDERATION_TENANT_SPACE_ID"
ENV_CA_BUNDLE = "RECONCILER_FEDERATION_CA_BUNDLE"
ENV_TIMEOUT = "RECONCILER_FEDERATION_TIMEOUT"

MAX_TOKEN_TTL = 3600  # [DOC] maximum X-Token-Expire


@dataclass(frozen=True, slots=True, kw_only=True)
class FederationSettings:
    """Where the federation API is and how to authenticate; TLS verification is always on."""

    base_url: str
    app_key: str
    app_secret: str = field(repr=False)
    tenant_space_id: str | None = None
    ca_bundle: str | None = None  # a CA file or directory for private PKI; None = system CAs
    timeout: float = 30.0
    token_ttl: int = MAX_TOKEN_TTL

    def __post_init__(self) -> None:
        _check_url(self.base_url)
        if not self.timeout > 0:
            raise ConfigError(f"{ENV_TIMEOUT} must be a positive number of seconds")
        if not 0 < self.token_ttl <= MAX_TOKEN_TTL:
            raise ConfigError(f"the token lifetime must be 1..{MAX_TOKEN_TTL} seconds")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_url(url: str) -> None:
    """Refuse URLs that are not http(s), carry credentials, or use http off loopback."""
    example = "an https:// URL such as https://service.besclouds.com"
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a malformed port
    except ValueError as exc:
        raise ConfigError(f"{ENV_URL} is not a valid URL", hint=f"set it to {example}") from exc
    if parts.username is not None or parts.password is not None:
        # Never echo this URL: the part before '@' is a credential.
        raise ConfigError(
            f"{ENV_URL} must not contain credentials",
            hint=f"put them in {ENV_APP_KEY} and {ENV_APP_SECRET} instead",
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{ENV_URL} must be {example}, not {url!r}")
    if parts.query or parts.fragment:
        raise ConfigError(f"{ENV_URL} must not have a query or fragment: {url!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError(
            f"{ENV_URL} uses plain http for {parts.hostname}; that is allowed only for the "
            "sandbox on loopback (127.0.0.0/8, localhost, ::1)",
            hint=f"use {example}",
        )


def settings_from_env(env: Mapping[str, str]) -> FederationSettings:
    """Read the federation settings from ``env``; name every missing variable at once."""
    required = (ENV_URL, ENV_APP_KEY, ENV_APP_SECRET)
    missing = [name for name in required if not env.get(name)]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        raise ConfigError(
            f"missing environment variable{plural}: {', '.join(missing)}",
            hint=f"set {ENV_URL} to the federation API's base URL and {ENV_APP_KEY}/"
            f"{ENV_APP_SECRET} to the app key and secret from the tenant's API Fabric console",
        )
    timeout = 30.0
    if raw_timeout := env.get(ENV_TIMEOUT):
        try:
            timeout = float(raw_timeout)
        except ValueError:
            raise ConfigError(
                f"{ENV_TIMEOUT} must be a number of seconds, not {raw_timeout!r}"
            ) from None
    return FederationSettings(
        base_url=env[ENV_URL].strip(),
        app_key=env[ENV_APP_KEY],
        app_secret=env[ENV_APP_SECRET],
        tenant_space_id=env.get(ENV_TENANT_SPACE_ID) or None,
        ca_bundle=env.get(ENV_CA_BUNDLE) or None,
        timeout=timeout,
    )


def tls_verify(settings: FederationSettings) -> ssl.SSLContext | bool:
    """What httpx gets as ``verify``: the CA bundle's context, else True (never False)."""
    bundle = settings.ca_bundle
    if bundle is None:
        return True
    try:
        if os.path.isdir(bundle):
            return ssl.create_default_context(capath=bundle)
        return ssl.create_default_context(cafile=bundle)
    except OSError as exc:  # ssl.SSLError is an OSError too
        raise ConfigError(
            f"{ENV_CA_BUNDLE} {bundle!r} cannot be loaded as a CA bundle ({type(exc).__name__})",
            hint="point it at a readable PEM file (or directory) of CA certificates",
        ) from exc
