"""Engines and the unit of work, built from settings by ``assistant.bootstrap`` only."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import weakref
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
# With ``background_checkpoints`` a thread checkpoints the SQLite WAL at most this often
# while it is written to, and at once when it has grown by ``CHECKPOINT_BYTES`` (about
# SQLite's own threshold of 1,000 pages at 4 KiB); it looks at the file every
# ``CHECKPOINT_POLL_SECONDS``.
CHECKPOINT_SECONDS = 2.0
CHECKPOINT_BYTES = 4 * 1024 * 1024
CHECKPOINT_POLL_SECONDS = 0.25

log = logging.getLogger(__name__)


def make_engine(url: str, echo: bool = False, *, background_checkpoints: bool = False) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout.

    ``background_checkpoints`` (the service's engine, ``assistant.bootstrap``): a file
    database's connections do not checkpoint the WAL when they commit (``PRAGMA
    wal_autocheckpoint=0``; by default the connection whose commit takes the WAL past 1,000
    pages copies it back into the database and syncs it, inside that commit); a
    ``Checkpointer`` thread does, PASSIVE (it waits for no reader or writer). A commit
    stays durable across a crash of the process: in WAL mode with synchronous=NORMAL it is
    in the WAL once it returns (power loss may take the last ones, as before). Disposing of
    the engine stops the thread after a last checkpoint; when the last connection to the
    database closes, SQLite checkpoints and removes the WAL, so a short command leaves a
    checkpointed database.
    """
    kwargs: dict[str, Any] = {"echo": echo, "future": True}
    checkpointer: Checkpointer | None = None
    if url.startswith("sqlite"):
        db_path = url.split("///", 1)[-1] if "///" in url else ""
        if db_path and db_path != ":memory:" and not db_path.startswith("file:"):
            _private_sqlite_file(Path(db_path))
            if background_checkpoints:
                checkpointer = Checkpointer(Path(db_path))
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
            if checkpointer is not None:
                cur.execute("PRAGMA wal_autocheckpoint=0")
                checkpointer.start()
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

    if checkpointer is not None:
        event.listen(engine, "engine_disposed", lambda _engine: checkpointer.stop())
        weakref.finalize(engine, checkpointer.stop, final=False)
    return engine


class Checkpointer:
    """Checkpoints a WAL database from a thread of its own, off the commit path.

    Every ``poll`` seconds it looks at the WAL file; when it was written to since the last
    checkpoint and ``every`` seconds have passed (or it grew by more than ``max_bytes``), it
    checkpoints (``checkpoint``) on a connection of its own, opened for that checkpoint
    only. PASSIVE copies what no reader still needs and waits for no one; once a
    checkpoint has copied everything, the next writer starts the WAL over from its
    beginning, so the file stays about as large as what is written between two
    checkpoints. ``start`` is idempotent (each new connection of the engine calls it);
    ``stop`` checkpoints a last time.
    """

    def __init__(
        self,
        path: Path,
        every: float | None = None,
        max_bytes: int | None = None,
        poll: float | None = None,
    ) -> None:
        self.path = path
        self.wal = path.with_name(path.name + "-wal")
        self.every = CHECKPOINT_SECONDS if every is None else every
        self.max_bytes = CHECKPOINT_BYTES if max_bytes is None else max_bytes
        self.poll = CHECKPOINT_POLL_SECONDS if poll is None else poll
        self.checkpoints = 0  # run so far (tests, benchmarks)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._seen: tuple[int, int] | None = None  # the WAL's (size, mtime) at the last one
        self._last = 0.0  # when the last one ran (monotonic)

    def start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(self._stopping,), name="sqlite-checkpointer", daemon=True
            )
            self._thread.start()

    def stop(self, final: bool = True) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            self._stopping.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        if final and thread is not None:
            self.checkpoint()

    def checkpoint(self) -> None:
        """One checkpoint, now: PASSIVE, then (when that copied every frame) RESTART without
        waiting, so that the next writer starts the WAL over from its beginning.

        A writer whose transaction had begun before the PASSIVE checkpoint finished would
        go on appending (under a stream of commits, each time), and the WAL would grow. The
        RESTART takes the writer lock only if it is free at once (no busy handler: else it
        does what PASSIVE does, here nothing), finds every frame copied, and returns when
        no reader is using the WAL; a commit arriving meanwhile waits that long.
        """
        try:
            conn = sqlite3.connect(self.path, timeout=0)
            try:
                busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if not busy and frames > 0 and copied == frames:
                    conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
            finally:
                conn.close()
            self.checkpoints += 1
        except sqlite3.Error as err:  # the next one tries again; nothing is lost meanwhile
            log.warning("WAL checkpoint failed: %s", type(err).__name__)

    def _wal_state(self) -> tuple[int, int] | None:
        try:
            st = self.wal.stat()
        except OSError:
            return None
        return st.st_size, st.st_mtime_ns

    def step(self, now: float) -> bool:
        """One look at the WAL at ``now`` (monotonic seconds): a checkpoint when it was
        written to since the last one and it is due; whether one ran. An idle database
        costs a ``stat`` of the WAL, nothing more."""
        state = self._wal_state()
        if state is None or state == self._seen:
            return False
        grown = state[0] - (self._seen[0] if self._seen else 0)
        if now - self._last < self.every and grown <= self.max_bytes:
            return False
        self.checkpoint()
        self._last, self._seen = now, self._wal_state()
        return True

    def _run(self, stopping: threading.Event) -> None:
        self._last, self._seen = time.monotonic(), self._wal_state()
        while not stopping.wait(self.poll):
            self.step(time.monotonic())
            self._seen = self._wal_state()


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
