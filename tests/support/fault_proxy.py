"""A reverse proxy on 127.0.0.1 that forwards HTTP verbatim and injects faults on demand.

Put it in front of a real server (Radicale, Xandikos, a protocol-level test server) and
point the client under test at ``proxy.url``::

    with FaultProxy("http://127.0.0.1:5232/") as proxy:
        proxy.fail_next(503, retry_after=30)   # the next request gets 503 + Retry-After
        proxy.hang_next(3.0)                    # the one after waits 3 s before it is sent on
        proxy.reply_next(409, body, headers, when=lambda r: r.method == "REPORT")
        proxy.cut_next(0.5)                     # the next reply breaks off half-way

Every method is forwarded (GET, PUT, DELETE, PROPFIND, REPORT, MKCALENDAR, ...) with
its headers and body; ``Host`` is rewritten to the upstream's, hop-by-hop headers are
dropped, and ``Location``/``Content-Location`` pointing at the upstream are rewritten
to the proxy. Injected faults are consumed in the order they were queued, each by the
first request its ``when`` predicate accepts (default: any request). ``seen`` records
every request as ``Seen(method, path, status)`` with the status answered (0 when the
answer could not be written, or the proxy stopped while holding the request).
"""

from __future__ import annotations

import http.client
import random
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailer", "trailers", "transfer-encoding", "upgrade", "content-length", "host",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Request:
    """What a fault's ``when`` predicate is shown: the request as the client sent it
    (``headers`` keyed by lower-case name)."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Seen:
    method: str
    path: str
    status: int


Predicate = Callable[[Request], bool]


def _any(request: Request) -> bool:
    return True


@dataclass(slots=True)
class _Fault:
    when: Predicate
    status: int = 0  # 0: forward (after the delay)
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    cut: float | None = None  # forward, but send only this share of the body, then hang up


class FaultProxy:
    """A threaded reverse proxy from ``url`` (a free port on ``host``) to ``upstream``."""

    def __init__(self, upstream: str, *, host: str = "127.0.0.1", timeout: float = 30.0) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"FaultProxy forwards to plain http:// servers, not {upstream!r}")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or 80
        self.upstream_origin = f"http://{parts.netloc}"
        self.host = host
        self.timeout = timeout
        self.seen: list[Seen] = []
        self._faults: list[_Fault] = []
        self._chaos: tuple[float, tuple[int | float, ...], random.Random] | None = None
        self.injected = 0  # faults given by ``chaos`` so far
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The proxy's origin with a trailing slash: ``http://127.0.0.1:<port>/``."""
        return f"http://{self.host}:{self.port}/"

    def proxied(self, upstream_url: str) -> str:
        """``upstream_url`` (on the upstream server) as reached through the proxy."""
        if not upstream_url.startswith(self.upstream_origin):
            raise ValueError(f"{upstream_url!r} is not on {self.upstream_origin}")
        return f"http://{self.host}:{self.port}" + upstream_url[len(self.upstream_origin) :]

    def start(self) -> Self:
        if self._server is not None:
            return self
        handler = type("Handler", (_Handler,), {"proxy": self})
        server = _Server((self.host, 0), handler)
        server.daemon_threads = True
        server.block_on_close = False  # a hung handler must not hold up stop()
        self._server = server
        self._stopping.clear()
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes hung handlers
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --------------------------------------------------------------------- faults

    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        retry_after: float | str | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        when: Predicate = _any,
    ) -> None:
        """The next ``times`` requests (accepted by ``when``) get ``status`` without
        reaching the upstream. A 401 carries ``WWW-Authenticate: Basic`` unless
        ``headers`` say otherwise."""
        extra = dict(headers or {})
        if retry_after is not None:
            value = retry_after if isinstance(retry_after, str) else f"{retry_after:g}"
            extra.setdefault("Retry-After", value)
        if status == 401:
            extra.setdefault("WWW-Authenticate", 'Basic realm="fault-proxy"')
        with self._lock:
            self._faults.extend(
                _Fault(when, status, headers=extra, body=body) for _ in range(times)
            )

    def reply_next(
        self,
        status: int,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        *,
        when: Predicate = _any,
    ) -> None:
        """The next request accepted by ``when`` gets this reply instead of the upstream's."""
        self.fail_next(status, headers=headers, body=body, when=when)

    def hang_next(self, seconds: float, *, when: Predicate = _any) -> None:
        """The next request (accepted by ``when``) is held ``seconds`` before it is
        forwarded; a client that timed out meanwhile gets nothing."""
        with self._lock:
            self._faults.append(_Fault(when, delay=seconds))

    def cut_next(self, share: float, *, when: Predicate = _any) -> None:
        """The next request (accepted by ``when``) is forwarded, and its reply is sent
        with its full ``Content-Length`` but only ``share`` of its body: the connection
        is closed in the middle, as a server or network failing mid-reply does."""
        with self._lock:
            self._faults.append(_Fault(when, cut=share))

    def chaos(self, rate: float, faults: tuple[int | float, ...], seed: int = 0) -> None:
        """From now on, a request no queued fault takes gets, with probability ``rate``, one
        of ``faults`` at random: an int is a status answered without reaching the upstream
        (a 429 or 503 with ``Retry-After: 1``), a float a hang of that many seconds before
        the request is forwarded (a client timing out meanwhile gets nothing). ``rate`` 0
        stops it."""
        with self._lock:
            self._chaos = (rate, faults, random.Random(seed)) if rate > 0 else None

    def clear(self) -> None:
        """Drop every fault not yet consumed (and stop ``chaos``)."""
        with self._lock:
            self._faults.clear()
            self._chaos = None

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._faults)

    def _take(self, request: Request) -> _Fault | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.when(request):
                    return self._faults.pop(i)
            if self._chaos is not None:
                rate, faults, rng = self._chaos
                if rng.random() < rate:
                    self.injected += 1
                    return _random_fault(rng.choice(faults))
        return None

    def _record(self, seen: Seen) -> int:
        with self._lock:
            self.seen.append(seen)
            return len(self.seen) - 1

    def _unanswered(self, index: int) -> None:
        """The client gave up before the answer: the request is recorded with status 0."""
        with self._lock:
            if index < len(self.seen):
                old = self.seen[index]
                self.seen[index] = Seen(old.method, old.path, 0)

    # ------------------------------------------------------------------ forwarding

    def _forward(
        self, request: Request, raw_headers: list[tuple[str, str]]
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        """Send the request on as it came (header order and repeats kept); the reply
        with hop-by-hop headers dropped and upstream locations rewritten."""
        conn = http.client.HTTPConnection(
            self.upstream_host, self.upstream_port, timeout=self.timeout
        )
        try:
            conn.putrequest(request.method, request.path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", f"{self.upstream_host}:{self.upstream_port}")
            for key, value in raw_headers:
                if key.lower() not in HOP_BY_HOP:
                    conn.putheader(key, value)
            if request.body or "content-length" in {k.lower() for k, _ in raw_headers}:
                conn.putheader("Content-Length", str(len(request.body)))
            conn.endheaders(request.body or None)
            response = conn.getresponse()
            body = response.read()
            out = []
            for key, value in response.getheaders():
                lower = key.lower()
                if lower in HOP_BY_HOP and not (lower == "content-length" and not body):
                    continue  # a HEAD reply keeps the length of what GET would send
                if lower in ("location", "content-location") and value.startswith(
                    self.upstream_origin
                ):
                    value = f"http://{self.host}:{self.port}" + value[len(self.upstream_origin) :]
                out.append((key, value))
            return response.status, response.reason, out, body
        finally:
            conn.close()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (a killed worker, a timeout) is not an error here."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def _random_fault(kind: int | float) -> _Fault:
    if isinstance(kind, float):
        return _Fault(_any, delay=kind)
    headers = {"Retry-After": "1"} if kind in (429, 503) else {}
    if kind == 401:
        headers["WWW-Authenticate"] = 'Basic realm="fault-proxy"'
    return _Fault(_any, kind, headers=headers, body=b"fault proxy")


class _Handler(BaseHTTPRequestHandler):
    proxy: FaultProxy
    protocol_version = "HTTP/1.1"  # keep-alive towards the client, as real servers do

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):  # every method, PROPFIND and REPORT included
            return self._handle
        raise AttributeError(name)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self) -> None:
        proxy = self.proxy
        raw_headers = list(self.headers.items())
        request = Request(
            self.command, self.path, {k.lower(): v for k, v in raw_headers}, self._read_body()
        )
        fault = proxy._take(request)
        status, reason, body = 0, "", b""
        headers: list[tuple[str, str]] = []
        if fault is not None and fault.delay and proxy._stopping.wait(fault.delay):
            self.close_connection = True  # stopped while holding the request
            proxy._record(Seen(request.method, request.path, 0))
            return
        if fault is not None and fault.status:
            status, body = fault.status, fault.body
            headers = list(fault.headers.items())
        else:
            try:
                status, reason, headers, body = proxy._forward(request, raw_headers)
            except (OSError, http.client.HTTPException) as exc:
                status, body = 502, f"fault proxy: upstream failed: {exc}".encode()
                headers = [("Content-Type", "text/plain")]
        # Recorded before the answer goes out: a client that has its answer may look at
        # ``seen`` at once (recording after the write raced with it).
        index = proxy._record(Seen(request.method, request.path, status))
        try:
            self.send_response(status, reason or None)
            for key, value in headers:
                self.send_header(key, value)
            no_body = status in (204, 304) or status < 200
            if not no_body and not any(k.lower() == "content-length" for k, _ in headers):
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD" and not no_body:
                if fault is not None and fault.cut is not None:
                    self.wfile.write(body[: int(len(body) * fault.cut)])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)
            self.wfile.flush()
        except OSError:  # the client gave up (timed out) before the answer
            self.close_connection = True
            proxy._unanswered(index)

    def log_message(self, format: str, *args: Any) -> None:
        pass
