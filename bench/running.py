"""The service as ``assistant run`` starts it, for the benchmarks that time it from outside.

* ``timed_sink()``: an SMTP sink that notes when each message's DATA was accepted
  (``time.monotonic()``), per recipient;
* ``start_service(...)``: the service (SQLite or PostgreSQL, Huey on SQLite or Redis) and
  a Huey consumer in this process that runs the scheduler (``assistant run``'s
  ``start_consumer``): the periodic ``tick`` starts the ``sync_due`` polling loop at once;
* ``add_pairs``: pairs with one calendar account each; ``baseline``: their first (full)
  syncs, through the ``sync_account`` job, before anything is measured.

``bench/notify_latency.py`` (and its ``--budgets``, ``bench/promptness.py``) and
``bench/bursts.py`` use these; nothing here is imported by the service.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import temp_postgres, temp_redis_queue


def timed_sink() -> Any:
    """An ``SmtpSink`` that also notes when each message's DATA was accepted."""
    from assistant.entrypoints.smtp_sink import Received, SmtpSink
    from assistant.entrypoints.smtp_sink import SinkHandler as _Handler

    class Handler(_Handler):
        def __init__(self) -> None:
            super().__init__()
            self.arrivals: dict[str, list[float]] = {}

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            from email import message_from_bytes, policy

            at = time.monotonic()
            raw = envelope.original_content or envelope.content
            msg = message_from_bytes(raw, policy=policy.default)
            with self.arrived:
                self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), msg))
                for rcpt in envelope.rcpt_tos:
                    self.arrivals.setdefault(rcpt.lower(), []).append(at)
                self.arrived.notify_all()
            return "250 OK"

    class TimedSink(SmtpSink):
        def __init__(self) -> None:
            super().__init__()
            self._handler = Handler()

        def arrivals(self, rcpt: str) -> list[float]:
            with self._handler.lock:
                return list(self._handler.arrivals.get(rcpt, []))

        def wait_arrival(self, rcpt: str, count: int, timeout: float) -> float | None:
            """The time of the ``count``-th message to ``rcpt`` (None: not within timeout)."""
            h = self._handler
            with h.arrived:
                ok = h.arrived.wait_for(lambda: len(h.arrivals.get(rcpt, ())) >= count, timeout)
                return h.arrivals[rcpt][count - 1] if ok else None

    return TimedSink()


@dataclass
class World:
    svc: Any
    jobs: Any
    sink: Any
    stack: ExitStack
    root: Path
    backend: dict[str, str] = field(default_factory=dict)


def start_service(
    stack: ExitStack,
    root: Path,
    sink: Any,
    *,
    poll: float,
    window: float,
    workers: int = 2,
    repoll: float | None = None,
    cap: float | None = None,
    postgres: str | None = None,
    redis: str | None = None,
) -> World:
    """The service polling every ``poll`` s with a quiet period of ``window`` s
    (``notify.coalesce_seconds``); ``repoll`` (``sync.repoll_seconds``) and ``cap``
    (``notify.coalesce_max_seconds``) are the settings' defaults when None."""
    from assistant.bootstrap import build
    from assistant.entrypoints.runner import start_consumer
    from assistant.store.migrate import upgrade
    from config.settings import load
    from jobs import runtime
    from jobs.queue import build_huey
    from jobs.tasks import register

    db_url = ""
    queue: dict[str, Any] = {"backend": "sqlite"}
    backend = {"database": "sqlite", "queue": "sqlite"}
    if postgres:
        db_url = stack.enter_context(temp_postgres(postgres))
        backend["database"] = "postgresql"
    if redis:
        name = stack.enter_context(temp_redis_queue(redis))
        queue = {"backend": "redis", "url": redis, "name": name}
        backend["queue"] = "redis"
    sync: dict[str, Any] = {"poll_interval_seconds": poll, "http_timeout_seconds": 10}
    notify: dict[str, Any] = {"coalesce_seconds": window}
    if repoll is not None:
        sync["repoll_seconds"] = repoll
    if cap is not None:
        notify["coalesce_max_seconds"] = cap
    settings = load(
        None,
        data_dir=str(root / "data"),
        log_level="WARNING",
        database={"url": db_url},
        queue={**queue, "workers": workers, "scheduler": True},
        smtp={"host": sink.host, "port": sink.port, "from_address": "bench@example.com"},
        sync=sync,
        notify=notify,
        outbox={"backoff_seconds": 1, "backoff_max_seconds": 5},
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    svc = build(settings)
    runtime.install(svc)
    stack.callback(svc.engine.dispose)
    stack.callback(runtime.install, None)
    huey = build_huey(settings)
    jobs = register(huey, periodic=True)
    consumer = start_consumer(huey, settings)  # periodic: `tick` runs now and every minute
    stack.callback(consumer.stop, True)
    return World(svc, jobs, sink, stack, root, backend)


def add_pairs(world: World, count: int, provider: str, conf: Callable[[int], dict[str, Any]]
              ) -> list[tuple[int, int, str]]:  # fmt: skip
    """``count`` pairs with one calendar account each: (pair id, account id, assistant)."""
    from assistant.services.pairs import add_account, add_pair

    out = []
    for p in range(count):
        assistant = f"assistant{p}@example.com"
        pair = add_pair(
            world.svc, name=f"bench{p}", manager_email=f"manager{p}@example.com",
            assistant_email=assistant, timezone="UTC",
        )  # fmt: skip
        account = add_account(
            world.svc, pair=pair.id, name="calendar", provider=provider,
            settings=conf(p),
        )  # fmt: skip
        out.append((pair.id, account.id, assistant))
    return out


def baseline(world: World, accounts: list[int]) -> None:
    """The first (full) sync of every account, before anything is measured."""
    results = [world.jobs.sync_account(a) for a in accounts]
    for r in results:
        value = r.get(blocking=True, timeout=60)
        if not value or value.get("error"):
            raise RuntimeError(f"first sync failed: {value}")
