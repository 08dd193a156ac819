"""``huey_consumer bench.scale_worker.huey``: the service's worker (``jobs.worker``), counting
what every account sync costs, for bench/scale.py.

Everything is ``jobs.worker`` (settings from the environment, the service, the Huey, the
tasks). The additions only count, in this process, and never talk to anything per sync:

* SQL statements: a ``before_cursor_execute`` listener on every engine counts each
  statement (by its text, with one sample of its parameters for bench/scale.py's
  EXPLAIN); the ones run inside ``pipeline.after_poll`` (the ``sync_account`` job) are
  also added to that account's kind (calendar or mail);
* HTTP requests of each calendar sync (``CalDavCalendar.requests``, around the
  calendar's ``changes()``), as a histogram of requests per sync;
* IMAP commands of each mailbox sync (``imaplib.IMAP4._command``, LOGIN included) and
  connections opened (``imaplib.IMAP4.open``).

A thread writes the totals, as one JSON value, to the Redis hash
``<queue name>:bench:stats`` (field: this process's pid) every 0.2 s; bench/scale.py
reads them before and after a round and takes the difference.
"""

from __future__ import annotations

import base64
import contextlib
import imaplib
import json
import os
import pickle
import threading
import time
from collections import Counter
from typing import Any

import redis
from sqlalchemy import event
from sqlalchemy.engine import Engine

from assistant.services import pipeline
from jobs.worker import huey, settings

_redis = redis.Redis.from_url(settings.queue.url)
KEY = f"{settings.queue.name}:bench:stats"

_lock = threading.Lock()
_local = threading.local()
statements: Counter[str] = Counter()
samples: dict[str, str] = {}  # statement -> base64 pickle of one parameter set
by_kind: Counter[str] = Counter()  # "<kind>_queries", "<kind>_syncs", "imap_commands", ...
http_per_sync: Counter[int] = Counter()


@event.listens_for(Engine, "before_cursor_execute")
def _count(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
           ) -> None:  # fmt: skip
    with _lock:
        statements[statement] += 1
        if statement not in samples and not many:
            try:
                samples[statement] = base64.b64encode(pickle.dumps(parameters)).decode()
            except Exception:
                samples[statement] = ""
    if getattr(_local, "queries", None) is not None:
        _local.queries += 1


_after_poll = pipeline.after_poll


def _counted_after_poll(deps: Any, account_id: int, **kw: Any) -> Any:
    _local.queries = 0
    try:
        run = _after_poll(deps, account_id, **kw)
    finally:
        spent, _local.queries = _local.queries, None
    kind = run.synced[0].kind if run.synced else "none"
    with _lock:
        by_kind[f"{kind}_queries"] += spent
        by_kind[f"{kind}_syncs"] += 1
    return run


pipeline.after_poll = _counted_after_poll

_open_calendar = pipeline.open_calendar


def _counted_open_calendar(provider: str, conf: Any, timeout: float = 30.0, **kw: Any) -> Any:
    source = _open_calendar(provider, conf, timeout, **kw)
    changes = source.changes

    def counted(token: Any, window: Any) -> Any:
        before = getattr(source, "requests", 0)
        try:
            return changes(token, window)
        finally:
            with _lock:
                http_per_sync[getattr(source, "requests", 0) - before] += 1

    source.changes = counted
    return source


pipeline.open_calendar = _counted_open_calendar

_command = imaplib.IMAP4._command
_open = imaplib.IMAP4.open


def _counted_command(self: Any, name: str, *args: Any) -> Any:
    with _lock:
        by_kind["imap_commands"] += 1
    return _command(self, name, *args)


def _counted_open(self: Any, *args: Any, **kw: Any) -> Any:
    with _lock:
        by_kind["imap_connections"] += 1
    return _open(self, *args, **kw)


imaplib.IMAP4._command = _counted_command  # type: ignore[method-assign]
imaplib.IMAP4.open = _counted_open  # type: ignore[method-assign]


def _flush_forever() -> None:
    pid = str(os.getpid())
    while True:
        with _lock:
            value = json.dumps({
                "statements": dict(statements), "samples": samples, "by_kind": dict(by_kind),
                "http_per_sync": {str(k): v for k, v in http_per_sync.items()},
            })  # fmt: skip
        with contextlib.suppress(redis.RedisError):
            _redis.hset(KEY, pid, value)
        time.sleep(0.2)


threading.Thread(target=_flush_forever, name="bench-stats", daemon=True).start()

__all__ = ["huey"]
