"""A worker killed (SIGKILL) in the middle of sending, then restarted: nothing lost, nothing twice.

Real worker processes (`huey_consumer jobs.worker.huey`), a real SMTP server that can hold a
command, SQLite + Huey on SQLite and PostgreSQL + Huey on Redis.

Where the kill lands decides what "once" can mean with SMTP:

* before the message content went out (held at RCPT): the restarted worker takes the dead
  one's claim after it expires and the assistant receives the message exactly once;
* after the content went out but before the server's "250" (held at DATA): nobody can know
  whether the server kept it, so it is sent again — with the same Message-ID, which is
  derived from the outbox key, so mail clients show one message. The outbox row is sent
  once either way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from huey import Huey
from sqlalchemy import select

from assistant.services import outbox
from assistant.store.db import UnitOfWork, make_engine
from assistant.store.tables import OutboxEntry
from config.settings import load
from jobs.queue import build_huey
from jobs.tasks import Jobs, register
from tests.support.queue import _redis_url
from tests.support.services import unavailable
from tests.support.smtp import SmtpServer

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Rig:
    config: Path
    uow: UnitOfWork
    jobs: Jobs
    huey: Huey
    smtp: SmtpServer
    procs: list[subprocess.Popen[bytes]]

    def worker(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, "ASSISTANT_CONFIG": str(self.config)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "huey.bin.huey_consumer", "jobs.worker.huey", "-w", "1",
             "-k", "thread", "-q"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def entries(self) -> list[tuple[str, int]]:
        with self.uow.read() as s:
            return [(st, n) for st, n in s.execute(select(OutboxEntry.state, OutboxEntry.attempts))]

    def drain_until(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.jobs.drain_outbox()
            if len(self.smtp.messages) >= count and self.entries()[0][0] == "sent":
                return
            time.sleep(0.5)
        raise AssertionError(f"not delivered within {timeout}s: {self.entries()}")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.redis)])
def rig(request: pytest.FixtureRequest, tmp_path: Path, smtp_server: SmtpServer) -> Iterator[Rig]:
    if request.param == "sqlite":
        db_url, queue = f"sqlite:///{tmp_path / 'db.sqlite'}", {"backend": "sqlite"}
    else:
        db_url = request.getfixturevalue("postgres_url")
        ok, reason = request.getfixturevalue("redis_reachable")
        if not ok:
            unavailable(reason)
        queue = {"backend": "redis", "url": _redis_url()}
    name = f"killtest_{uuid.uuid4().hex[:10]}"
    config = tmp_path / "assistant.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\nlog_level = "WARNING"\n'
        f'[database]\nurl = "{db_url}"\n'
        f'[queue]\nscheduler = false\nname = "{name}"\n'
        + "".join(f'{k} = "{v}"\n' for k, v in queue.items())
        + f'[smtp]\nhost = "{smtp_server.host}"\nport = {smtp_server.port}\ntimeout_seconds = 30\n'
        '[outbox]\nclaim_timeout_seconds = 2\nbackoff_seconds = 0.5\nbackoff_max_seconds = 1\n'
    )
    from assistant.store.migrate import upgrade

    upgrade(db_url)
    settings = load(config)
    huey = build_huey(settings)
    jobs = register(huey, periodic=False)
    engine = make_engine(db_url)
    rig = Rig(config, UnitOfWork(engine), jobs, huey, smtp_server, [])
    try:
        yield rig
    finally:
        for p in rig.procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)
        smtp_server.release()
        engine.dispose()
        if queue["backend"] == "redis":
            conn = huey.storage.conn
            keys = list(conn.scan_iter(match=f"huey.*{huey.storage.name}*"))
            if keys:
                conn.delete(*keys)


def queue_one(rig: Rig) -> None:
    from datetime import UTC, datetime

    with rig.uow.begin() as s:
        outbox.enqueue(s, key="kill-test:1", channel="smtp", recipient="sam@example.com",
                       subject="Schedule change", body_text="Board meeting moved", pair_id=None,
                       now=datetime.now(UTC))  # fmt: skip


def kill_while_held(rig: Rig, stage: str) -> None:
    queue_one(rig)
    rig.smtp.hold_next(stage)
    first = rig.worker()
    rig.jobs.drain_outbox()
    assert rig.smtp.wait_holding(30), "the worker never reached the SMTP server"
    first.send_signal(signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL
    rig.smtp.release()
    assert rig.entries()[0][0] == "sending", "the dead worker's claim is still there"


def test_killed_before_the_content_went_out_sends_exactly_once(rig: Rig) -> None:
    kill_while_held(rig, "rcpt")
    time.sleep(0.5)
    assert rig.smtp.messages == []
    rig.worker()  # restarted
    rig.drain_until(1, timeout=30)
    for _ in range(3):  # and every later run finds it sent
        rig.jobs.drain_outbox()
    time.sleep(1.5)
    assert len(rig.smtp.messages) == 1
    assert rig.entries() == [("sent", 2)], "the killed attempt counts (poison messages end dead)"


def test_killed_after_the_content_went_out_repeats_the_same_message_id(rig: Rig) -> None:
    kill_while_held(rig, "data")
    rig.worker()
    rig.drain_until(1, timeout=30)
    time.sleep(1.5)
    deliveries = rig.smtp.messages
    assert 1 <= len(deliveries) <= 2
    assert len({m.message["Message-ID"] for m in deliveries}) == 1
    assert rig.entries()[0][0] == "sent"
