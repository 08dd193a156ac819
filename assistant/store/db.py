"""Engines and the unit of work, built from settings by ``assistant.bootstrap`` only."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.orm import Session, sessionmaker

READ_ONLY = "assistant_read_only"
# A pooled connection idle this long is pinged before it is handed out again (one round
# trip); one in steady use is not: pinging every checkout cost a round trip per unit of
# work, a fifth of a no-change sync's.
PING_IDLE_SECONDS = 5.0


def make_engine(url: str, echo: bool = False) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout."""
    kwargs: dict[str, Any] = {"echo": echo, "future": True}
    if url.startswith("sqlite"):
        db_path = url.split("///", 1)[-1] if "///" in url else ""
        if db_path and db_path != ":memory:" and not db_path.startswith("file:"):
            _private_sqlite_file(Path(db_path))
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    engine = create_engine(url, **kwargs)
    event.listen(engine, "before_cursor_execute", _without_nul, retval=True)
    if not url.startswith("sqlite"):
        _ping_when_idle(engine)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # SQLAlchemy's BEGIN below, not pysqlite's
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # A unit of work takes the write lock at BEGIN so two workers never both
            # read-then-write; a read-only session does not (in WAL mode it reads a
            # snapshot and neither waits for writers nor makes them wait).
            if conn.get_execution_options().get(READ_ONLY):
                conn.exec_driver_sql("BEGIN")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _ping_when_idle(engine: Engine) -> None:
    """Pessimistic disconnect handling for connections that sat idle in the pool.

    A server restarted (or a firewall that dropped the connection) while the pool was
    idle is found at checkout: the ping fails, the pool throws that connection away and
    hands out a new one. A connection checked in less than ``PING_IDLE_SECONDS`` ago is
    handed out as it is; should the server have gone in that moment, the statement fails,
    SQLAlchemy sees the disconnect and empties the pool, and the job is retried.
    """

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < PING_IDLE_SECONDS:
            return  # new (just connected), or in steady use
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as err:
            raise exc.DisconnectionError("an idle pooled connection is gone") from err


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", " ") if "\x00" in value else value
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_clean(v) for v in value)
    return value


def _without_nul(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> tuple[str, Any]:
    """Text reaches the database without NUL characters, on every backend alike.

    An organiser may put NUL in a title or a mail header; PostgreSQL's text cannot hold
    it (the whole sync would fail), SQLite can. One place turns it into a space in every
    bound string (as ``assistant.domain.text.one_line`` does for headers), so a hostile value is
    stored as the same text on both and the rest goes on.
    """
    return statement, _clean(parameters)


def _private_sqlite_file(path: Path) -> None:
    """The database file exists, mode 0600, before SQLite opens it (its -wal and -shm files
    take the same mode); a folder made for it is 0700."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for suffix in ("", "-wal", "-shm", "-journal"):
        part = path.with_name(path.name + suffix)
        try:
            if part.stat().st_mode & 0o077:
                part.chmod(0o600)
        except (FileNotFoundError, PermissionError):
            pass


class UnitOfWork:
    """The only thing that commits. ``with uow.begin() as session: ...`` commits on
    success and rolls back on any exception."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._factory = sessionmaker(engine, expire_on_commit=False)
        self._read_factory = sessionmaker(
            engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False
        )

    @contextmanager
    def begin(self) -> Iterator[Session]:
        with self._factory() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading only; nothing is committed.

        Closing (not rolling back) ends the transaction without expiring what was
        loaded, so rows read here stay usable, detached, after the block. On SQLite it
        does not take the write lock.
        """
        with self._read_factory() as session:
            yield session
