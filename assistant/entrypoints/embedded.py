"""A Radicale CalDAV server run as a child process on 127.0.0.1, for the demo and tests.

``EmbeddedRadicale(folder)`` is a context manager: entering starts
``python -m radicale`` with no configuration file, no authentication (any user name
is accepted, anonymous requests too) and its storage under ``folder``; leaving stops
it. Nothing here is meant for production: it is the "nothing to install" calendar of
the embedded default.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import httpx


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (Radicale cannot bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ServerFailed(RuntimeError):
    """A server process did not start (its log tail is in the message)."""


class RadicaleFailed(ServerFailed):
    """The Radicale process did not start (its log tail is in the message)."""


class LocalServer:
    """An HTTP server run as a child process on ``host``, its output in ``log_path``.

    A subclass gives ``command(port)`` and its name; ``start`` picks a free port (the
    servers cannot bind port 0; a port taken meanwhile is tried again), launches the
    command and returns once the server answers HTTP; ``stop`` terminates it (kills it
    if it lingers). A context manager.
    """

    name = "server"
    failure: type[ServerFailed] = ServerFailed

    def __init__(
        self,
        folder: Path,
        log_name: str,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        self.folder = Path(folder)
        self.log_path = self.folder / log_name
        self.host = host
        self.port = port or 0
        self.startup_timeout = startup_timeout
        self.startup_seconds = 0.0
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def command(self, port: int) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Before the first launch (create folders)."""
        self.folder.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Start the server and return once it answers HTTP (a few tenths of a second)."""
        if self.running:
            return self
        self.prepare()
        began = time.monotonic()
        attempts = 1 if self.port else 3  # a picked free port may be taken meanwhile
        for _ in range(attempts):
            port = self.port or free_port(self.host)
            if self._launch(port):
                self.port = port
                self.startup_seconds = time.monotonic() - began
                return self
        raise self.failure(f"{self.name} did not start; log tail:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop the server (terminate, then kill if it lingers) and close its log."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _launch(self, port: int) -> bool:
        if self._log is None:
            self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            self.command(port), stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:  # exited: bad option or port taken
                self._process = None
                return False
            if answers_http(self.host, port):
                return True
            time.sleep(0.02)
        self.stop()
        raise self.failure(f"{self.name} did not answer within {self.startup_timeout:.0f}s")

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class EmbeddedRadicale(LocalServer):
    """A Radicale server on ``http://127.0.0.1:<port>/`` storing its data in ``folder``.

    ``url`` ends with a slash; a calendar of user ``alex`` lives at
    ``f"{url}alex/<name>/"``. ``new_calendar`` creates one. The log goes to
    ``folder / "radicale.log"``.
    """

    name = "Radicale"
    failure = RadicaleFailed

    def __init__(
        self,
        folder: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        super().__init__(
            folder, "radicale.log", host=host, port=port, startup_timeout=startup_timeout
        )
        self.storage_folder = self.folder / "storage"

    def prepare(self) -> None:
        self.storage_folder.mkdir(parents=True, exist_ok=True)

    def command(self, port: int) -> list[str]:
        return [
            sys.executable, "-m", "radicale",
            "--config", "",
            "--auth-type", "none",
            "--auth-delay", "0",
            "--rights-type", "authenticated",  # with auth none: everyone may read and write
            "--server-delay-on-error", "0",
            "--logging-level", "warning",
            "--storage-filesystem-folder", str(self.storage_folder),
            "--server-hosts", f"{self.host}:{port}",
        ]  # fmt: skip

    # --------------------------------------------------------------- calendars

    def new_calendar(self, name: str, user: str = "manager") -> str:
        """Create calendar ``name`` of ``user`` (MKCALENDAR) and return its URL.

        The request carries ``user`` as its login so that Radicale creates the user's
        principal collection first.
        """
        url = f"{self.url}{user}/{name}/"
        with httpx.Client(timeout=10) as client:
            response = client.request("MKCALENDAR", url, auth=(user, ""))
        if response.status_code != 201:
            raise RadicaleFailed(f"MKCALENDAR {url}: HTTP {response.status_code}")
        return url


def answers_http(host: str, port: int) -> bool:
    """Whether something on ``host:port`` speaks HTTP (an OPTIONS gets a status line)."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"OPTIONS / HTTP/1.0\r\n\r\n")
            return sock.recv(12).startswith(b"HTTP/")
    except OSError:
        return False
