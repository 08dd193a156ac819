"""``jobs.queue.build_huey`` on each real storage: enqueue, run, results, scheduled ETAs;
the service's consumer (``assistant run``) reading an idle queue."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from huey import Huey, MemoryHuey, PriorityRedisExpireHuey, SqliteHuey

from assistant.entrypoints.runner import start_consumer
from jobs.queue import IDLE_READ_SECONDS, RESULTS_KEPT_SECONDS, build_huey
from tests.support.queue import queue_settings
from tests.support.services import unavailable


def test_a_task_round_trips_through_the_storage(huey_backend: Huey) -> None:
    huey = huey_backend
    add = huey.task(name="add")(lambda a, b: a + b)
    result = add(2, 3)
    assert huey.pending_count() == 1
    task = huey.dequeue()
    assert task is not None and task.args == (2, 3)
    assert huey.execute(task) == 5
    assert result.get() == 5
    assert huey.pending_count() == 0


def test_a_scheduled_task_waits_for_its_eta(huey_backend: Huey) -> None:
    huey = huey_backend
    ping = huey.task(name="ping")(lambda: "pong")
    eta = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
    ping.schedule(eta=eta)
    task = huey.dequeue()
    assert task is not None
    huey.execute(task, timestamp=eta.replace(tzinfo=None) - timedelta(seconds=1))  # too early
    assert huey.scheduled_count() == 1
    assert huey.read_schedule(eta.replace(tzinfo=None) - timedelta(seconds=1)) == []
    [due] = huey.read_schedule(eta.replace(tzinfo=None))
    assert due.id == task.id


def test_a_retried_failure_keeps_no_intermediate_error(huey_backend: Huey) -> None:
    huey = huey_backend
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first time fails")
        return "ok"

    result = huey.task(name="flaky", retries=1, retry_delay=0)(flaky)()
    huey.execute(huey.dequeue())
    assert result.get() is None  # the retry is pending; no error stored as the result
    huey.execute(huey.dequeue())
    assert result.get() == "ok"


def test_the_backend_follows_the_settings(tmp_path: Path) -> None:
    sqlite = build_huey(queue_settings(tmp_path, "sqlite", "q"))
    assert isinstance(sqlite, SqliteHuey) and sqlite.utc and sqlite.results
    assert sqlite.storage.filename == str(tmp_path.resolve() / "data" / "queue.db")
    assert isinstance(build_huey(queue_settings(tmp_path, "memory", "q")), MemoryHuey)
    redis = build_huey(queue_settings(tmp_path, "redis", "q"))  # connects lazily
    assert isinstance(redis, PriorityRedisExpireHuey) and redis.name == "q"


def test_immediate_mode_runs_tasks_in_the_caller(tmp_path: Path) -> None:
    huey = build_huey(queue_settings(tmp_path, "sqlite", "q"), immediate=True)
    double = huey.task(name="double")(lambda x: 2 * x)
    assert double(21)() == 42
    assert not (tmp_path / "data" / "queue.db").exists()  # nothing went through the file


def test_redis_needs_a_url(tmp_path: Path) -> None:
    settings = queue_settings(tmp_path, "redis", "q")
    settings.queue.url = ""
    with pytest.raises(ValueError, match=r"queue\.url"):
        build_huey(settings)


@pytest.mark.redis
def test_results_on_redis_expire_but_claims_do_not(tmp_path: Path, redis_reachable: tuple[bool, str]) -> None:
    """Results nobody reads (most syncs') must not pile up in Redis, one per job forever."""
    ok, reason = redis_reachable
    if not ok:
        unavailable(reason)
    huey = build_huey(queue_settings(tmp_path, "redis", f"expire{uuid.uuid4().hex[:10]}"))
    conn = huey.storage.conn
    try:
        result = huey.task(name="answer")(lambda: 42)()
        huey.execute(huey.dequeue())
        [key] = list(conn.scan_iter(match=f"huey.r.{huey.storage.name}.*"))
        assert 0 < conn.ttl(key) <= RESULTS_KEPT_SECONDS
        assert result.get() == 42  # readable meanwhile
        assert huey.put_if_empty("claim", True)
        claims = [k for k in conn.scan_iter(match=f"huey.r.{huey.storage.name}.*") if k != key]
        assert [conn.ttl(k) for k in claims] == [-1]  # no expiry
    finally:
        keys = list(conn.scan_iter(match=f"huey.*{huey.storage.name}*"))
        if keys:
            conn.delete(*keys)
        huey.storage.pool.disconnect()


def test_an_idle_worker_reads_the_sqlite_queue_often(tmp_path: Path) -> None:
    """Huey's worker sleeps between reads of a queue that cannot block, longer after each
    empty read; at Huey's default (up to 10 s) a polling round queued at its ETA after a
    quiet spell waited seconds for a worker. A worker of the service's consumer, made as the
    consumer makes its own, never sleeps longer than ``IDLE_READ_SECONDS``."""
    settings = queue_settings(tmp_path, "sqlite", "q")
    huey = build_huey(settings)
    consumer = start_consumer(huey, settings)
    consumer.stop(graceful=True)
    worker = consumer._create_worker()
    waits: list[float] = []

    class Flag:  # the worker sleeps on the stop flag: note each sleep, return at once
        def wait(self, seconds: float) -> bool:
            waits.append(seconds)
            return False

        def is_set(self) -> bool:
            return False

    worker.stop_flag = Flag()
    for _ in range(60):  # a quiet spell: empty reads, each followed by a sleep
        worker.loop()
    assert len(waits) == 60
    assert max(waits) <= IDLE_READ_SECONDS
    assert waits[0] < waits[-1], "it still backs off (from Huey's 0.1 s)"
    ping = huey.task(name="ping")(lambda: "pong")
    result = ping()
    worker.loop()  # the next read takes the job
    assert result.get() == "pong"
