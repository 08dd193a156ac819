"""The Huey instance, built from settings (never at import time).

``queue.backend`` picks the storage: ``sqlite`` (a file under data_dir; one machine),
``redis`` (``queue.url``; consumers on many machines; task priorities honoured; results
expire after ``RESULTS_KEPT_SECONDS``) or
``memory`` (one process, nothing kept). ``immediate=True`` runs tasks at once in the
caller, for tests and one-off commands.
"""

from __future__ import annotations

from typing import TypedDict

from huey import Huey, MemoryHuey, PriorityRedisExpireHuey, SqliteHuey

from config.settings import Settings

# On Redis a job's result (a sync's report) is dropped this long after it was stored; kept
# until read, as Huey does by default, the results nobody reads grew the store by one per
# job: 20,000 a round at 10,000 pairs. Claims and the polling loop's mark never expire.
RESULTS_KEPT_SECONDS = 3600

# The longest an idle worker sleeps between two reads of a queue that cannot block (Huey's
# SQLite storage; Redis blocks, a worker waits there for the next job). Huey's default
# backs off 1.15x from 0.1 s up to 10 s: after a quiet spell a polling round that the
# scheduler queued at its ETA (and the syncs it queued) waited seconds for a worker, so
# rounds of a 30 s loop ran 1-4 s late and a change could wait the interval and 3 s.
# Two workers reading every 0.25 s cost a few SQLite reads a second.
IDLE_READ_SECONDS = 0.25


class _HueyOptions(TypedDict):
    """The keyword arguments every Huey storage takes (Huey itself is untyped)."""

    name: str
    results: bool
    store_none: bool
    utc: bool
    immediate: bool
    store_intermediate_errors: bool


def build_huey(settings: Settings, immediate: bool = False) -> Huey:
    """A Huey for ``settings.queue``: results kept, UTC timestamps, the queue's name."""
    queue = settings.queue
    common: _HueyOptions = {
        "name": queue.name,
        "results": True,
        "store_none": False,
        "utc": True,
        "immediate": immediate,
        # a failure that will be retried is not a result; only the final one is kept
        "store_intermediate_errors": False,
    }
    if queue.backend == "sqlite":
        path = settings.queue_path
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteHuey(filename=str(path), timeout=30, **common)
    if queue.backend == "redis":
        if not queue.url:
            raise ValueError("queue.url is required when queue.backend is redis")
        return PriorityRedisExpireHuey(url=queue.url, expire_time=RESULTS_KEPT_SECONDS, **common)
    if queue.backend == "memory":
        return MemoryHuey(**common)
    raise ValueError(f"unknown queue backend {queue.backend!r}")
