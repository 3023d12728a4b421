"""A local HTTP server for URL fetching tests (the only network the tests use), and the PDQ images."""

import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.hashing.reference_data import PDQ_DATA_DIR
from tests.http_server import LocalHTTPServer

CONTENT_TYPES = {
    ".jpg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".gif": "image/gif",
}


def pdq_image(relative: str) -> bytes:
    """The bytes of one reference image; skips the test when the shared data is absent."""
    path = PDQ_DATA_DIR / relative
    if not path.exists():
        pytest.skip(f"PDQ reference data not found at {PDQ_DATA_DIR}")
    return path.read_bytes()


Route = Callable[[BaseHTTPRequestHandler], None]


class MediaServer:
    """Routes (path -> handler function) served on 127.0.0.1; counts the requests it got."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[str] = []
        self.server = LocalHTTPServer(self._handle)
        self.port = self.server.port

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        self.requests.append(request.path)
        route = self.routes.get(request.path.split("?", 1)[0])
        if route is None:
            request.send_error(404, "File not found")
            return
        route(request)

    def url(self, path: str) -> str:
        return self.server.url(path)

    def add_bytes(
        self,
        path: str,
        body: bytes,
        content_type: str | None = "application/octet-stream",
        *,
        content_length: bool = True,
    ) -> str:
        def route(handler: BaseHTTPRequestHandler) -> None:
            handler.send_response(200)
            if content_type is not None:
                handler.send_header("Content-Type", content_type)
            if content_length:
                handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)

        self.routes[path] = route
        return self.url(path)

    def add_image(self, relative: str) -> str:
        content_type = CONTENT_TYPES.get(Path(relative).suffix.lower(), "application/octet-stream")
        return self.add_bytes("/img/" + relative, pdq_image(relative), content_type)

    def add_redirect(self, path: str, location: str, status: int = 302) -> str:
        def route(handler: BaseHTTPRequestHandler) -> None:
            handler.send_response(status)
            handler.send_header("Location", location)
            handler.send_header("Content-Length", "0")
            handler.end_headers()

        self.routes[path] = route
        return self.url(path)

    def add_stream(
        self, path: str, *, chunks: int, chunk: bytes, delay: float = 0.0, declared_length: int | None = None
    ) -> str:
        """A body of `chunks` x `chunk`, without Content-Length unless declared, `delay` s apart."""

        def route(handler: BaseHTTPRequestHandler) -> None:
            handler.send_response(200)
            handler.send_header("Content-Type", "image/jpeg")
            if declared_length is not None:
                handler.send_header("Content-Length", str(declared_length))
            handler.end_headers()
            for _ in range(chunks):
                handler.wfile.write(chunk)
                handler.wfile.flush()
                if delay:
                    time.sleep(delay)

        self.routes[path] = route
        return self.url(path)

    def add_sleep(self, path: str, seconds: float) -> str:
        def route(handler: BaseHTTPRequestHandler) -> None:
            time.sleep(seconds)
            handler.send_response(200)
            handler.send_header("Content-Type", "image/jpeg")
            handler.end_headers()

        self.routes[path] = route
        return self.url(path)


@pytest.fixture
def media_server() -> Iterator[MediaServer]:
    media = MediaServer()
    media.server.start()
    yield media
    media.server.stop()
