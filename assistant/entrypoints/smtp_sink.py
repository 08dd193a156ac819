"""A local SMTP server that keeps what it receives (the demo's stand-in for a mail server).

aiosmtpd 1.4.6's Controller cannot bind port 0, so a free port is picked first and the
start retried if another process takes it in between.
"""

from __future__ import annotations

import errno
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, Self

from aiosmtpd.controller import Controller

from assistant.entrypoints.embedded import free_port


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


@dataclass
class SinkHandler:
    """The aiosmtpd handler of ``SmtpSink``: every message is accepted and kept.

    ``received`` is guarded by ``lock``; ``arrived`` (a condition on it) is notified as
    each message is kept. A subclass may refuse or delay a message before ``keep``.
    """

    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    arrived: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.arrived = threading.Condition(self.lock)

    def keep(self, envelope: Any) -> None:
        """Parse the envelope's message and keep it (takes ``lock``)."""
        raw = envelope.original_content or envelope.content
        msg = message_from_bytes(raw, policy=policy.default)
        with self.arrived:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), msg))
            self.arrived.notify_all()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.keep(envelope)
        return "250 OK"


def start_controller(handler: Any, host: str, attempts: int = 5) -> tuple[Controller, int]:
    """An aiosmtpd Controller started on a free port: (controller, port).

    The port is picked first (Controller cannot bind port 0) and the start retried when
    another process takes it in between; a bind failure only shows after ``ready_timeout``,
    hence a short one.
    """
    for attempt in range(attempts):
        port = free_port(host)
        controller = Controller(handler, hostname=host, port=port, ready_timeout=3.0)
        try:
            controller.start()
        except OSError as exc:  # TimeoutError included
            controller.stop(no_assert=True)
            retry = exc.errno == errno.EADDRINUSE or isinstance(exc, TimeoutError)
            if not retry or attempt == attempts - 1:
                raise RuntimeError(f"could not start an SMTP server on {host}: {exc}") from exc
            continue
        return controller, port
    raise RuntimeError(f"could not start an SMTP server on {host}")


class SmtpSink:
    """``with SmtpSink() as sink: ... sink.port ... sink.wait_for(2)``.

    ``handler``: a ``SinkHandler`` (a subclass that refuses or delays, in tests).
    """

    def __init__(self, host: str = "127.0.0.1", handler: SinkHandler | None = None) -> None:
        self.host = host
        self.port = 0
        self._handler = handler if handler is not None else SinkHandler()
        self._controller: Controller | None = None

    @property
    def received(self) -> list[Received]:
        with self._handler.lock:
            return list(self._handler.received)

    def start(self) -> Self:
        self._controller, self.port = start_controller(self._handler, self.host)
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Block until ``count`` messages arrived (IO of a real server, not time)."""
        with self._handler.arrived:
            self._handler.arrived.wait_for(lambda: len(self._handler.received) >= count, timeout)
            return list(self._handler.received)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
