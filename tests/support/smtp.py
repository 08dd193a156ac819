"""Fixture: a real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives.

``smtp_server`` yields an ``SmtpServer`` with ``host``, ``port``, ``messages`` (a list of
``Received``: envelope sender, recipients and the parsed ``EmailMessage``), ``wait_for(n)``
and ``fail_next(n, reply)`` to make the next n DATA commands fail (451 by default).

aiosmtpd 1.4.6's Controller cannot bind port 0: a free port is picked first and the
start retried if another process takes it in between.
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


class _Handler:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[Received] = []
        self.failures: list[str] = []  # replies to give to the next DATA commands
        self.refused = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            if self.failures:
                self.refused += 1
                return self.failures.pop(0)
            raw = envelope.original_content or envelope.content
            msg = message_from_bytes(raw, policy=policy.default)
            assert isinstance(msg, EmailMessage)
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 OK"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class SmtpServer:
    """A running aiosmtpd server; see the module docstring."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self._handler = _Handler()
        self._controller: Controller | None = None

    def start(self, attempts: int = 5) -> None:
        for attempt in range(attempts):
            port = free_port(self.host)
            # A bind failure only surfaces after ready_timeout, hence a short one.
            controller = Controller(
                self._handler, hostname=self.host, port=port, ready_timeout=3.0
            )
            try:
                controller.start()
            except OSError as exc:  # TimeoutError included
                controller.stop(no_assert=True)
                retry = exc.errno == errno.EADDRINUSE or isinstance(exc, TimeoutError)
                if not retry or attempt == attempts - 1:
                    raise
                continue
            self._controller, self.port = controller, port
            return

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def messages(self) -> list[Received]:
        with self._handler.lock:
            return list(self._handler.received)

    @property
    def refused(self) -> int:
        """How many DATA commands were failed on purpose so far."""
        with self._handler.lock:
            return self._handler.refused

    def fail_next(self, n: int, reply: str = "451 4.3.0 Try again later") -> None:
        """Answer the next ``n`` DATA commands with ``reply`` instead of accepting."""
        with self._handler.lock:
            self._handler.failures.extend([reply] * n)

    def wait_for(self, n: int, timeout: float = 5.0) -> list[Received]:
        """The received messages once there are at least ``n`` (the server works in a thread)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.messages
            if len(got) >= n or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert len(got) >= n, f"expected {n} message(s) within {timeout}s, got {len(got)}"
        return got


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
