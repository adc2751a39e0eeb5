"""httpx auth that signs CloudIdentity requests with :func:`signing.sign`.

Kept apart from ``signing`` so that module stays pure (no httpx): the sandbox verifies
signatures with it without loading an HTTP client.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from collections.abc import Callable, Generator

import httpx

from reconciler.providers.cloudidentity.signing import Credentials, format_x_date, sign, utc_now


class V4Auth(httpx.Auth):
    """httpx auth that signs every request (each retry again, with a fresh X-Date)."""

    requires_request_body = True  # we hash request.content, so httpx must have read it

    def __init__(
        self,
        credentials: Credentials,
        *,
        region: str,
        service: str,
        clock: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        self._credentials = credentials
        self._region = region
        self._service = service
        self._clock = clock

    def __repr__(self) -> str:
        return (
            f"V4Auth(access_key={self._credentials.access_key!r}, region={self._region!r}, "
            f"service={self._service!r})"
        )

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Add the signature headers for the bytes httpx is about to send."""
        query = urllib.parse.parse_qsl(request.url.query.decode("ascii"), keep_blank_values=True)
        request.headers.setdefault("Content-Type", "application/json; charset=utf-8")
        request.headers.update(
            sign(
                method=request.method,
                path=request.url.path or "/",
                query=query,
                headers={
                    "content-type": request.headers["content-type"],
                    "host": request.headers["host"],
                },
                body=request.content,
                access_key=self._credentials.access_key,
                secret_key=self._credentials.secret_key,
                region=self._region,
                service=self._service,
                x_date=format_x_date(self._clock()),
                session_token=self._credentials.session_token,
            )
        )
        yield request
