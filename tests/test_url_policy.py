"""The one URL, loopback and TLS policy (providers.urls), run against both settings readers.

The same tables go through the federation and the CloudIdentity settings, so the two can
never accept different URLs again.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

import certifi
import httpx
import pytest

from reconciler.errors import ConfigError
from reconciler.providers import urls
from reconciler.providers.cloudidentity import signing
from reconciler.providers.cloudidentity.client import CloudIdentityClient, CloudIdentitySettings
from reconciler.providers.federation.client import (
    FederationClient,
    FederationSettings,
    settings_from_env,
)
from reconciler.values import frozen

SECRET = "SeCrEt-in-the-url-0042"


@frozen
class Provider:
    """One provider's settings, seen through the environment and through construction."""

    name: str
    url_variable: str
    ca_variable: str
    from_env: Callable[[dict[str, str]], object]
    construct: Callable[[str], object]
    client: Callable[[dict[str, str]], object]

    def read(self, url: str, **extra: str) -> object:
        """Settings read from an environment whose URL variable is ``url``."""
        return self.from_env({self.url_variable: url} | extra)


FEDERATION_ENV = {
    "RECONCILER_FEDERATION_APP_KEY": "ak",
    "RECONCILER_FEDERATION_APP_SECRET": "app-secret",
}
CLOUDIDENTITY_ENV = {"VOLCENGINE_ACCESS_KEY": "AK", "VOLCENGINE_SECRET_KEY": "SK"}
MOCK = httpx.MockTransport(lambda _: httpx.Response(500))

PROVIDERS = [
    Provider(
        name="federation",
        url_variable="RECONCILER_FEDERATION_URL",
        ca_variable="RECONCILER_FEDERATION_CA_BUNDLE",
        from_env=lambda env: settings_from_env(FEDERATION_ENV | env),
        construct=lambda url: FederationSettings(base_url=url, app_key="ak", app_secret="s"),
        client=lambda env: FederationClient(
            settings_from_env(FEDERATION_ENV | env), transport=MOCK
        ),
    ),
    Provider(
        name="cloudidentity",
        url_variable="RECONCILER_CLOUDIDENTITY_URL",
        ca_variable="RECONCILER_CLOUDIDENTITY_CA_BUNDLE",
        from_env=lambda env: CloudIdentitySettings.from_env(CLOUDIDENTITY_ENV | env),
        construct=lambda url: CloudIdentitySettings(
            url=url, credentials=signing.Credentials(access_key="AK", secret_key="SK")
        ),
        client=lambda env: CloudIdentityClient(
            CloudIdentitySettings.from_env(CLOUDIDENTITY_ENV | env), transport=MOCK
        ),
    ),
]
BY_NAME = pytest.mark.parametrize("provider", PROVIDERS, ids=[p.name for p in PROVIDERS])

ACCEPTED = [
    "https://service.besclouds.com",
    "https://open.volcengineapi.com/",
    "https://gateway.example.com:8443/prefix",
    "https://10.0.0.1",
    "https://bücher.example",
    "  https://service.besclouds.com  ",
    "http://127.0.0.1:8080",
    "http://127.9.9.9",
    "http://localhost:1",
    "http://LocalHost:8080",
    "http://[::1]:8080/",
]

# url -> what the refusal must say
REFUSED = {
    "http://service.besclouds.com": "plain http",
    "http://10.0.0.1:8080": "plain http",
    "http://127.0.0.1.nip.io": "plain http",
    "http://localhost.localdomain": "plain http",
    "http://[::2]:8080": "plain http",
    "ftp://127.0.0.1": "https://",
    "service.besclouds.com": "https://",
    "//service.besclouds.com": "https://",
    "https://": "valid host",
    "https://exa mple.com": "valid host",
    "https://host:99999": "valid host and port",
    "https://host:abc": "valid host and port",
    "https://host:0": "valid host and port",
    "http://[::1": "not a valid URL",
    "https://host/?q=1": "query",
    "https://host/path#frag": "fragment",
    "https://user@host": "credentials",
    "https://ak:pw@host": "credentials",
}


@BY_NAME
@pytest.mark.parametrize("url", ACCEPTED)
def test_accepted_urls(provider: Provider, url: str) -> None:
    """https anywhere, plain http only on loopback: both readers accept the same URLs."""
    provider.read(url)
    provider.construct(url.strip())


@BY_NAME
@pytest.mark.parametrize(("url", "says"), REFUSED.items(), ids=list(REFUSED))
def test_refused_urls_name_the_variable_and_give_an_example(
    provider: Provider, url: str, says: str
) -> None:
    """Both readers refuse the same URLs, naming the variable, the reason and an example."""
    for attempt in (lambda: provider.read(url), lambda: provider.construct(url)):
        with pytest.raises(ConfigError) as caught:
            attempt()
        error = caught.value
        assert provider.url_variable in error.message
        assert says in error.message
        assert error.hint is not None
        assert "https://" in error.hint


@BY_NAME
@pytest.mark.parametrize(
    "url",
    [
        f"https://ak:{SECRET}@service.example",
        f"https://{SECRET}@service.example",
        f"http://service.example/{SECRET}",
        f"https://service.example/?token={SECRET}",
        f"https://service.example/#{SECRET}",
        f"https://service.example:{SECRET}",
        f"ftp://service.example/{SECRET}",
        f"https://[{SECRET}]/",
    ],
    ids=["password", "user", "path", "query", "fragment", "port", "scheme", "bracketed"],
)
def test_a_refused_url_is_never_echoed(provider: Provider, url: str) -> None:
    """Whatever was pasted into the URL stays out of the error, its hint and its cause."""
    with pytest.raises(ConfigError) as caught:
        provider.read(url)
    error: BaseException | None = caught.value
    while error is not None:  # the whole chain, as --debug would print it
        for text in (str(error), repr(error), str(getattr(error, "hint", ""))):
            assert SECRET not in text
        error = error.__cause__ or error.__context__


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST", True),
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("localhost.localdomain", False),
        ("128.0.0.1", False),
        ("::2", False),
        ("example.com", False),
        ("", False),
    ],
)
def test_loopback_is_127_8_and_ipv6_1_and_localhost(host: str, loopback: bool) -> None:
    """Only 127.0.0.0/8, ::1 and the name localhost count as this machine."""
    assert urls.is_loopback(host) is loopback


# --- TLS ---------------------------------------------------------------------------------


def first_certificate(tmp_path: Path) -> Path:
    """A PEM file holding one real CA certificate (the first of certifi's bundle)."""
    pem = Path(certifi.where()).read_text()
    end = "-----END CERTIFICATE-----"
    start = pem.index("-----BEGIN CERTIFICATE-----")
    path = tmp_path / "ca.pem"
    path.write_text(pem[start : pem.index(end) + len(end)] + "\n")
    return path


def test_without_a_bundle_verify_is_true() -> None:
    """No bundle: httpx verifies against its default trust store; False is not a value."""
    assert urls.tls_verify(None, variable="X") is True


@pytest.mark.parametrize("as_directory", [False, True], ids=["file", "directory"])
def test_a_bundle_becomes_a_verifying_context(tmp_path: Path, as_directory: bool) -> None:
    """A CA file (or a hashed directory) becomes a context that verifies certificate and name."""
    bundle = first_certificate(tmp_path)
    verify = urls.tls_verify(str(tmp_path if as_directory else bundle), variable="X")
    assert isinstance(verify, ssl.SSLContext)
    assert verify.verify_mode is ssl.CERT_REQUIRED
    assert verify.check_hostname is True
    if not as_directory:
        assert len(verify.get_ca_certs()) == 1


@BY_NAME
def test_both_providers_read_their_ca_bundle(provider: Provider, tmp_path: Path) -> None:
    """Each reader takes its own CA bundle variable into its settings."""
    bundle = str(first_certificate(tmp_path))
    settings = provider.read("https://api.example.test", **{provider.ca_variable: bundle})
    assert getattr(settings, "ca_bundle", None) == bundle
    assert getattr(provider.read("https://api.example.test"), "ca_bundle", "?") is None


@BY_NAME
@pytest.mark.parametrize("content", [None, "not a certificate\n"], ids=["missing", "garbage"])
def test_an_unusable_bundle_fails_when_the_client_is_built(
    provider: Provider, tmp_path: Path, content: str | None
) -> None:
    """A CA bundle that cannot be loaded is a ConfigError naming its variable, before any call."""
    bundle = tmp_path / "ca.pem"
    if content is not None:
        bundle.write_text(content)
    env = {provider.url_variable: "https://api.example.test", provider.ca_variable: str(bundle)}
    with pytest.raises(ConfigError, match=provider.ca_variable):
        provider.client(env)
