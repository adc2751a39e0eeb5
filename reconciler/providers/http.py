"""The one HTTP seam: provider clients are built here and httpx failures translated here.

Every request reconciler sends goes through :func:`translated`, which turns httpx's
exceptions (and the ``RuntimeError`` of a closed client) into :class:`TransportError`
with ``maybe_sent`` set: False only when the request certainly never left this process
(no connection was made), True when the server may have received and acted on it. A
caller must never resend a ``maybe_sent`` request that is not safe to repeat.

Messages name the API, the call and the failure in plain words. They are built from
those names and exception *types* only, never from httpx's text (which may carry a URL)
or a request, so no credential or token can reach them.

Retry timing lives in :mod:`reconciler.providers.retry`, the URL and TLS policy in
:mod:`reconciler.providers.urls`; both are pure. This module is the only one of the
three that imports httpx.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import httpx

from reconciler.errors import TransportError
from reconciler.values import frozen


@frozen
class ApiCall:
    """One call as messages name it, and what to tell the user when it fails on the wire."""

    api: str  # "the federation API", "CloudIdentity"
    name: str  # "createTask", "GET /repos/o/r/pulls"
    unsent_hint: str | None = None  # what to check when nothing was sent
    lost_hint: str | None = None  # what to do when the request may have been received
    lost_means: str | None = None  # what a maybe-received request means for this call


@frozen
class Failure:
    """What went wrong on the wire, in plain words, and whether the server may have the request."""

    kind: str
    maybe_sent: bool


class ClientClosed(TransportError):
    """The call was made on a client that was already closed: a bug, never worth a retry."""


def classify(exc: httpx.HTTPError | httpx.InvalidURL) -> Failure:
    """The failure an httpx exception stands for; unknown kinds count as maybe sent."""
    match exc:
        # No connection was made, so not a byte of the request left this process.
        case httpx.ConnectTimeout():
            return Failure(kind="timed out connecting", maybe_sent=False)
        case httpx.PoolTimeout():
            return Failure(kind="timed out waiting for a free connection", maybe_sent=False)
        case httpx.ConnectError():
            return Failure(kind=_connect_failure(exc), maybe_sent=False)
        case httpx.ProxyError():
            return Failure(kind="the proxy refused the connection", maybe_sent=False)
        case httpx.UnsupportedProtocol() | httpx.InvalidURL():
            return Failure(kind="the URL cannot be requested", maybe_sent=False)
        # The connection was open: the request may have arrived and been acted upon.
        case httpx.ReadTimeout():
            return Failure(kind="timed out waiting for the answer", maybe_sent=True)
        case httpx.WriteTimeout():
            return Failure(kind="timed out sending the request", maybe_sent=True)
        case httpx.TimeoutException():
            return Failure(kind="timed out", maybe_sent=True)
        case httpx.ReadError() | httpx.CloseError():
            return Failure(kind="connection dropped", maybe_sent=True)
        case httpx.WriteError():
            return Failure(kind="connection dropped while sending", maybe_sent=True)
        case httpx.RemoteProtocolError():
            return Failure(kind="connection dropped or the answer was malformed", maybe_sent=True)
        case httpx.LocalProtocolError():  # raised mid-request too: part may be on the wire
            return Failure(kind="the request broke the HTTP protocol", maybe_sent=True)
        case httpx.DecodingError():
            return Failure(kind="the answer could not be decoded", maybe_sent=True)
        case httpx.TooManyRedirects():
            return Failure(kind="too many redirects", maybe_sent=True)
        case _:
            return Failure(kind="network failure", maybe_sent=True)


def _connect_failure(exc: httpx.ConnectError) -> str:
    """Why a connection failed, from the OS or TLS error httpx chains under its own."""
    cause: BaseException | None = exc
    while cause is not None:
        match cause:
            case ssl.SSLCertVerificationError():
                return "TLS certificate verification failed"
            case ssl.SSLError():
                return "TLS handshake failed"
            case ConnectionRefusedError():
                return "connection refused"
            case socket.gaierror():
                return "host name not found"
        cause = cause.__cause__ or cause.__context__
    return "could not connect"


def unsent(call: ApiCall, kind: str) -> TransportError:
    """The error for a request that certainly never reached the server."""
    return TransportError(
        f"could not reach {call.api} for {call.name} ({kind}); nothing was sent",
        maybe_sent=False,
        hint=call.unsent_hint,
    )


def lost(call: ApiCall, kind: str) -> TransportError:
    """The error for a request the server may have received, without a usable answer."""
    means = f": {call.lost_means}" if call.lost_means else ""
    return TransportError(
        f"{call.name} got no usable answer ({kind}) after the request may have reached "
        f"{call.api}{means}",
        maybe_sent=True,
        hint=call.lost_hint,
    )


def translate(exc: httpx.HTTPError | httpx.InvalidURL, call: ApiCall) -> TransportError:
    """The TransportError for an httpx exception raised by ``call``."""
    failure = classify(exc)
    return lost(call, failure.kind) if failure.maybe_sent else unsent(call, failure.kind)


@contextmanager
def translated(client: httpx.Client, call: ApiCall) -> Iterator[None]:
    """Run one request on ``client``; its httpx failures leave as TransportError."""
    try:
        yield
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise translate(exc, call) from exc
    except RuntimeError as exc:
        # httpx raises a bare RuntimeError when a closed client is used; any other
        # RuntimeError is not a transport failure and propagates as the bug it is.
        if not client.is_closed:
            raise
        raise ClientClosed(
            f"{call.name} was not sent: the connection to {call.api} was already closed",
            maybe_sent=False,
            hint="this is a reconciler bug: a call was made after its client was closed; "
            "please report it",
        ) from exc


def new_client(
    *,
    verify: ssl.SSLContext | Literal[True],
    timeout: float,
    transport: httpx.BaseTransport | None = None,
    base_url: str = "",
    auth: httpx.Auth | None = None,
) -> httpx.Client:
    """An httpx client for a provider API: TLS verified, a timeout, no redirects followed."""
    # ``verify`` cannot be False by type; see urls.tls_verify. Redirects are not followed
    # because a provider API never redirects, and following one would carry the
    # credentials (and, for createTask, a non-idempotent body) somewhere unchecked.
    return httpx.Client(
        base_url=base_url,
        transport=transport,
        verify=verify,
        timeout=httpx.Timeout(timeout),
        auth=auth,
        follow_redirects=False,
    )
