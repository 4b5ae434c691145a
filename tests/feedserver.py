"""A real HTTP server on 127.0.0.1 (http.server in a thread) for feed and image tests, with faults on demand.

``server.route(path, body, ...)`` serves a body with an ETag and Last-Modified (304 to a matching conditional
request); ``status``, ``fail_first`` (answer 500 that many times first), ``delay_s`` (before the headers),
``location`` (a redirect), ``retry_after``. Every request is logged: (method, path, status, body bytes sent).
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LAST_MODIFIED = "Mon, 07 Dec 2026 10:00:00 GMT"


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str = "image/jpeg"
    fail_first: int = 0
    fail_status: int = 500
    retry_after: str | None = None
    delay_s: float = 0.0
    location: str | None = None
    served: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class FeedServer:
    def __init__(self):
        self.routes: dict[str, Route] = {}
        self.log: list[tuple[str, str, int, int]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                route = server.routes.get(self.path.split("?", 1)[0])
                status, headers, body = server.answer(route, self.headers)
                # Logged before answering: a client that has its answer may look at the log at once.
                with server._lock:
                    server.log.append(("GET", self.path, status, len(body)))
                if route is not None and route.delay_s:  # after logging: a client that gave up has still asked
                    time.sleep(route.delay_s)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # a client that hangs up early (a refused body) is no error
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def route(self, path: str, body: bytes = b"", **options) -> str:
        self.routes[path] = Route(body, **options)
        return self.url(path)

    def answer(self, route: Route | None, request_headers):
        if route is None:
            return 404, {"Content-Type": "text/html"}, b"<html><body>Not Found</body></html>"
        with route.lock:
            route.served += 1
            failing = route.served <= route.fail_first
        if failing:
            headers = {"Content-Type": "text/html"}
            if route.retry_after:
                headers["Retry-After"] = route.retry_after
            return route.fail_status, headers, b"<html>busy</html>"
        if route.location:
            return route.status if route.status in (301, 302, 303, 307, 308) else 302, {"Location": route.location}, b""
        if route.status != 200:
            return route.status, {"Content-Type": route.content_type}, route.body
        etag = '"' + hashlib.sha256(route.body).hexdigest()[:16] + '"'
        if request_headers.get("If-None-Match") == etag:
            return 304, {"ETag": etag}, b""
        return 200, {"Content-Type": route.content_type, "ETag": etag, "Last-Modified": LAST_MODIFIED}, route.body

    def bodies_sent(self, prefix: str = "/") -> int:
        """Requests under ``prefix`` answered with a body (200)."""
        return sum(1 for _, path, status, _ in self.log if status == 200 and path.startswith(prefix))

    def __enter__(self) -> "FeedServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
