"""
One local HTTP server for tests: 127.0.0.1 on a free port, served from a daemon thread. The apps'
fakes (hashing's media server, reviews' webhook receiver, exchanges' NCMEC) are built on it and
differ only in what `handle` answers. Outgoing requests refuse loopback unless a test asks for
the `allow_loopback` fixture (tests/conftest.py).

tests/core/test_outbound.py keeps its own raw-socket listener on purpose: it drips header bytes
and speaks TLS, which http.server cannot do.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Handle = Callable[[BaseHTTPRequestHandler], None]


class LocalHTTPServer:
    """Every request with one of `methods` goes to `handle(request)`; other methods get 501."""

    def __init__(self, handle: Handle, *, methods: Collection[str] = ("GET",)) -> None:
        def dispatch(request: BaseHTTPRequestHandler) -> None:
            try:
                handle(request)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up on purpose (size cap, timeout)

        attributes: dict[str, object] = {f"do_{method}": dispatch for method in methods}
        attributes["log_message"] = lambda request, *args: None  # keep test output clean
        handler = type("Handler", (BaseHTTPRequestHandler,), attributes)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False  # a handler still sleeping does not hold up teardown
        self.port: int = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "") -> str:
        return self.base_url + path

    def start(self) -> LocalHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


@contextmanager
def serving(handle: Handle, *, methods: Collection[str] = ("GET",)) -> Iterator[LocalHTTPServer]:
    """A started LocalHTTPServer, stopped on exit: `with serving(handle) as server: ...`."""
    server = LocalHTTPServer(handle, methods=methods).start()
    try:
        yield server
    finally:
        server.stop()


def send(request: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str | None) -> None:
    """A complete response with Content-Length (and Content-Type unless None)."""
    request.send_response(status)
    if content_type is not None:
        request.send_header("Content-Type", content_type)
    request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    request.wfile.write(body)
