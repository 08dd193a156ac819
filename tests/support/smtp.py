"""Fixture: a real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives.

``smtp_server`` yields an ``SmtpServer`` with ``host``, ``port``, ``messages`` (a list of
``Received``: envelope sender, recipients and the parsed ``EmailMessage``), ``wait_for(n)``
and ``fail_next(n, reply)`` to make the next n DATA commands fail (451 by default).

It is the product's own sink (``assistant.entrypoints.smtp_sink.SmtpSink``) with a handler that adds
the faults.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from assistant.entrypoints.smtp_sink import Received, SinkHandler, SmtpSink


class _Handler(SinkHandler):
    def __init__(self) -> None:
        super().__init__()
        self.failures: list[str] = []  # replies to give to the next DATA commands
        self.refused = 0
        self.refuse_rate = 0.0  # the share of sessions refused at MAIL FROM (``refuse``)
        self.rng = random.Random(0)
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

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        with self.lock:
            if self.refuse_rate and self.rng.random() < self.refuse_rate:
                self.refused += 1
                return "421 4.3.2 Service not available, closing transmission channel"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

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
        self.keep(envelope)
        return "250 OK"


class SmtpServer(SmtpSink):
    """A running aiosmtpd server; see the module docstring."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._faults = _Handler()
        super().__init__(host, self._faults)

    @property
    def messages(self) -> list[Received]:
        return self.received

    @property
    def refused(self) -> int:
        """How many DATA commands were failed on purpose so far."""
        with self._faults.lock:
            return self._faults.refused

    def fail_next(self, n: int, reply: str = "451 4.3.0 Try again later") -> None:
        """Answer the next ``n`` DATA commands with ``reply`` instead of accepting."""
        with self._faults.lock:
            self._faults.failures.extend([reply] * n)

    def refuse(self, rate: float, seed: int = 0) -> None:
        """From now on refuse about ``rate`` of the sessions at MAIL FROM (421: the server
        is closing the channel); 0 stops it. Counted in ``refused``."""
        with self._faults.lock:
            self._faults.refuse_rate = rate
            self._faults.rng = random.Random(seed)

    def hold_next(self, stage: str) -> None:
        """Make the next RCPT (``"rcpt"``: before any content) or DATA (``"data"``: after
        the content, before the reply) wait until ``release()``."""
        assert stage in ("rcpt", "data")
        self._faults.released.clear()
        with self._faults.lock:
            self._faults.hold_stage = stage

    def wait_holding(self, timeout: float = 10.0) -> bool:
        return self._faults.holding.wait(timeout)

    def release(self) -> None:
        self._faults.released.set()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        """The received messages once there are at least ``count`` (asserted)."""
        got = super().wait_for(count, timeout)
        assert len(got) >= count, f"expected {count} message(s) within {timeout}s, got {len(got)}"
        return got


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server
