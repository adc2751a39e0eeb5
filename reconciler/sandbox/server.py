"""The sandbox's HTTP server: stdlib threads, handlers from ``wire.Handler``.

Every exchange is offered to the mounted handlers in order; the first answer wins.
A handler may ask for added latency or for the connection to be dropped after the
request was processed (the lost-response case that makes createTask non-idempotent).
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from reconciler.sandbox.wire import Handler, Request, Response, json_response

MAX_BODY = 16 * 1024 * 1024


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handlers: Sequence[Handler]) -> None:
        super().__init__(address, _Exchange)
        self.handlers = tuple(handlers)

    def handle_error(self, request: object, client_address: object) -> None:
        """A client gone mid-exchange is normal here (a closed client, a dropped response):
        quiet. Anything else is one line on stderr, not socketserver's traceback, which a
        server thread would print into whatever output is current (a test's, a demo's)."""
        error = sys.exc_info()[1]
        if error is None or isinstance(error, ConnectionError | TimeoutError):
            return
        sys.stderr.write(f"sandbox: a request failed: {type(error).__name__}: {error}\n")


class _Exchange(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed ACK
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet: the sandbox is driven by tests and demos."""

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._write(json_response(413, {"error": "body too large"}))
            return
        body = self.rfile.read(length) if length else b""
        split = urllib.parse.urlsplit(self.path)
        query = {
            key: tuple(values)
            for key, values in urllib.parse.parse_qs(split.query, keep_blank_values=True).items()
        }
        request = Request(
            method=self.command,
            path=split.path or "/",
            query=query,
            raw_query=split.query,
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
            host=self.headers.get("Host", ""),
        )
        response: Response | None = None
        for handler in self.server.handlers:
            response = handler.handle(request)
            if response is not None:
                break
        if response is None:
            response = json_response(404, {"error": f"no sandbox route for {split.path}"})
        self._write(response)

    def _write(self, response: Response) -> None:
        if response.delay_seconds > 0:
            time.sleep(response.delay_seconds)
        if response.drop_connection:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    do_GET = _dispatch
    do_POST = _dispatch
    do_PUT = _dispatch
    do_PATCH = _dispatch
    do_DELETE = _dispatch


class RunningSandbox:
    """A sandbox server bound to a port, serving in a background thread."""

    def __init__(self, handlers: Sequence[Handler], host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = _Server((host, port), handlers)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:43121``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> RunningSandbox:
        """Start serving in the background."""
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted."""
        self._server.serve_forever()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()


@contextlib.contextmanager
def running(handlers: Sequence[Handler], host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``handlers`` on loopback for the duration of the block; yields the base URL."""
    sandbox = RunningSandbox(handlers, host, port).start()
    try:
        yield sandbox.url
    finally:
        sandbox.stop()
