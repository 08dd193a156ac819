"""The servers and the measurements of bench/scale.py that are not the round itself.

* ``seed_calendars``: calendar collections written straight into Radicale's storage
  folder (``.Radicale.props`` and one ``.ics`` per event), as MKCALENDAR and PUT would
  leave them, but thousands a second; Radicale reads them as it reads its own;
* ``mail_server``: one Dovecot (tests/support/dovecot.py) with one login per pair and a
  few messages in each INBOX (Maildir files written before the first login), tuned as a
  mail server for many logins is (``imap-login`` and ``imap`` processes reused instead
  of one process per connection);
* ``group_cpu``: CPU seconds of a process group (Dovecot's master reaps its children,
  whose CPU then shows in its cutime/cstime); ``postgres_cpu``: of the PostgreSQL
  backends connected to one database;
* ``read_stats``/``stats_delta``: the counters bench/scale_worker.py keeps per consumer;
* ``explain``: EXPLAIN (ANALYZE) of every statement the measured round ran, with the
  parameters the consumer used, in a transaction rolled back; which nodes are
  sequential scans.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import re
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import calendar_ics

_CLK_TCK = os.sysconf("SC_CLK_TCK")
IMAP_PASSWORD = "bench-imap-secret"
IMAP_PASSWORD_ENV = "BENCH_IMAP_PASSWORD"

# ------------------------------------------------------------------------- calendars


def seed_calendars(storage: Path, pairs: range, events: int) -> None:
    """``events`` events in calendar ``manager<i>/calendar/`` for every i in ``pairs``."""
    from bench.notify_latency import day_at

    root = storage / "collection-root"
    root.mkdir(parents=True, exist_ok=True)
    for i in pairs:
        folder = root / f"manager{i}" / "calendar"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ".Radicale.props").write_text('{"tag": "VCALENDAR"}')
        for e in range(events):
            uid = f"m{i}-e{e}"
            body = calendar_ics(uid, day_at(1 + e, 9 + e), day_at(1 + e, 10 + e), f"Meeting {e}")
            (folder / f"{uid}.ics").write_text(body, newline="")


# ---------------------------------------------------------------------------- mail

_TUNING = """\
service imap-login {{
  service_count = 0
  process_min_avail = 2
  client_limit = 1000
}}
service imap {{
  service_count = 0
  client_limit = 1
  process_limit = 512
}}
auth_cache_size = 10M
"""


@contextmanager
def mail_server(pairs: int, messages: int) -> Iterator[Any]:
    """A started Dovecot with logins ``manager0``... (one password), each INBOX holding
    ``messages`` messages; stopped and removed on exit."""
    import tests.support.dovecot as dv

    original = dv.CONFIG
    dv.CONFIG = original + _TUNING
    try:
        server = dv.start_dovecot()
    finally:
        dv.CONFIG = original
    try:
        server.users.update({f"manager{i}": IMAP_PASSWORD for i in range(pairs)})
        server.add_user(f"manager{pairs - 1}", IMAP_PASSWORD)  # one write of the passwd-file
        owner = server._run_as
        for i in range(pairs):
            box = server.root / "mail" / f"manager{i}"
            for sub in ("new", "cur", "tmp"):
                (box / sub).mkdir(parents=True, exist_ok=True)
            for k in range(messages):
                (box / "new" / f"{1700000000 + k}.b{i}x{k}.bench").write_bytes(
                    _message(i, k).encode()
                )
            if owner is not None:
                for path in [box, *box.rglob("*")]:
                    os.chown(path, owner[1], owner[2])
        time.sleep(1.1)  # Dovecot notices a changed passwd-file by its mtime
        yield server
    finally:
        server.cleanup()


def _message(i: int, k: int) -> str:
    return (
        f"From: Colleague {k} <colleague{k}@example.org>\r\n"
        f"To: Manager <manager{i}@example.com>\r\n"
        f"Subject: Status {k}\r\nDate: Mon, 7 Dec 2026 09:0{k % 10}:00 +0000\r\n"
        f"Message-ID: <b{i}-{k}@example.org>\r\n\r\nAll on track.\r\n"
    )


def mail_settings(server: Any, i: int) -> dict[str, Any]:
    return {"host": server.host, "port": server.port, "security": "none",
            "username": f"manager{i}", "password": {"env": IMAP_PASSWORD_ENV}}  # fmt: skip


# ------------------------------------------------------------------------------ CPU


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def group_cpu(group: int) -> float:
    """User + system CPU of the live processes of ``group`` and their reaped children."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat(int(entry))
        if fields is None or int(fields[2]) != group:
            continue
        total += sum(int(v) for v in fields[11:15])
    return total / _CLK_TCK


def postgres_cpu(admin_url: str, database: str) -> dict[int, float]:
    """CPU seconds of each backend connected to ``database``, by pid."""
    from sqlalchemy import create_engine, text

    engine = create_engine(admin_url)
    try:
        with engine.connect() as conn:
            pids = conn.execute(
                text("SELECT pid FROM pg_stat_activity WHERE datname = :d"), {"d": database}
            ).scalars().all()
    finally:
        engine.dispose()
    out: dict[int, float] = {}
    for pid in pids:
        fields = _stat(int(pid))
        if fields is not None:
            out[int(pid)] = (int(fields[11]) + int(fields[12])) / _CLK_TCK
    return out


def cpu_spent(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(v - before.get(pid, 0.0) for pid, v in after.items())


# ---------------------------------------------------------------------------- stats


def read_stats(redis_url: str, key: str) -> dict[str, dict[str, Any]]:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        return {k.decode(): json.loads(v) for k, v in client.hgetall(key).items()}
    finally:
        client.close()


def settled_stats(redis_url: str, key: str, consumers: int) -> dict[str, dict[str, Any]]:
    """The counters once every consumer wrote them twice in a row unchanged (<= 3 s)."""
    last: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        time.sleep(0.45)
        now = read_stats(redis_url, key)
        if len(now) >= consumers and now == last:
            return now
        last = now
    return last


def stats_delta(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]
                ) -> dict[str, Any]:  # fmt: skip
    """Per counter, what the consumers added between two readings (summed)."""
    statements: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    http: Counter[str] = Counter()
    samples: dict[str, str] = {}
    for pid, now in after.items():
        was = before.get(pid, {})
        for name, field in (("statements", statements), ("by_kind", kinds),
                            ("http_per_sync", http)):  # fmt: skip
            old = was.get(name, {})
            for k, v in now.get(name, {}).items():
                if v - old.get(k, 0):
                    field[k] += v - old.get(k, 0)
        for k, v in now.get("samples", {}).items():
            samples.setdefault(k, v)
    return {"statements": statements, "by_kind": kinds, "http_per_sync": http,
            "samples": samples}  # fmt: skip


def per_account(delta: dict[str, Any], accounts: int) -> dict[str, Any]:
    k = delta["by_kind"]
    total = sum(delta["statements"].values())
    in_syncs = k.get("calendar_queries", 0) + k.get("mail_queries", 0)

    def ratio(a: float, b: float) -> float | None:
        return round(a / b, 2) if b else None

    hist = {int(n): c for n, c in delta["http_per_sync"].items()}
    cal = ratio(k.get("calendar_queries", 0), k.get("calendar_syncs", 0))
    requests = ratio(sum(n * c for n, c in hist.items()), sum(hist.values()))
    connections = ratio(k.get("imap_connections", 0), k.get("mail_syncs", 0))
    return {
        "queries_total": total,
        "queries_per_account": ratio(total, accounts),
        "queries_per_calendar_sync": cal,
        "queries_per_mail_sync": ratio(k.get("mail_queries", 0), k.get("mail_syncs", 0)),
        "queries_outside_syncs": total - in_syncs,  # sync_due's selection, chiefly
        "calendar_syncs": k.get("calendar_syncs", 0),
        "mail_syncs": k.get("mail_syncs", 0),
        "http_requests_per_calendar_sync": requests,
        "http_requests_histogram": dict(sorted(hist.items())),
        "imap_commands_per_mail_sync": ratio(k.get("imap_commands", 0), k.get("mail_syncs", 0)),
        "imap_connections_per_mail_sync": connections,
    }


# -------------------------------------------------------------------------- EXPLAIN

_SEQ = re.compile(r"Seq Scan on (\w+)")
_NODE = re.compile(r"^\s*(?:->\s*)?([A-Z][A-Za-z ]+?(?: using \w+)?(?: on \w+)?)\s+\(")


def explain(db_url: str, delta: dict[str, Any], accounts: int) -> list[dict[str, Any]]:
    """Every statement of the round, most frequent first: calls per account, the plan's
    scan nodes, the tables read by a sequential scan, the time the plan took."""
    import psycopg
    from sqlalchemy import make_url

    url = make_url(db_url).set(drivername="postgresql")
    out: list[dict[str, Any]] = []
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=False) as conn:
        conn.execute("ANALYZE")  # the planner's statistics, as autovacuum keeps them
        conn.commit()
        for stmt, calls in delta["statements"].most_common():
            sample = delta["samples"].get(stmt, "")
            entry: dict[str, Any] = {"sql": " ".join(stmt.split())[:160], "calls": calls,
                                     "per_account": round(calls / accounts, 3)}  # fmt: skip
            head = stmt.lstrip().split(None, 1)[0].upper()
            if head not in ("SELECT", "UPDATE", "INSERT", "DELETE", "WITH") or not sample:
                entry["plan"] = "(not explained)"
                out.append(entry)
                continue
            params = pickle.loads(base64.b64decode(sample))
            try:
                rows = conn.execute(f"EXPLAIN (ANALYZE, COSTS off) {stmt}", params).fetchall()
                plan = [r[0] for r in rows]
                entry["nodes"] = sorted({m.group(1) for line in plan
                                         if (m := _NODE.match(line))})  # fmt: skip
                entry["seq_scans"] = sorted(set(_SEQ.findall("\n".join(plan))))
                entry["time"] = next((p.strip() for p in plan if "Execution Time" in p), "")
            except psycopg.Error as exc:
                entry["plan"] = f"(EXPLAIN failed: {type(exc).__name__})"
            finally:
                conn.rollback()
            out.append(entry)
    return out


def table_scans(db_url: str) -> dict[str, tuple[int, int, int, int]]:
    """(sequential scans, index scans, rows updated, of them HOT) of every table so far
    (pg_stat_user_tables; a HOT update writes no index entries)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT relname, seq_scan, coalesce(idx_scan, 0), n_tup_upd, n_tup_hot_upd "
                "FROM pg_stat_user_tables"
            )).all()  # fmt: skip
    finally:
        engine.dispose()
    return {str(r[0]): (int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows}


def scans_delta(before: dict[str, tuple[int, int, int, int]],
                after: dict[str, tuple[int, int, int, int]]) -> dict[str, dict[str, int]]:
    """Per table, the scans and updates between two readings (tables without any left out)."""
    names = ("seq_scan", "idx_scan", "updated", "hot_updated")
    out = {}
    for table, now in sorted(after.items()):
        was = before.get(table, (0, 0, 0, 0))
        diff = {n: a - b for n, a, b in zip(names, now, was, strict=True)}
        if any(diff.values()):
            out[table] = diff
    return out
