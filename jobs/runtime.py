"""The process-wide service the job functions use.

Huey runs task functions by name in whatever process consumes the queue; they reach
the database, clock and channels through the service installed here at start-up
(by ``assistant run``, the demo, ``jobs.worker`` for ``huey_consumer``, or a test).
"""

from __future__ import annotations

from assistant.bootstrap import Service

_service: Service | None = None


def install(service: Service | None) -> None:
    global _service
    _service = service


def service() -> Service:
    if _service is None:
        raise RuntimeError("no service installed: call jobs.runtime.install() at start-up")
    return _service
