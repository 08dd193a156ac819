"""The unit of work on SQLite: writers take the lock at BEGIN, readers never wait or block."""

from __future__ import annotations

import threading
import time

from sqlalchemy import func, select

from assistant.store.db import UnitOfWork
from assistant.store.tables import Pair
from tests.support.deps import deps_for


def test_an_open_read_neither_blocks_a_write_nor_sees_it(sqlite_uow: UnitOfWork) -> None:
    from datetime import UTC, datetime

    from assistant.services.pairs import add_pair

    reading = threading.Event()
    finish = threading.Event()
    seen: list[int] = []

    def reader() -> None:
        with sqlite_uow.read() as s:
            seen.append(int(s.scalar(select(func.count()).select_from(Pair)) or 0))
            reading.set()
            finish.wait(10)
            seen.append(int(s.scalar(select(func.count()).select_from(Pair)) or 0))

    thread = threading.Thread(target=reader)
    thread.start()
    assert reading.wait(10)
    started = time.monotonic()
    add_pair(deps_for(sqlite_uow, datetime.now(UTC)), name="alex", manager_email="a@example.com",
             assistant_email="s@example.com")  # fmt: skip
    waited = time.monotonic() - started
    finish.set()
    thread.join(10)
    assert waited < 1.0, f"the write waited {waited:.1f}s for a reader"
    assert seen == [0, 0], "the reader kept its snapshot"
    with sqlite_uow.read() as s:
        assert s.scalar(select(func.count()).select_from(Pair)) == 1
