"""Entry point for extra worker processes: ``huey_consumer jobs.worker.huey -k thread -w 4``.

This module is the one place that builds the service at import, because that is how
``huey_consumer`` finds its Huey instance. Settings come from ``ASSISTANT_CONFIG`` and
the environment; set ``ASSISTANT_QUEUE__SCHEDULER=false`` on all workers but one. With
the SQLite queue add ``-m 0.25`` (``jobs.queue.IDLE_READ_SECONDS``; ``assistant run`` does
so): an idle worker would otherwise sleep up to 10 s between reads of the queue.
"""

from __future__ import annotations

from assistant.bootstrap import build, configure_logging
from config.settings import load
from jobs import runtime
from jobs.queue import build_huey
from jobs.tasks import register

settings = load()
configure_logging(settings.log_level)
runtime.install(build(settings))
huey = build_huey(settings)
register(huey, periodic=settings.queue.scheduler)


def quiet_huey() -> None:
    """``huey_consumer`` sets Huey's logger to INFO (a line per task) after importing this
    module; each worker puts the service's levels back when it starts."""
    configure_logging(settings.log_level)


huey.on_startup()(quiet_huey)
