"""Are ICS feeds linear? (issue 16, point 3)

One run, side by side, on one generated feed of ``--events`` VEVENTs (default 10,000:
single events in three VTIMEZONEs, weekly series with moved and cancelled occurrences,
all-day events), expanded over a window of ``--days`` days:

* ``plain``: ``icalendar.Calendar.from_ical`` + ``recurring_ical_events.of(...).between``,
  the floor any Python reader pays;
* ``expand``: ``connectors.ics.expand.expand``, what ``assistant ics expand`` runs;
* ``cli``: the ``assistant ics expand FILE --json`` process (startup and output included),
  against a ``python -c`` process doing ``plain`` (startup included);
* ``sync``: a full sync of the feed as an ICS account (``IcsFeed`` +
  ``services.sync.sync_calendar`` into a SQLite store), then a second sync of the unchanged
  feed, which must not parse it again (content hash: the connector says ``unchanged``).

Each timing is the best of ``--reps``. Target: expand and sync within 1.5x of plain.

    .venv/bin/python bench/ics_feed.py
    .venv/bin/python bench/ics_feed.py --events 2000 --reps 1

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET_RATIO = 1.5
ZONES = ("Europe/Berlin", "America/New_York", "Asia/Tokyo")
VTIMEZONES = {
    "Europe/Berlin": (
        "BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\n"
        "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\n"
        "END:STANDARD\r\nBEGIN:DAYLIGHT\r\nDTSTART:19700329T020000\r\n"
        "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\n"
        "END:DAYLIGHT\r\nEND:VTIMEZONE\r\n"
    ),
    "America/New_York": (
        "BEGIN:VTIMEZONE\r\nTZID:America/New_York\r\nBEGIN:STANDARD\r\n"
        "DTSTART:19701101T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU\r\n"
        "TZOFFSETFROM:-0400\r\nTZOFFSETTO:-0500\r\nEND:STANDARD\r\nBEGIN:DAYLIGHT\r\n"
        "DTSTART:19700308T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU\r\n"
        "TZOFFSETFROM:-0500\r\nTZOFFSETTO:-0400\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n"
    ),
    "Asia/Tokyo": (
        "BEGIN:VTIMEZONE\r\nTZID:Asia/Tokyo\r\nBEGIN:STANDARD\r\nDTSTART:19700101T000000\r\n"
        "TZOFFSETFROM:+0900\r\nTZOFFSETTO:+0900\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n"
    ),
}


def feed(events: int, first: datetime, days: int) -> bytes:
    """``events`` VEVENTs: 80% single (in the three zones), 10% weekly series of 8 with
    one moved and one cancelled occurrence, 10% all-day."""
    fmt = "%Y%m%dT%H%M%S"
    parts = ["BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//exec-assistant//bench//EN\r\n"]
    parts += VTIMEZONES.values()
    n = 0
    while n < events:
        start = first + timedelta(days=n % days, hours=7 + n % 10)
        zone = ZONES[n % 3]
        kind = n % 10
        stamp = "DTSTAMP:20261201T000000Z\r\n"
        if kind == 0 and n + 2 < events:  # a series and its moved occurrence: 2 VEVENTs
            moved = start + timedelta(weeks=2)
            parts.append(
                f"BEGIN:VEVENT\r\nUID:series-{n}\r\n{stamp}"
                f"DTSTART;TZID={zone}:{start.strftime(fmt)}\r\n"
                f"DTEND;TZID={zone}:{(start + timedelta(hours=1)).strftime(fmt)}\r\n"
                f"RRULE:FREQ=WEEKLY;COUNT=8\r\n"
                f"EXDATE;TZID={zone}:{(start + timedelta(weeks=3)).strftime(fmt)}\r\n"
                f"SUMMARY:Weekly {n}\r\nEND:VEVENT\r\n"
                f"BEGIN:VEVENT\r\nUID:series-{n}\r\n{stamp}"
                f"RECURRENCE-ID;TZID={zone}:{moved.strftime(fmt)}\r\n"
                f"DTSTART;TZID={zone}:{(moved + timedelta(hours=2)).strftime(fmt)}\r\n"
                f"DTEND;TZID={zone}:{(moved + timedelta(hours=3)).strftime(fmt)}\r\n"
                f"SUMMARY:Weekly {n} (moved)\r\nEND:VEVENT\r\n"
            )
            n += 2
            continue
        if kind == 1:
            d = start.date()
            parts.append(
                f"BEGIN:VEVENT\r\nUID:day-{n}\r\n{stamp}DTSTART;VALUE=DATE:{d:%Y%m%d}\r\n"
                f"DTEND;VALUE=DATE:{d + timedelta(days=1):%Y%m%d}\r\nSUMMARY:Holiday {n}\r\n"
                "END:VEVENT\r\n"
            )
        else:
            parts.append(
                f"BEGIN:VEVENT\r\nUID:single-{n}\r\n{stamp}"
                f"DTSTART;TZID={zone}:{start.strftime(fmt)}\r\n"
                f"DTEND;TZID={zone}:{(start + timedelta(minutes=45)).strftime(fmt)}\r\n"
                f"SUMMARY:Meeting {n}\r\nLOCATION:Room {n % 40}\r\nEND:VEVENT\r\n"
            )
        n += 1
    parts.append("END:VCALENDAR\r\n")
    return "".join(parts).encode()


PLAIN = """
import sys, icalendar, recurring_ical_events
from datetime import datetime, UTC
cal = icalendar.Calendar.from_ical(open(sys.argv[1], "rb").read())
found = recurring_ical_events.of(cal).between(
    datetime.fromisoformat(sys.argv[2]), datetime.fromisoformat(sys.argv[3]))
print(len(found))
"""


def plain(path: Path, start: datetime, end: datetime) -> int:
    import icalendar
    import recurring_ical_events

    cal = icalendar.Calendar.from_ical(path.read_bytes())
    return len(recurring_ical_events.of(cal).between(start, end))


def production_expand(path: Path, start: datetime, end: datetime) -> int:
    from connectors.ics.expand import expand

    return len(expand(str(path), start, end, "UTC").occurrences)


def best(reps: int, run: Callable[[], Any]) -> tuple[float, float, Any]:
    """The least wall and CPU seconds of ``reps`` runs after one warm-up run (imports,
    caches); CPU counts this process and the children it waited for."""
    value = run()
    walls, cpus = [], []
    for _ in range(reps):
        began, cpu = time.perf_counter(), _cpu()
        value = run()
        walls.append(time.perf_counter() - began)
        cpus.append(_cpu() - cpu)
    return min(walls), min(cpus), value


def _cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def sync_twice(path: Path, folder: Path, start: datetime, days: int) -> dict[str, Any]:
    """A full sync of the feed as an account, then one of the unchanged feed."""
    from assistant.services.pairs import add_account, add_pair
    from assistant.services.sync import SyncPolicy, sync_calendar
    from assistant.store.db import UnitOfWork, make_engine
    from assistant.store.migrate import upgrade
    from connectors.ics.feed import IcsFeed
    from tests.support.deps import deps_for

    url = f"sqlite:///{folder / 'bench.db'}"
    upgrade(url)
    engine = make_engine(url)
    uow = UnitOfWork(engine)
    deps = deps_for(uow, start)
    pair = add_pair(deps, name="bench", manager_email="m@example.com",
                    assistant_email="a@example.com", timezone="UTC")  # fmt: skip
    account = add_account(deps, pair=pair.id, name="feed", provider="ics",
                          settings={"url": str(path)})  # fmt: skip
    policy = SyncPolicy(window_past=timedelta(0), window_future=timedelta(days=days))
    began, cpu = time.perf_counter(), _cpu()
    first = sync_calendar(uow, account.id, IcsFeed(str(path)), start, policy)
    full, full_cpu = time.perf_counter() - began, _cpu() - cpu
    began = time.perf_counter()
    again = sync_calendar(uow, account.id, IcsFeed(str(path)), start + timedelta(minutes=1), policy)
    unchanged = time.perf_counter() - began
    engine.dispose()
    return {
        "full_s": round(full, 3),
        "full_cpu_s": round(full_cpu, 3),
        "events_stored": first.events,
        "unchanged_s": round(unchanged, 4),
        "unchanged_parsed_again": not again.unchanged,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    first = datetime(2026, 12, 7, tzinfo=UTC)
    start, end = first, first + timedelta(days=args.days + 60)
    with tempfile.TemporaryDirectory(prefix="ics-bench-") as folder:
        path = Path(folder) / "feed.ics"
        path.write_bytes(feed(args.events, first, args.days))
        plain_s, plain_cpu, plain_n = best(args.reps, lambda: plain(path, start, end))
        expand_s, expand_cpu, expand_n = best(
            args.reps, lambda: production_expand(path, start, end)
        )
        exe = str(Path(sys.executable).parent / "assistant")
        cli_cmd = [exe, "ics", "expand", str(path), "--from", start.date().isoformat(),
                   "--to", (end.date() - timedelta(days=1)).isoformat(), "--json"]  # fmt: skip
        plain_cmd = [sys.executable, "-c", PLAIN, str(path), start.isoformat(), end.isoformat()]

        def run(cmd: list[str]) -> str:
            done = subprocess.run(cmd, cwd=ROOT, capture_output=True, check=True)
            return done.stdout.decode()

        plain_proc_s, plain_proc_cpu, _ = best(args.reps, lambda: run(plain_cmd))
        cli_s, cli_cpu, cli_out = best(args.reps, lambda: run(cli_cmd))
        cli_n = len(json.loads(cli_out)["occurrences"])
        sync = sync_twice(path, Path(folder), start, args.days + 60)
        size = path.stat().st_size
    figures: dict[str, Any] = {
        "bench": "ics_feed",
        "events": args.events,
        "feed_mb": round(size / 1e6, 2),
        "occurrences": {"plain": plain_n, "expand": expand_n, "cli": cli_n},
        "wall_s": {
            "plain": round(plain_s, 3),
            "expand": round(expand_s, 3),
            "plain_process": round(plain_proc_s, 3),
            "cli_process": round(cli_s, 3),
            "sync_full": sync["full_s"],
        },
        "cpu_s": {
            "plain": round(plain_cpu, 3),
            "expand": round(expand_cpu, 3),
            "plain_process": round(plain_proc_cpu, 3),
            "cli_process": round(cli_cpu, 3),
            "sync_full": sync["full_cpu_s"],
        },
        "ratio_wall": {
            "expand": round(expand_s / plain_s, 2),
            "cli": round(cli_s / plain_proc_s, 2),
            "sync": round(sync["full_s"] / plain_s, 2),
        },
        "ratio_cpu": {
            "expand": round(expand_cpu / plain_cpu, 2),
            "cli": round(cli_cpu / plain_proc_cpu, 2),
            "sync": round(sync["full_cpu_s"] / plain_cpu, 2),
        },
        "sync": sync,
        "target_ratio": TARGET_RATIO,
    }
    figures["target_met"] = (
        max(figures["ratio_wall"].values()) <= TARGET_RATIO and not sync["unchanged_parsed_again"]
    )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
