"""A real HTTP server on 127.0.0.1 that records requests and answers as it is told.

``HttpReceiver`` runs a ``ThreadingHTTPServer`` on a free port (bound to port 0, so no
race for it). Every request is recorded (``requests``: method, path, headers, raw body)
when it arrives, before it is answered. Answers come from a script: ``answer(status,
headers, body, times)`` queues the next answers, ``hang(times)`` makes the next requests
wait without answering until the server stops; when the script is empty, ``default``
(a function of the request, 200 by default) answers.

Use it as a context manager, or through a test module's fixture.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: Message
    body: bytes


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    hang: bool = False


Responder = Callable[[Request], Answer]


class HttpReceiver:
    """See the module docstring."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.default: Responder = lambda request: Answer(200, body=b"ok")
        self._lock = threading.Lock()
        self._requests: list[Request] = []
        self._script: list[Answer] = []
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ life cycle

    def start(self) -> HttpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Request(self.command, self.path, self.headers, body)
                answer = receiver._record(request)
                if answer.hang:
                    receiver._stopping.wait(30)
                    self.close_connection = True
                    return
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            do_POST = do_PUT = do_GET = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet test output

        server = ThreadingHTTPServer((self.host, 0), Handler)
        server.daemon_threads = True
        self._server = server
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # release hanging requests
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> HttpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ scripting

    def url(self, path: str = "/hook") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def answer(
        self,
        status: int,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` requests with ``status`` (before the default)."""
        with self._lock:
            self._script.extend([Answer(status, dict(headers or {}), body)] * times)

    def hang(self, times: int = 1) -> None:
        """Leave the next ``times`` requests unanswered until the server stops."""
        with self._lock:
            self._script.extend([Answer(hang=True)] * times)

    def _record(self, request: Request) -> Answer:
        with self._lock:
            self._requests.append(request)
            if self._script:
                return self._script.pop(0)
        return self.default(request)

    # ------------------------------------------------------------------ inspection

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def wait_for(self, n: int, timeout: float = 5.0) -> list[Request]:
        """The recorded requests once there are at least ``n``."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.requests
            if len(got) >= n or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert len(got) >= n, f"expected {n} request(s) within {timeout}s, got {len(got)}"
        return got
