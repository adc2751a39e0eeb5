"""Federation API settings: read from the environment, checked before anything is sent.

The URL and TLS policy is the one both providers share (:mod:`reconciler.providers.urls`):
plain http only for the sandbox on loopback, and TLS verification cannot be turned off;
the only TLS knob is an extra CA bundle for private PKI.
"""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.errors import ConfigError
from reconciler.providers import urls
from reconciler.values import field, frozen

ENV_URL = "RECONCILER_FEDERATION_URL"
ENV_APP_KEY = "RECONCILER_FEDERATION_APP_KEY"
ENV_APP_SECRET = "RECONCILER_FEDERATION_APP_SECRET"
ENV_TENANT_SPACE_ID = "RECONCILER_FEDERATION_TENANT_SPACE_ID"
ENV_CA_BUNDLE = "RECONCILER_FEDERATION_CA_BUNDLE"
ENV_TIMEOUT = "RECONCILER_FEDERATION_TIMEOUT"

EXAMPLE_URL = "https://service.besclouds.com"
MAX_TOKEN_TTL = 3600  # [DOC] maximum X-Token-Expire


@frozen
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
        urls.check_url(self.base_url, variable=ENV_URL, example=EXAMPLE_URL)
        if not self.timeout > 0:
            raise ConfigError(f"{ENV_TIMEOUT} must be a positive number of seconds")
        if not 0 < self.token_ttl <= MAX_TOKEN_TTL:
            raise ConfigError(f"the token lifetime must be 1..{MAX_TOKEN_TTL} seconds")


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
