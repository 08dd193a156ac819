"""The service's SQLite engine checkpoints the WAL from a thread, not inside commits
(``store.db.make_engine(background_checkpoints=True)``, started by ``bootstrap.build``).

The WAL stays bounded under a stream of commits, every committed row survives the process
being killed, and a short process that disposes of its engine leaves no WAL behind.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from assistant.store import db

ROOT = Path(__file__).resolve().parents[2]


def _wal(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def test_commits_leave_checkpoints_to_the_thread_and_the_wal_stays_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "CHECKPOINT_SECONDS", 0.2)
    monkeypatch.setattr(db, "CHECKPOINT_POLL_SECONDS", 0.05)
    path = tmp_path / "stream.sqlite"
    engine = db.make_engine(f"sqlite:///{path}", background_checkpoints=True)
    uow = db.UnitOfWork(engine)
    try:
        with uow.begin() as session:
            session.execute(text("CREATE TABLE blob (id INTEGER PRIMARY KEY, b BLOB)"))
            # the commit does not checkpoint: that is the thread's
            assert session.scalar(text("PRAGMA wal_autocheckpoint")) == 0
        written, largest = 0, 0
        for _ in range(120):  # 120 commits of 200 KB: 24 MB through the WAL
            with uow.begin() as session:
                session.execute(
                    text(
                        "WITH RECURSIVE k(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM k "
                        "WHERE x < 100) INSERT INTO blob (b) SELECT randomblob(2000) FROM k"
                    )
                )
            written += 200_000
            largest = max(largest, _wal(path).stat().st_size)
            time.sleep(0.02)
        assert written >= 24_000_000
        assert largest < 10_000_000, largest  # without checkpoints it would hold it all
        with uow.read() as session:
            assert session.scalar(text("SELECT count(*) FROM blob")) == 12_000
    finally:
        engine.dispose()
    assert not _wal(path).exists() or _wal(path).stat().st_size == 0


_WRITER = """
import sys
from sqlalchemy import text
from assistant.store import db
engine = db.make_engine("sqlite:///" + sys.argv[1], background_checkpoints=True)
uow = db.UnitOfWork(engine)
with uow.begin() as session:
    session.execute(text("CREATE TABLE row (id INTEGER PRIMARY KEY, v TEXT)"))
for n in range(1, int(sys.argv[2]) + 1):
    with uow.begin() as session:
        session.execute(text("INSERT INTO row (id, v) VALUES (:n, :v)"), {"n": n, "v": "x" * 500})
    print(n, flush=True)
if sys.argv[3] == "dispose":
    engine.dispose()
else:
    import time
    time.sleep(60)  # killed here, or before
"""


def _writer(path: Path, rows: int, end: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), str(rows), end],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def _ids(path: Path) -> set[int]:
    conn = sqlite3.connect(path)
    try:
        return {n for (n,) in conn.execute("SELECT id FROM row")}
    finally:
        conn.close()


def test_every_committed_row_survives_a_kill(tmp_path: Path) -> None:
    path = tmp_path / "killed.sqlite"
    proc = _writer(path, 100_000, "sleep")
    assert proc.stdout is not None
    committed = 0
    try:
        for line in proc.stdout:
            committed = int(line)
            if committed >= 3000:  # past several checkpoints' worth (the WAL grows meanwhile)
                break
        proc.send_signal(signal.SIGKILL)  # mid-stream: a commit may be under way
    finally:
        proc.kill()
        proc.wait(30)
    assert committed >= 3000
    assert _wal(path).exists()  # not shut down cleanly: the WAL is still there
    ids = _ids(path)
    assert set(range(1, committed + 1)) <= ids
    assert ids == set(range(1, max(ids) + 1))


def test_a_short_process_leaves_a_checkpointed_database(tmp_path: Path) -> None:
    path = tmp_path / "short.sqlite"
    proc = _writer(path, 50, "dispose")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out.split()[-1] == "50"
    assert not _wal(path).exists()  # checkpointed into the database and removed
    assert _ids(path) == set(range(1, 51))


def test_an_idle_database_is_not_checkpointed_again(tmp_path: Path) -> None:
    """After a checkpoint, nothing written means nothing to do: the thread looks at the WAL
    and goes back to sleep (it checkpointed every two seconds for ever before)."""
    path = tmp_path / "idle.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    keeper = db.Checkpointer(path, every=2.0)
    try:
        assert keeper.step(100.0), "written since the start: due"
        assert not keeper.step(101.0), "idle: nothing to do"
        conn.execute("INSERT INTO t VALUES (1)")
        conn.commit()
        assert not keeper.step(101.5), "written, but the last one was 1.5 s ago"
        assert keeper.step(102.5)
        assert not keeper.step(110.0) and not keeper.step(500.0), "idle again"
        assert keeper.checkpoints == 2
    finally:
        conn.close()
