"""Shared plumbing of the benchmark scripts (not a test; nothing here is imported by the service).

* ``temp_postgres(admin_url)``: a fresh database on the server at ``admin_url``, dropped
  (with FORCE) on exit;
* ``temp_redis_queue(url)``: a unique Huey queue name; its keys are deleted on exit;
* ``percentile``: nearest-rank percentiles (p99 of 200 samples is the 198th smallest);
* ``cpu_seconds(pid)``: user + system CPU of a process from /proc (no psutil needed);
* ``calendar_ics``: one VEVENT as a calendar object resource; ``series_ics``: a weekly
  series with moved (RECURRENCE-ID) and cancelled (EXDATE) occurrences;
* ``rss_kib()``: this process's resident set size now (VmRSS).
"""

from __future__ import annotations

import math
import os
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/x.py` from anywhere
    sys.path.insert(0, str(ROOT))

_CLK_TCK = os.sysconf("SC_CLK_TCK")


@contextmanager
def temp_postgres(admin_url: str) -> Iterator[str]:
    """A new empty database beside ``admin_url``'s; yields its SQLAlchemy URL."""
    from sqlalchemy import create_engine, make_url, text

    if admin_url.startswith("postgresql://"):
        admin_url = "postgresql+psycopg://" + admin_url.removeprefix("postgresql://")
    name = f"bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextmanager
def temp_redis_queue(url: str) -> Iterator[str]:
    """A unique queue name on the Redis at ``url``; every key of it is deleted on exit."""
    import redis

    # only [a-z0-9]: Huey's Redis storage strips everything else from the keys it makes
    name = f"bench{os.getpid()}x{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    client.ping()
    try:
        yield name
    finally:
        keys = list(client.scan_iter(match=f"*{name}*"))
        if keys:
            client.delete(*keys)
        client.close()


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least p% of values <= it."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 3)

    return {
        "count": len(values),
        "p50": r(percentile(values, 50)),
        "p95": r(percentile(values, 95)),
        "p99": r(percentile(values, 99)),
        "max": r(max(values) if values else None),
        "mean": r(sum(values) / len(values) if values else None),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # after the ")" the fields start at "state" (field 3): utime is 14, stime is 15
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def calendar_ics(uid: str, start: datetime, end: datetime, summary: str, location: str = "") -> str:
    """A calendar object resource with one UTC-timed VEVENT."""
    loc = f"LOCATION:{location}\r\n" if location else ""
    fmt = "%Y%m%dT%H%M%SZ"
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//exec-assistant//bench//EN\r\n"
        f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:{start.strftime(fmt)}\r\n"
        f"DTSTART:{start.strftime(fmt)}\r\nDTEND:{end.strftime(fmt)}\r\n"
        f"SUMMARY:{summary}\r\n{loc}END:VEVENT\r\nEND:VCALENDAR\r\n"
    )


def series_ics(
    uid: str,
    start: datetime,
    end: datetime,
    summary: str,
    count: int,
    moved: Sequence[tuple[datetime, datetime, datetime]] = (),
    cancelled: Sequence[datetime] = (),
) -> str:
    """A calendar object resource with a weekly series of ``count`` UTC-timed occurrences;
    ``moved``: (original start, new start, new end) overrides (RECURRENCE-ID);
    ``cancelled``: original starts left out (EXDATE)."""
    fmt = "%Y%m%dT%H%M%SZ"
    stamp = start.strftime(fmt)
    exdate = f"EXDATE:{','.join(c.strftime(fmt) for c in cancelled)}\r\n" if cancelled else ""
    text = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//exec-assistant//bench//EN\r\n"
        f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:{stamp}\r\n"
        f"DTSTART:{start.strftime(fmt)}\r\nDTEND:{end.strftime(fmt)}\r\n"
        f"RRULE:FREQ=WEEKLY;COUNT={count}\r\n{exdate}SUMMARY:{summary}\r\nEND:VEVENT\r\n"
    )
    for original, new_start, new_end in moved:
        text += (
            f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:{stamp}\r\n"
            f"RECURRENCE-ID:{original.strftime(fmt)}\r\n"
            f"DTSTART:{new_start.strftime(fmt)}\r\nDTEND:{new_end.strftime(fmt)}\r\n"
            f"SUMMARY:{summary} (moved)\r\nEND:VEVENT\r\n"
        )
    return text + "END:VCALENDAR\r\n"


def rss_kib() -> int:
    """Resident set size of this process now, in KiB (VmRSS from /proc)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
