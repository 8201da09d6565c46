"""A real HTTP server on 127.0.0.1 for tests, with scripted faults.

Each fake API (``tests/fakes/apis.py``) registers route handlers (GET, or POST with the body in the request) that
answer in the real API's format;
tests queue faults per path (status codes with headers, slow responses, truncated bodies, HTML error
pages) that are served *instead of* the next real responses. Every request is recorded.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    at: float
    body: bytes = b""  # a POST's body (a v2 infer request); empty for GET


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    trickle_s: float = 0.0  # > 0: the body goes out one byte at a time, this long apart (a server that trickles)

    @classmethod
    def json(cls, document: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return cls(status, json.dumps(document).encode(), {"Content-Type": "application/json", **(headers or {})})


Handler = Callable[[Request], Response]


class Fault:
    """Ready-made faults; each is a function of the real response (so 'truncated' can cut the real body)."""

    @staticmethod
    def status(code: int, headers: dict[str, str] | None = None, body: Any = None) -> Callable[[Response], Response]:
        payload = body if body is not None else {"error": f"injected {code}"}
        return lambda _real: Response.json(payload, status=code, headers=headers)

    @staticmethod
    def slow(seconds: float) -> Callable[[Response], Response]:
        return lambda real: Response(real.status, real.body, real.headers, delay_s=seconds)

    @staticmethod
    def trickle(seconds_per_byte: float) -> Callable[[Response], Response]:
        """The real response, its body sent one byte every ``seconds_per_byte`` (each read within any timeout)."""
        return lambda real: Response(real.status, real.body, real.headers, trickle_s=seconds_per_byte)

    @staticmethod
    def truncated() -> Callable[[Response], Response]:
        return lambda real: Response(real.status, real.body[: max(1, len(real.body) // 2)], real.headers)

    @staticmethod
    def rewrite(edit: Callable[[Any], Any]) -> Callable[[Response], Response]:
        """The real JSON document, changed by ``edit`` (bad rows inside an otherwise good page)."""
        return lambda real: Response.json(edit(json.loads(real.body)), status=real.status)

    @staticmethod
    def html(status: int = 200) -> Callable[[Response], Response]:
        page = b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1>cloudflare</body></html>"
        return lambda _real: Response(status, page, {"Content-Type": "text/html"})


class FakeServer:
    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.faults: dict[str, deque[Callable[[Response], Response]]] = {}
        self.requests: list[Request] = []
        self.faults_served = 0
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- set-up ---------------------------------------------------------------------------------
    def route(self, path: str, handler: Handler) -> None:
        self.routes[path] = handler

    def inject(self, path: str, *faults: Callable[[Response], Response]) -> None:
        with self._lock:
            self.faults.setdefault(path, deque()).extend(faults)

    def hits(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # -- life cycle -----------------------------------------------------------------------------
    def start(self) -> FakeServer:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._answer("GET", b"")

            def do_POST(self) -> None:
                self._answer("POST", self.rfile.read(int(self.headers.get("Content-Length", 0))))

            def _answer(self, method: str, body: bytes) -> None:
                parsed = urlparse(self.path)
                params = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
                headers = {k.lower(): v for k, v in self.headers.items()}
                request = Request(method, parsed.path, params, headers, time.monotonic(), body)
                with server._lock:
                    server.requests.append(request)
                    queue = server.faults.get(parsed.path)
                    fault = queue.popleft() if queue else None
                handler = server.routes.get(parsed.path)
                response = handler(request) if handler else Response.json({"error": "not found"}, status=404)
                if fault is not None:
                    server.faults_served += 1
                    response = fault(response)
                if response.delay_s:
                    time.sleep(response.delay_s)
                try:
                    self.send_response(response.status)
                    for key, value in response.headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(response.body)))
                    self.end_headers()
                    if response.trickle_s:
                        for i in range(len(response.body)):
                            self.wfile.write(response.body[i : i + 1])
                            self.wfile.flush()
                            time.sleep(response.trickle_s)
                    else:
                        self.wfile.write(response.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test): nothing to do

            def log_message(self, *_args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
