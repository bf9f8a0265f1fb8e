"""A real HTTP server on 127.0.0.1 for the tests: it serves feeds, and misbehaves when told to.

Each route is a `Route` (status, body, headers, and the faults: a delay before answering, a
body dripped slowly, an endless body, a redirect). The server records every request (path and
headers) and the most requests it had in flight at once per host header.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str = "application/rss+xml; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None  # answer 304 to a matching If-None-Match
    delay: float = 0.0  # seconds before the answer starts
    endless: bool = False  # stream zeros (well, spaces) until the client gives up
    drip: float = 0.0  # seconds between 1-byte chunks of the body
    redirect: str | None = None  # Location of a 302
    handler: Callable[[BaseHTTPRequestHandler], None] | None = None


@dataclass
class Seen:
    path: str
    headers: dict[str, str]


class FeedServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Seen] = []
        self.posts: list[tuple[str, dict[str, list[str]]]] = []
        self.refuse_posts = 0  # answer that many POSTs 503 first
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode("ascii", "replace"))
                with server._lock:
                    server.posts.append((self.path, form))
                    refuse = server.refuse_posts > 0
                    server.refuse_posts -= refuse
                self.send_response(503 if refuse else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                with server._lock:
                    server.requests.append(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}))
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    server._answer(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with server._lock:
                        server.in_flight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        # shutdown() waits for serve_forever's next poll: 0.05 s, not the default 0.5 s, after each test
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def announced(self, path: str = "/hub", since: int = 0) -> list[str]:
        """The topics (hub.url) published to the hub at `path` (from its `since`-th POST on), in order."""
        with self._lock:
            return [url for p, form in self.posts[since:] if p == path and form.get("hub.mode") == ["publish"]
                    for url in form.get("hub.url", [])]

    def hits(self, path: str) -> list[Seen]:
        return [r for r in self.requests if r.path == path]

    def _answer(self, request: BaseHTTPRequestHandler) -> None:
        route = self.routes.get(request.path)
        if route is None:
            request.send_response(404)
            request.send_header("Content-Length", "0")
            request.end_headers()
            return
        if route.delay:
            time.sleep(route.delay)
        if route.handler is not None:
            route.handler(request)
            return
        if route.redirect is not None:
            request.send_response(302)
            request.send_header("Location", route.redirect)
            request.send_header("Content-Length", "0")
            request.end_headers()
            return
        if route.etag is not None and request.headers.get("If-None-Match") == route.etag:
            request.send_response(304)
            request.send_header("ETag", route.etag)
            request.send_header("Content-Length", "0")
            request.end_headers()
            return
        request.send_response(route.status)
        request.send_header("Content-Type", route.content_type)
        if route.etag is not None:
            request.send_header("ETag", route.etag)
        for name, value in route.headers.items():
            request.send_header(name, value)
        if route.endless:
            request.send_header("Connection", "close")
            request.end_headers()
            chunk = b" " * 65536
            while True:
                request.wfile.write(chunk)
            return
        request.send_header("Content-Length", str(len(route.body)))
        request.end_headers()
        if route.drip:
            for byte in route.body:
                request.wfile.write(bytes([byte]))
                request.wfile.flush()
                time.sleep(route.drip)
            return
        request.wfile.write(route.body)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextmanager
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.close()
