"""The PostgreSQL pool pings a connection only after it sat idle (``store.db``).

A connection whose server side went away while it was idle in the pool is replaced at
checkout, not handed to a job that would fail with it; one in steady use costs no ping.
"""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from assistant.store import db

pytestmark = pytest.mark.postgres


def _backend_pid(engine: object) -> int:
    with engine.connect() as conn:  # type: ignore[attr-defined]
        return int(conn.scalar(text("SELECT pg_backend_pid()")))


def test_an_idle_connection_whose_server_side_is_gone_is_replaced(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_IDLE_SECONDS", 0.0)  # every checkin counts as idle
    engine = db.make_engine(postgres_url)
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        first = _backend_pid(engine)  # now idle in the pool
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": first})
        second = _backend_pid(engine)  # no error: the dead connection was not handed out
        assert second != first
    finally:
        engine.dispose()
        admin.dispose()


def test_a_connection_in_steady_use_is_not_pinged(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = db.make_engine(postgres_url)
    pings: list[object] = []
    real = engine.dialect.do_ping

    def counted(conn: object) -> bool:
        pings.append(conn)
        return bool(real(conn))

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    try:
        for _ in range(5):
            _backend_pid(engine)
        assert pings == []  # checked in a moment ago each time
        monkeypatch.setattr(db, "PING_IDLE_SECONDS", 0.0)
        for _ in range(3):
            _backend_pid(engine)
        assert len(pings) == 3  # idle (by the threshold): pinged at each checkout
    finally:
        engine.dispose()
