"""The one error translation (providers.http): httpx failures become TransportError.

Each httpx exception class maps to ``maybe_sent`` and a failure kind in plain words; a
closed client is a TransportError too; the federation client, the CloudIdentity client
and the CI helper's Session all translate through it.
"""

from __future__ import annotations

import inspect
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest

from reconciler.errors import TransportError
from reconciler.providers import http
from reconciler.providers.cloudidentity import signing
from reconciler.providers.cloudidentity.client import CloudIdentityClient, CloudIdentitySettings
from reconciler.providers.federation.client import FederationClient, FederationSettings
from reconciler.providers.retry import RetryPolicy

SECRET = "s3cr3t-never-in-messages"
CALL = http.ApiCall(
    api="the test API",
    name="doThing",
    unsent_hint="check the URL",
    lost_hint="look before resending",
)

# httpx exception class -> (maybe_sent, the kind our message names)
TABLE: dict[type[Exception], tuple[bool, str]] = {
    httpx.ConnectError: (False, "could not connect"),
    httpx.ConnectTimeout: (False, "timed out connecting"),
    httpx.PoolTimeout: (False, "timed out waiting for a free connection"),
    httpx.ProxyError: (False, "the proxy refused the connection"),
    httpx.UnsupportedProtocol: (False, "the URL cannot be requested"),
    httpx.InvalidURL: (False, "the URL cannot be requested"),
    httpx.ReadTimeout: (True, "timed out waiting for the answer"),
    httpx.WriteTimeout: (True, "timed out sending the request"),
    httpx.TimeoutException: (True, "timed out"),
    httpx.ReadError: (True, "connection dropped"),
    httpx.CloseError: (True, "connection dropped"),
    httpx.WriteError: (True, "connection dropped while sending"),
    httpx.RemoteProtocolError: (True, "connection dropped or the answer was malformed"),
    httpx.LocalProtocolError: (True, "the request broke the HTTP protocol"),
    httpx.ProtocolError: (True, "network failure"),
    httpx.NetworkError: (True, "network failure"),
    httpx.TransportError: (True, "network failure"),
    httpx.DecodingError: (True, "the answer could not be decoded"),
    httpx.TooManyRedirects: (True, "too many redirects"),
    httpx.RequestError: (True, "network failure"),
}


def _raise(
    exc_class: type[Exception], message: str = SECRET
) -> Callable[[httpx.Request], httpx.Response]:
    """A MockTransport handler that raises ``exc_class`` for every request."""

    def handle(request: httpx.Request) -> httpx.Response:
        if issubclass(exc_class, httpx.RequestError):
            raise exc_class(message, request=request)
        raise exc_class(message)

    return handle


def test_every_httpx_request_error_has_a_row() -> None:
    """A new httpx exception class must get a decision here, not a silent default."""
    classes = {
        obj
        for obj in vars(httpx).values()
        if inspect.isclass(obj) and issubclass(obj, httpx.RequestError)
    }
    assert classes <= set(TABLE)


@pytest.mark.parametrize(("exc_class", "expected"), TABLE.items(), ids=[c.__name__ for c in TABLE])
def test_each_httpx_exception_maps_to_maybe_sent_and_a_kind(
    exc_class: type[Exception], expected: tuple[bool, str]
) -> None:
    """The class decides whether the request may have arrived and how the failure is named."""
    maybe_sent, kind = expected
    client = httpx.Client(transport=httpx.MockTransport(_raise(exc_class)))
    with pytest.raises(TransportError) as caught, http.translated(client, CALL):
        client.get("https://api.example.test/do")
    error = caught.value
    assert error.maybe_sent is maybe_sent
    assert f"({kind})" in error.message
    assert isinstance(error.__cause__, exc_class)
    assert "the test API" in error.message
    assert "doThing" in error.message
    if maybe_sent:
        assert "may have reached" in error.message
        assert error.hint == "look before resending"
    else:
        assert "nothing was sent" in error.message
        assert error.hint == "check the URL"
    assert SECRET not in error.message


def _connect_error(cause: BaseException) -> httpx.ConnectError:
    """A ConnectError chained the way httpx chains it: over httpcore's, over the OS error."""
    inner = RuntimeError("httpcore.ConnectError stand-in")
    inner.__cause__ = cause
    outer = httpx.ConnectError("connect failed")
    outer.__cause__ = inner
    return outer


@pytest.mark.parametrize(
    ("cause", "kind"),
    [
        (ConnectionRefusedError(111, "refused"), "connection refused"),
        (ssl.SSLCertVerificationError(1, "self-signed"), "TLS certificate verification failed"),
        (ssl.SSLError(1, "wrong version"), "TLS handshake failed"),
        (socket.gaierror(-2, "unknown"), "host name not found"),
        (OSError(113, "no route"), "could not connect"),
    ],
    ids=["refused", "certificate", "handshake", "dns", "other"],
)
def test_a_connect_error_is_named_by_its_cause(cause: BaseException, kind: str) -> None:
    """Connection failures say why in plain words; none of them was sent."""
    failure = http.classify(_connect_error(cause))
    assert failure == http.Failure(kind=kind, maybe_sent=False)


def test_a_closed_client_is_a_transport_error_not_sent() -> None:
    """httpx's RuntimeError for a closed client becomes ClientClosed (a TransportError)."""
    client = httpx.Client(transport=httpx.MockTransport(lambda _: httpx.Response(200)))
    client.close()
    with pytest.raises(http.ClientClosed) as caught, http.translated(client, CALL):
        client.get("https://api.example.test/do")
    assert isinstance(caught.value, TransportError)
    assert caught.value.maybe_sent is False
    assert "doThing was not sent" in caught.value.message
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_other_runtime_errors_are_not_disguised() -> None:
    """A RuntimeError on an open client is a bug and propagates as itself."""
    client = httpx.Client(transport=httpx.MockTransport(_raise(RuntimeError)))
    with pytest.raises(RuntimeError) as caught, http.translated(client, CALL):
        client.get("https://api.example.test/do")
    assert not isinstance(caught.value, TransportError)


# --- real sockets on loopback: httpx's own exception chains, not stand-ins ----------------


@contextmanager
def _server(answer: Callable[[socket.socket], None]) -> Iterator[int]:
    """A one-connection TCP server on loopback that runs ``answer``; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            answer(connection)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        thread.join(timeout=5)
        listener.close()


def _translated_get(url: str) -> TransportError:
    with (
        httpx.Client(timeout=5) as client,
        pytest.raises(TransportError) as caught,
        http.translated(client, CALL),
    ):
        client.get(url)
    return caught.value


def test_a_refused_connection_over_a_real_socket() -> None:
    """A port with nothing listening: 'connection refused', nothing sent."""
    with socket.socket() as bound:  # bound but not listening: the kernel refuses
        bound.bind(("127.0.0.1", 0))
        error = _translated_get(f"http://127.0.0.1:{bound.getsockname()[1]}/")
    assert error.maybe_sent is False
    assert "(connection refused)" in error.message


def test_tls_to_a_plain_server_is_a_failed_handshake() -> None:
    """https to a server that answers in plain HTTP: 'TLS handshake failed', nothing sent."""

    def plain_http(connection: socket.socket) -> None:
        connection.recv(4096)  # the ClientHello
        connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    with _server(plain_http) as port:
        error = _translated_get(f"https://127.0.0.1:{port}/")
    assert error.maybe_sent is False
    assert "(TLS handshake failed)" in error.message


def test_a_connection_dropped_after_the_request_maybe_sent() -> None:
    """The server read the request and hung up: the request may have been acted upon."""

    def read_then_hang_up(connection: socket.socket) -> None:
        connection.recv(4096)

    with _server(read_then_hang_up) as port:
        error = _translated_get(f"http://127.0.0.1:{port}/")
    assert error.maybe_sent is True
    assert "connection dropped" in error.message


# --- every caller goes through the seam ----------------------------------------------------


def _federation(transport: httpx.BaseTransport, sleeps: list[float]) -> FederationClient:
    settings = FederationSettings(
        base_url="https://fed.example.test", app_key="k", app_secret=SECRET
    )
    return FederationClient(
        settings, transport=transport, sleep=sleeps.append, retry=RetryPolicy(max_attempts=3)
    )


def _cloudidentity(transport: httpx.BaseTransport, sleeps: list[float]) -> CloudIdentityClient:
    credentials = signing.Credentials(access_key="AK", secret_key=SECRET)
    settings = CloudIdentitySettings(url="https://ci.example.test", credentials=credentials)
    return CloudIdentityClient(
        settings, transport=transport, sleep=sleeps.append, retry=RetryPolicy(max_attempts=3)
    )


def _token_then(status: int) -> Callable[[httpx.Request], httpx.Response]:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("tokenByAkSk"):
            return httpx.Response(200, json={"AccessToken": "t", "Expires": "600"})
        return httpx.Response(status, json={"resultCode": "0", "taskId": "1"})

    return handle


def test_the_federation_client_translates_through_the_seam() -> None:
    """A refused createTask is retried as not sent; a closed client is not retried at all."""
    sleeps: list[float] = []
    refused = httpx.MockTransport(_raise(httpx.ConnectError))
    with pytest.raises(TransportError, match=r"could not reach the federation API for"):
        _federation(refused, sleeps).query_task("1")
    assert len(sleeps) == 2  # the token call's own retries; then it gives up once

    sleeps.clear()
    client = _federation(httpx.MockTransport(_token_then(200)), sleeps)
    assert client.create_task([{"action": "DISABLE", "userAccount": "a"}]) == "1"
    client.close()
    with pytest.raises(http.ClientClosed, match="createTask was not sent"):
        client.create_task([{"action": "DISABLE", "userAccount": "a"}])
    assert sleeps == []


def test_the_cloudidentity_client_translates_through_the_seam() -> None:
    """A dropped List is retried; a closed client is one counted request, not retried."""
    sleeps: list[float] = []
    dropped = httpx.MockTransport(_raise(httpx.RemoteProtocolError))
    client = _cloudidentity(dropped, sleeps)
    with pytest.raises(TransportError, match="ListUserProvisioningEvents got no usable answer"):
        client.list_provisioning_events()
    assert (client.counter.calls, client.counter.retries, len(sleeps)) == (3, 2, 2)

    sleeps.clear()
    client = _cloudidentity(httpx.MockTransport(lambda _: httpx.Response(200)), sleeps)
    client.close()
    with pytest.raises(http.ClientClosed):
        client.retry_provisioning_event("e1")
    assert (client.counter.calls, sleeps) == (1, [])
