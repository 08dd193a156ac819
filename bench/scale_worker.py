"""``huey_consumer bench.scale_worker.huey``: the service's worker (``jobs.worker``), counting
the HTTP requests of every calendar sync, for bench/scale.py.

Everything is ``jobs.worker`` (settings from the environment, the service, the Huey, the
tasks). The one addition: the calendar a ``sync_account`` job opens is wrapped so that,
after its ``changes()``, the requests it cost (``CalDavCalendar.requests``) are added
to a Redis hash ``<queue name>:bench:requests`` (field: the calendar URL). That costs
one HINCRBY per sync.
"""

from __future__ import annotations

from typing import Any

import redis

import jobs.tasks
from jobs.worker import huey, settings

_original = jobs.tasks.open_calendar
_redis = redis.Redis.from_url(settings.queue.url)
KEY = f"{settings.queue.name}:bench:requests"


def _counted_open_calendar(provider: str, conf: Any, timeout: float = 30.0, **kw: Any) -> Any:
    source = _original(provider, conf, timeout=timeout, **kw)
    changes = source.changes

    def counted(token: Any, window: Any) -> Any:
        before = getattr(source, "requests", 0)
        try:
            return changes(token, window)
        finally:
            spent = getattr(source, "requests", 0) - before
            _redis.hincrby(KEY, str(conf.get("url", provider)), spent)

    source.changes = counted
    return source


jobs.tasks.open_calendar = _counted_open_calendar

__all__ = ["huey"]
