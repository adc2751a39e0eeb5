"""The request/response values every sandbox API handler speaks.

The HTTP server (``sandbox/server.py``) turns each HTTP exchange into a :class:`Request`,
offers it to the mounted handlers in turn, and writes back the first :class:`Response`.
Handlers are plain objects, so tests can call them without a socket.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One HTTP request as the sandbox sees it."""

    method: str
    path: str  # without the query string
    query: Mapping[str, tuple[str, ...]]  # parsed query string (keys as sent)
    raw_query: str  # the query string exactly as sent (for signature checks)
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    host: str  # the Host header as sent

    def json(self) -> Any:
        """The body parsed as JSON (raises ValueError when it is not)."""
        return json.loads(self.body.decode("utf-8"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    """What a handler answers; ``drop_connection`` closes the socket without a reply."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json;charset=UTF-8"),)
    drop_connection: bool = False
    delay_seconds: float = 0.0  # added latency before the reply
    extra: Mapping[str, Any] = field(default_factory=dict)


def json_response(status: int, payload: Any) -> Response:
    """A JSON response."""
    return Response(status=status, body=json.dumps(payload, ensure_ascii=False).encode("utf-8"))


class Handler(Protocol):
    """A mounted API: returns None for requests that are not its own."""

    def handle(self, request: Request) -> Response | None:
        """Answer ``request`` or return None."""
        ...
