"""Fixtures: a Huey on each real storage, built by ``jobs.queue.build_huey``.

``huey_backend`` is parametrized: ``sqlite`` (a file in tmp_path) and ``redis``
(127.0.0.1:6379 or ``$TEST_REDIS_URL``, under a queue name unique to the test whose keys
are deleted afterwards). Redis unreachable: skip, or fail when ``CI=true``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from huey import Huey

from config.settings import QueueSettings, Settings
from jobs.queue import build_huey
from tests.support.services import unavailable

REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_url() -> str:
    return os.environ.get("TEST_REDIS_URL", REDIS_URL)


@pytest.fixture(scope="session")
def redis_reachable() -> tuple[bool, str]:
    import redis

    url = _redis_url()
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
        return True, ""
    except redis.RedisError as exc:
        return False, f"Redis not reachable at {url}: {exc}"
    finally:
        client.close()


def queue_settings(tmp_path: Path, backend: str, name: str) -> Settings:
    url = _redis_url() if backend == "redis" else ""
    return Settings(
        data_dir=tmp_path / "data",
        queue=QueueSettings(backend=backend, url=url, name=name),  # type: ignore[arg-type]
    )


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def huey_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Huey]:
    """A Huey on SQLite or Redis, empty, with no consumer running."""
    backend: str = request.param
    if backend == "redis":
        ok, reason = request.getfixturevalue("redis_reachable")
        if not ok:
            unavailable(reason)
    name = f"test_{uuid.uuid4().hex[:12]}"
    huey = build_huey(queue_settings(tmp_path, backend, name))
    try:
        yield huey
    finally:
        if backend == "redis":
            conn = huey.storage.conn
            keys = list(conn.scan_iter(match=f"huey.*{huey.storage.name}*"))
            if keys:
                conn.delete(*keys)
            huey.storage.pool.disconnect()
