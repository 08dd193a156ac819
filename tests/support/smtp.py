"""Fixture: a real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives.

``smtp_server`` yields an ``SmtpServer`` with ``host``, ``port``, ``messages`` (a list of
``Received``: envelope sender, recipients and the parsed ``EmailMessage``), ``wait_for(n)``
and ``fail_next(n, reply)`` to make the next n DATA commands fail (451 by default).

The server is started, and messages are kept, as the product's own sink does
(``assistant.smtp_sink``); this handler adds the faults.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from assistant.smtp_sink import Received, start_controller


class _Handler:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[Received] = []
        self.failures: list[str] = []  # replies to give to the next DATA commands
        self.refused = 0
        self.hold_stage = ""  # "rcpt" or "data": the next such command waits for release()
        self.holding = threading.Event()  # set while a command is held
        self.released = threading.Event()

    async def _hold(self, stage: str) -> bool:
        """Wait while the test holds ``stage``; True when this command was held."""
        with self.lock:
            if self.hold_stage != stage:
                return False
            self.hold_stage = ""
        self.holding.set()
        while not self.released.is_set():
            await asyncio.sleep(0.02)
        self.holding.clear()
        return True

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        await self._hold("rcpt")
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await self._hold("data")
        with self.lock:
            if self.failures:
                self.refused += 1
                return self.failures.pop(0)
            raw = envelope.original_content or envelope.content
            msg = message_from_bytes(raw, policy=policy.default)
            assert isinstance(msg, EmailMessage)
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 OK"


class SmtpServer:
    """A running aiosmtpd server; see the module docstring."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self._handler = _Handler()
        self._controller: Controller | None = None

    def start(self, attempts: int = 5) -> None:
        self._controller, self.port = start_controller(self._handler, self.host, attempts)

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

    def hold_next(self, stage: str) -> None:
        """Make the next RCPT (``"rcpt"``: before any content) or DATA (``"data"``: after
        the content, before the reply) wait until ``release()``."""
        assert stage in ("rcpt", "data")
        self._handler.released.clear()
        with self._handler.lock:
            self._handler.hold_stage = stage

    def wait_holding(self, timeout: float = 10.0) -> bool:
        return self._handler.holding.wait(timeout)

    def release(self) -> None:
        self._handler.released.set()

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
