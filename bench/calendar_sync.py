"""A 10,000-event calendar synced by our connectors, and by vdirsyncer beside them (issue 3).

    .venv/bin/python bench/calendar_sync.py [--events N] [--series M] [--reps R]
        [--providers caldav,ews,graph,google] [--vdirsyncer PATH | --no-vdirsyncer]

The calendar (the same for every provider, all of it inside the sync window of 127 days)
holds ``N`` events, counted as Radicale counts them (VEVENT components): ``M`` weekly
series of 12 occurrences, every 10th with one moved occurrence (an override VEVENT),
every 25th with one cancelled occurrence (EXDATE), and single events for the rest
(by default 9,450 singles + 500 series + 50 overrides = 10,000 VEVENTs in 9,950 items,
15,430 occurrences). Not more: vdirsyncer fetches every item in one calendar-multiget,
and Radicale refuses a REPORT that would return more than 10,000 VEVENTs
(``reporting.max_expand_occurrence``; our connector's full sync is one calendar-query up to
that size, then sync-collection and multigets of 1,000 items). It is seeded

* on real Radicale by writing one ``.ics`` per item straight into the calendar's folder
  of its filesystem storage (beside the ``.Radicale.props`` that MKCALENDAR wrote), then
  one sync-collection REPORT and one PROPFIND make Radicale read them all and build its
  item cache ("warm-up", timed and reported, not part of any sync figure);
* on the protocol-level EWS, Graph and Google servers of ``tests/support`` in memory
  (their seeding helpers; nothing over HTTP).

For each provider, one child process (``--child``) opens our connector and calls
``changes(token, window)`` directly (no database): a full sync (``token=None``), ``R``
no-change syncs, then, after the parent made 10 changes as the manager's other client
(4 moved singles, 1 deleted, 2 created, 1 moved and 1 cancelled occurrence, 1 deleted
series; on Radicale with PUT/DELETE over HTTP, on the protocol servers in memory), one
incremental sync; finally a no-change sync with a freshly opened connector (what a job
that opens the calendar for each sync pays). Peak memory is the child's VmHWM
(its whole peak: interpreter, libraries, the full sync's data; not ``ru_maxrss``, which
holds the parent's peak too, see ``peak_rss_kib``); the RSS before the full
sync is printed beside it, and for the protocol servers the CPU seconds of the connector
(the child) and of the server (the parent, whose threads serve) during the full sync.
Requests: on Radicale the connector's own counter
(``CalDavCalendar.requests``, by REPORT kind); on the protocol servers the API requests
the server logged (the OAuth token requests of Graph and Google are not counted).

The floor: one sync-collection REPORT (etags only) with a valid token, sent with httpx
to the same Radicale calendar; it is measured ``R`` times, interleaved with our
no-change syncs so that both see the same load. vdirsyncer (installed with pip into a
virtualenv in the temporary folder, unless ``--vdirsyncer`` names an executable) syncs
the same calendar to a local folder: one full sync and ``max(2, R // 2)`` no-change
syncs, each a ``vdirsyncer sync`` process (its start-up time, ``vdirsyncer --version``,
is printed too). Everything temporary is removed at the end.

The read floor: what Radicale alone needs to hand over what a full sync must read (one
PROPFIND for the sync-token, one calendar-query with every event's data), sent with httpx
and not parsed, once right before our full sync and ``R`` times before vdirsyncer runs
(the median of them). A full sync cannot take less.

Targets (issues 3 and 16): a no-change sync is one request per calendar and takes no more
than 1.2x the floor (median against median); a full sync takes at most the read floor
+ 0.8 s, peaks at 100 MiB at most and is at least 3x faster than vdirsyncer's; after 10
changes one sync request plus at most one multiget (CalDAV).
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, calendar_ics, rss_kib, series_ics

ZONE = "Europe/Berlin"
NOW = datetime(2030, 1, 7, 8, 0, tzinfo=UTC)  # a Monday; fixed, so every run is the same
PAST, FUTURE = 7, 120  # the sync service's default window (sync.window_*_days)
COUNT = 12  # occurrences of each weekly series
MOVED_AT, CANCELLED_AT = 3, 5  # which occurrence of every 10th / 25th series
USER = "manager"
EMAIL = "alex@example.com"
PROVIDERS = ("caldav", "ews", "graph", "google")
SPEEDUP = 3.0  # issue 16.1: a full sync at least this many times faster than vdirsyncer's
OVER_READ_FLOOR = 0.8  # ... taking at most this many seconds more than the read floor
PEAK_MIB = 100  # ... with a peak RSS of at most this many MiB


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def window() -> Any:
    from connectors.base import Window

    return Window(NOW - timedelta(days=PAST), NOW + timedelta(days=FUTURE), ZONE)


# ----------------------------------------------------------------------- the calendar


@dataclass(frozen=True)
class Single:
    uid: str
    start: datetime
    end: datetime
    summary: str
    location: str


@dataclass(frozen=True)
class Series:
    uid: str
    start: datetime  # first occurrence, UTC
    end: datetime
    summary: str
    moved: tuple[int, ...]  # occurrence indexes moved two hours later
    cancelled: tuple[int, ...]


def calendar(events: int, series: int) -> tuple[list[Single], list[Series]]:
    """``events`` VEVENT components: ``series`` masters, one moved occurrence (an override
    VEVENT) in every 10th series, and single events for the rest."""
    singles = []
    for i in range(events - series - len(range(0, series, 10))):
        day = i % (PAST + FUTURE - 1) - (PAST - 1)  # every one inside the window
        start = NOW.replace(hour=7 + (i // 127) % 11, minute=15 * ((i // 1397) % 4))
        start += timedelta(days=day)
        singles.append(
            Single(
                f"single-{i:05d}",
                start,
                start + timedelta(minutes=30 + 30 * (i % 2)),
                f"Meeting {i}",
                f"Room {i % 40}",
            )
        )
    many = []
    for j in range(series):
        start = NOW.replace(hour=6 + j % 3) + timedelta(days=j % 14 - PAST + 1)
        many.append(
            Series(
                f"series-{j:04d}",
                start,
                start + timedelta(minutes=45),
                f"Weekly {j}",
                (MOVED_AT,) if j % 10 == 0 else (),
                (CANCELLED_AT,) if j % 25 == 0 else (),
            )
        )
    return singles, many


def new_singles() -> list[Single]:
    start = NOW + timedelta(days=3, hours=11)
    return [
        Single(
            f"created-{k}",
            start + timedelta(days=k),
            start + timedelta(days=k, hours=1),
            f"Created {k}",
            "",
        )
        for k in range(2)
    ]


# The 10 changes (indexes into the singles and the series of ``calendar``).
MOVE_SINGLES, DELETE_SINGLE = (0, 1, 2, 3), 4
MOVE_OCC, CANCEL_OCC, DELETE_SERIES = (1, 6), (2, 7), 3  # (series, occurrence index)
SHIFT = timedelta(hours=1)


def utc_weekly(s: Series, index: int) -> datetime:
    return s.start + timedelta(weeks=index)


# ------------------------------------------------------------------------ CalDAV side


def single_ics(s: Single, shift: timedelta = timedelta(0)) -> str:
    return calendar_ics(s.uid, s.start + shift, s.end + shift, s.summary, s.location)


def caldav_series_ics(
    s: Series, extra_moved: int | None = None, extra_cancelled: int | None = None
) -> str:
    length = s.end - s.start
    moved = [*s.moved, *([extra_moved] if extra_moved is not None else [])]
    cancelled = [*s.cancelled, *([extra_cancelled] if extra_cancelled is not None else [])]
    return series_ics(
        s.uid,
        s.start,
        s.end,
        s.summary,
        COUNT,
        moved=[
            (utc_weekly(s, k), utc_weekly(s, k) + 2 * SHIFT, utc_weekly(s, k) + 2 * SHIFT + length)
            for k in moved
        ],
        cancelled=[utc_weekly(s, k) for k in cancelled],
    )


def seed_radicale(folder: Path, singles: list[Single], many: list[Series]) -> None:
    for s in singles:
        (folder / f"{s.uid}.ics").write_text(single_ics(s), newline="")
    for r in many:
        (folder / f"{r.uid}.ics").write_text(caldav_series_ics(r), newline="")


def change_radicale(url: str, singles: list[Single], many: list[Series]) -> None:
    import httpx

    ics = {"Content-Type": "text/calendar; charset=utf-8"}
    with httpx.Client(timeout=60) as http:

        def ok(response: httpx.Response) -> None:
            if response.status_code not in (200, 201, 204):
                raise RuntimeError(
                    f"{response.request.method} {response.url}: {response.status_code}"
                )

        for i in MOVE_SINGLES:
            ok(
                http.put(
                    f"{url}{singles[i].uid}.ics", content=single_ics(singles[i], SHIFT), headers=ics
                )
            )
        ok(http.delete(f"{url}{singles[DELETE_SINGLE].uid}.ics"))
        for s in new_singles():
            ok(http.put(f"{url}{s.uid}.ics", content=single_ics(s), headers=ics))
        r, k = many[MOVE_OCC[0]], MOVE_OCC[1]
        ok(http.put(f"{url}{r.uid}.ics", content=caldav_series_ics(r, extra_moved=k), headers=ics))
        r, k = many[CANCEL_OCC[0]], CANCEL_OCC[1]
        ok(
            http.put(
                f"{url}{r.uid}.ics", content=caldav_series_ics(r, extra_cancelled=k), headers=ics
            )
        )
        ok(http.delete(f"{url}{many[DELETE_SERIES].uid}.ics"))


SYNC_BODY = (
    '<?xml version="1.0" encoding="utf-8"?>\n<d:sync-collection xmlns:d="DAV:">'
    "<d:sync-token>{token}</d:sync-token><d:sync-level>1</d:sync-level>"
    "<d:prop><d:getetag/></d:prop></d:sync-collection>"
)


def floor_request(http: Any, url: str, token: str) -> float:
    """One sync-collection REPORT with a valid token (etags only): its wall time."""
    began = time.perf_counter()
    response = http.request(
        "REPORT",
        url,
        content=SYNC_BODY.format(token=token),
        headers={"Depth": "0", "Content-Type": 'application/xml; charset="utf-8"'},
    )
    took = time.perf_counter() - began
    if response.status_code != 207 or "sync-token" not in response.text:
        raise RuntimeError(f"floor REPORT: HTTP {response.status_code}")
    return took


QUERY_BODY = (
    '<?xml version="1.0" encoding="utf-8"?>\n<c:calendar-query xmlns:d="DAV:" '
    'xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/><c:calendar-data/></d:prop>'
    '<c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT"/></c:comp-filter>'
    "</c:filter></c:calendar-query>"
)
TOKEN_BODY = (
    '<?xml version="1.0" encoding="utf-8"?>\n'
    '<d:propfind xmlns:d="DAV:"><d:prop><d:sync-token/></d:prop></d:propfind>'
)


def read_floor(http: Any, url: str) -> float:
    """What Radicale alone needs to hand over a full sync's token and data: one PROPFIND
    for the sync-token and one calendar-query with every event's data, sent with httpx,
    nothing parsed: their wall time."""
    xml = {"Content-Type": 'application/xml; charset="utf-8"'}
    began = time.perf_counter()
    token = http.request("PROPFIND", url, content=TOKEN_BODY, headers={**xml, "Depth": "0"})
    data = http.request("REPORT", url, content=QUERY_BODY, headers={**xml, "Depth": "1"})
    took = time.perf_counter() - began
    if token.status_code != 207 or data.status_code != 207 or "sync-token" not in token.text:
        raise RuntimeError(f"read floor: HTTP {token.status_code}, {data.status_code}")
    return took


def current_token(http: Any, url: str) -> tuple[str, float]:
    """A fresh sync token (one sync-collection with an empty token): (token, seconds)."""
    import re

    began = time.perf_counter()
    response = http.request(
        "REPORT",
        url,
        content=SYNC_BODY.format(token=""),
        headers={"Depth": "0", "Content-Type": 'application/xml; charset="utf-8"'},
    )
    took = time.perf_counter() - began
    found = re.search(r"<[^>]*sync-token>([^<]+)<", response.text)
    if response.status_code != 207 or not found:
        raise RuntimeError(f"sync-collection with an empty token: HTTP {response.status_code}")
    return found.group(1), took


# -------------------------------------------------------------------- protocol servers


def seed_ews(mailbox: Any, singles: list[Single], many: list[Series]) -> dict[str, Any]:
    from tests.support.ews_server import Change

    items: dict[str, Any] = {}
    for s in singles:
        items[s.uid] = mailbox.add(s.uid, s.summary, s.start, s.end, location=s.location)
    for r in many:
        item = mailbox.add(r.uid, r.summary, r.start, r.end, weekly_count=COUNT)
        originals = item.original_starts()
        for k in r.moved:
            o = originals[k]
            item.modified[o] = Change(o + 2 * SHIFT, o + 2 * SHIFT + (r.end - r.start))
        item.deleted.update(originals[k] for k in r.cancelled)
        items[r.uid] = item
    return items


def change_ews(
    mailbox: Any, items: dict[str, Any], singles: list[Single], many: list[Series]
) -> None:
    from tests.support.ews_server import Change

    for i in MOVE_SINGLES:
        with mailbox.edit(items[singles[i].uid]) as item:
            item.start, item.end = item.start + SHIFT, item.end + SHIFT
    mailbox.remove(items[singles[DELETE_SINGLE].uid].item_id)
    for s in new_singles():
        mailbox.add(s.uid, s.summary, s.start, s.end)
    j, k = MOVE_OCC
    with mailbox.edit(items[many[j].uid]) as item:
        o = item.original_starts()[k]
        item.modified[o] = Change(o + 2 * SHIFT, o + 2 * SHIFT + (item.end - item.start))
    j, k = CANCEL_OCC
    with mailbox.edit(items[many[j].uid]) as item:
        item.deleted.add(item.original_starts()[k])
    mailbox.remove(items[many[DELETE_SERIES].uid].item_id)


WINDOWS_ZONE = "W. Europe Standard Time"


def _graph_original(graph: Any, event_id: str, index: int) -> datetime:
    item = graph.items[event_id]
    originals = list(item.originals(NOW + timedelta(days=400)))
    return originals[index].astimezone(UTC)


def seed_graph(graph: Any, singles: list[Single], many: list[Series]) -> dict[str, str]:
    ids: dict[str, str] = {}
    for s in singles:
        ids[s.uid] = graph.create_event(
            s.summary,
            s.start,
            s.end,
            zone=WINDOWS_ZONE,
            location={"displayName": s.location, "locationType": "default"},
        )
    for r in many:
        gid = graph.create_event(r.summary, r.start, r.end, zone=WINDOWS_ZONE, weekly=COUNT)
        for k in r.moved:
            o = _graph_original(graph, gid, k)
            graph.move_occurrence(gid, o, o + 2 * SHIFT, o + 2 * SHIFT + (r.end - r.start))
        for k in r.cancelled:
            graph.cancel_occurrence(gid, _graph_original(graph, gid, k))
        ids[r.uid] = gid
    return ids


def change_graph(
    graph: Any, ids: dict[str, str], singles: list[Single], many: list[Series]
) -> None:
    for i in MOVE_SINGLES:
        s = singles[i]
        graph.update_event(ids[s.uid], start=s.start + SHIFT, end=s.end + SHIFT)
    graph.delete_event(ids[singles[DELETE_SINGLE].uid])
    for s in new_singles():
        graph.create_event(s.summary, s.start, s.end, zone=WINDOWS_ZONE)
    j, k = MOVE_OCC
    gid, r = ids[many[j].uid], many[j]
    o = _graph_original(graph, gid, k)
    graph.move_occurrence(gid, o, o + 2 * SHIFT, o + 2 * SHIFT + (r.end - r.start))
    j, k = CANCEL_OCC
    graph.cancel_occurrence(ids[many[j].uid], _graph_original(graph, ids[many[j].uid], k))
    graph.delete_event(ids[many[DELETE_SERIES].uid])


def _google_when(moment: datetime) -> dict[str, str]:
    return {"dateTime": moment.astimezone(ZoneInfo(ZONE)).isoformat(), "timeZone": ZONE}


def _google_original(r: Series, index: int) -> datetime:
    local = r.start.astimezone(ZoneInfo(ZONE))
    return (
        (local.replace(tzinfo=None) + timedelta(weeks=index))
        .replace(tzinfo=ZoneInfo(ZONE))
        .astimezone(UTC)
    )


def _google_instance(event_id: str, original: datetime) -> str:
    return f"{event_id}_{original.strftime('%Y%m%dT%H%M%SZ')}"


def seed_google(google: Any, singles: list[Single], many: list[Series]) -> dict[str, str]:
    docs = [
        {
            "id": f"s{i:07d}",
            "iCalUID": s.uid,
            "summary": s.summary,
            "location": s.location,
            "start": _google_when(s.start),
            "end": _google_when(s.end),
        }
        for i, s in enumerate(singles)
    ]
    docs += [
        {
            "id": f"r{j:07d}",
            "iCalUID": r.uid,
            "summary": r.summary,
            "start": _google_when(r.start),
            "end": _google_when(r.end),
            "recurrence": [f"RRULE:FREQ=WEEKLY;COUNT={COUNT}"],
        }
        for j, r in enumerate(many)
    ]
    ids = dict(zip([d["iCalUID"] for d in docs], google.seed_events(EMAIL, docs), strict=True))
    for r in many:
        for k in r.moved:
            o = _google_original(r, k)
            google.seed_change(
                EMAIL,
                _google_instance(ids[r.uid], o),
                {
                    "start": _google_when(o + 2 * SHIFT),
                    "end": _google_when(o + 2 * SHIFT + (r.end - r.start)),
                },
            )
        for k in r.cancelled:
            google.seed_change(EMAIL, _google_instance(ids[r.uid], _google_original(r, k)), None)
    return ids


def change_google(
    google: Any, ids: dict[str, str], singles: list[Single], many: list[Series]
) -> None:
    for i in MOVE_SINGLES:
        s = singles[i]
        google.seed_change(
            EMAIL,
            ids[s.uid],
            {"start": _google_when(s.start + SHIFT), "end": _google_when(s.end + SHIFT)},
        )
    google.seed_change(EMAIL, ids[singles[DELETE_SINGLE].uid], None)
    google.seed_events(
        EMAIL,
        [
            {
                "iCalUID": s.uid,
                "summary": s.summary,
                "start": _google_when(s.start),
                "end": _google_when(s.end),
            }
            for s in new_singles()
        ],
    )
    j, k = MOVE_OCC
    r = many[j]
    o = _google_original(r, k)
    google.seed_change(
        EMAIL,
        _google_instance(ids[r.uid], o),
        {
            "start": _google_when(o + 2 * SHIFT),
            "end": _google_when(o + 2 * SHIFT + (r.end - r.start)),
        },
    )
    j, k = CANCEL_OCC
    google.seed_change(
        EMAIL, _google_instance(ids[many[j].uid], _google_original(many[j], k)), None
    )
    google.seed_change(EMAIL, ids[many[DELETE_SERIES].uid], None)


# ---------------------------------------------------------------------------- child


def open_connector(spec: dict[str, Any]) -> Any:
    kind, timeout = spec["provider"], 300.0
    if kind == "caldav":
        from connectors.caldav.calendar import CalDavCalendar

        return CalDavCalendar(spec["url"], timeout=timeout, zone=ZONE)
    if kind == "ews":
        from connectors.ews.account import EwsSettings
        from connectors.ews.calendar import EwsCalendar

        settings = EwsSettings(
            mailbox=spec["mailbox"],
            service_endpoint=spec["url"],
            auth="basic",
            username=spec["username"],
            password=spec["password"],
        )
        return EwsCalendar(settings, timeout=timeout, zone=ZONE)
    if kind == "graph":
        from connectors.graph.calendar import GraphCalendar

        return GraphCalendar(
            spec["user"],
            tenant=spec["tenant"],
            client_id=spec["client_id"],
            client_secret=spec["client_secret"],
            graph_url=spec["graph_url"],
            authority_host=spec["authority_host"],
            verify=spec["ca_file"],
            timeout=timeout,
            zone=ZONE,
        )
    if kind == "google":
        from connectors.google.calendar import GoogleCalendar

        return GoogleCalendar.installed_app(
            spec["client_id"],
            spec["client_secret"],
            spec["refresh_token"],
            token_uri=spec["token_uri"],
            api_root=spec["api_root"],
            timeout=timeout,
            zone=ZONE,
        )
    raise ValueError(kind)


def _report_kinds(connector: Any) -> Counter[str]:
    """Count the REPORTs a CalDavCalendar sends by kind (sync-collection, calendar-multiget),
    read whole (``_report``) or as they stream in (``_report_streamed``)."""
    kinds: Counter[str] = Counter()

    def counting(send: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
        def counted(body: str, depth: Any) -> Any:
            for kind in ("sync-collection", "calendar-multiget", "calendar-query"):
                if kind in body[:300]:
                    kinds[kind] += 1
            return send(body, depth)

        return counted

    connector._report = counting(connector._report)
    if hasattr(connector, "_report_streamed"):
        connector._report_streamed = counting(connector._report_streamed)
    return kinds


def peak_rss_kib() -> int:
    """This process's peak resident set size since it started, in KiB (VmHWM from /proc).

    Not ``ru_maxrss``: a child that Python starts with vfork and exec inherits in it the
    peak of its parent (Linux keeps the old address space's high-water mark across exec),
    here the parent holding the seeded protocol servers (checked: a child of a parent
    holding 300 MiB reads 311 MiB of ru_maxrss, 11 MiB of VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def child(spec_json: str) -> None:
    """Run commands from stdin (full, nochange, changed, fresh, quit); one JSON line each."""
    spec = json.loads(spec_json)
    win = window()
    connector = open_connector(spec)
    kinds = _report_kinds(connector) if spec["provider"] == "caldav" else Counter()
    token: str | None = None

    def measure(conn: Any, kinds: Counter[str], since: str | None) -> dict[str, Any]:
        nonlocal token
        before, kinds_before = getattr(conn, "requests", None), Counter(kinds)
        began, cpu = time.perf_counter(), time.process_time()
        delta = conn.changes(since, win)
        took, cpu = time.perf_counter() - began, time.process_time() - cpu
        token = delta.token
        return {
            "seconds": round(took, 4),
            "cpu_seconds": round(cpu, 3),  # the connector's CPU (this process)
            "requests": None if before is None else conn.requests - before,
            "kinds": dict(kinds - kinds_before),
            "unchanged": delta.unchanged,
            "resources": len(delta.resources),
            "events": sum(len(r.events) for r in delta.resources),
            "deleted": len(delta.deleted),
            "skipped": len(delta.skipped),
            "skipped_sample": list(delta.skipped[:3]),
        }

    out = sys.stdout
    print(json.dumps({"ready": True, "rss_kib": rss_kib()}), file=out, flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            break
        if command == "full":
            baseline = rss_kib()
            result = measure(connector, kinds, None)
            result["rss_before_kib"] = baseline
            result["peak_rss_kib"] = peak_rss_kib()
        elif command in ("nochange", "changed"):
            result = measure(connector, kinds, token)
        elif command == "fresh":
            fresh = open_connector(spec)
            fresh_kinds = _report_kinds(fresh) if spec["provider"] == "caldav" else Counter()
            result = measure(fresh, fresh_kinds, token)
            if hasattr(fresh, "close"):
                fresh.close()
        else:
            result = {"error": f"unknown command {command!r}"}
        print(json.dumps(result), file=out, flush=True)
    if hasattr(connector, "close"):
        connector.close()


class Child:
    """The parent's handle on one ``--child`` process."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self.ready = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the child process exited ({self.process.wait()})")
        return dict(json.loads(line))

    def ask(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        """End of stdin ends the child; one still busy (interrupted run) is terminated."""
        if self.process.stdin is not None:
            with suppress(BrokenPipeError):
                self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


@contextmanager
def child_process(spec: dict[str, Any]) -> Iterator[Child]:
    handle = Child(spec)
    try:
        yield handle
    finally:
        handle.close()


# ------------------------------------------------------------------------ measuring


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 4) if values else None


def run_provider(
    name: str,
    spec: dict[str, Any],
    reps: int,
    server_count: Callable[[], Counter[str]],
    make_changes: Callable[[], None],
    between: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Full, ``reps`` no-change, changed and fresh-connector syncs in one child process.

    ``server_count()`` is the server's count of API requests by operation so far (the
    protocol servers); ``between()`` runs before each no-change sync (the floor).
    """
    figures: dict[str, Any] = {}
    with child_process(spec) as worker:

        def step(command: str) -> dict[str, Any]:
            before, cpu = server_count(), time.process_time()
            result = worker.ask(command)
            cpu = time.process_time() - cpu
            if "error" in result:
                raise RuntimeError(f"{name} {command}: {result['error']}")
            ops = server_count() - before
            if result["requests"] is None or name != "caldav":
                result["requests"] = sum(ops.values())
                result["kinds"] = dict(ops)
            if name != "caldav":  # the protocol servers run in this process (Radicale does not)
                result["server_cpu_seconds"] = round(cpu, 3)
            return result

        say(f"{name}: full sync ...")
        figures["full"] = step("full")
        say(
            f"{name}: full sync {figures['full']['seconds']:.2f}s, "
            f"{figures['full']['requests']} requests"
            + f" (CPU: connector {figures['full']['cpu_seconds']:.2f}s"
            + (
                f", server {figures['full']['server_cpu_seconds']:.2f}s)"
                if "server_cpu_seconds" in figures["full"]
                else ")"
            )
            + f"; {reps} no-change syncs ..."
        )
        runs = []
        for _ in range(reps):
            if between is not None:
                between()
            runs.append(step("nochange"))
        figures["nochange"] = {
            "seconds": [r["seconds"] for r in runs],
            "median": median([r["seconds"] for r in runs]),
            "requests": sorted({r["requests"] for r in runs}),
            "unchanged": all(r["unchanged"] for r in runs),
            "kinds": runs[-1]["kinds"],
        }
        say(f"{name}: 10 changes by the other client ...")
        began = time.perf_counter()
        make_changes()
        figures["change_seconds"] = round(time.perf_counter() - began, 3)
        figures["changed"] = step("changed")
        figures["fresh"] = step("fresh")
    return figures


# ------------------------------------------------------------------------ vdirsyncer


def install_vdirsyncer(folder: Path) -> tuple[str | None, str]:
    """pip install vdirsyncer into a virtualenv under ``folder``: (executable, message)."""
    venv = folder / "vdirsyncer-venv"
    began = time.monotonic()
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120
        )
        done = subprocess.run(
            [
                str(venv / "bin" / "pip"),
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "vdirsyncer",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        return None, f"could not create a virtualenv for vdirsyncer: {exc}"
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return None, "pip install vdirsyncer failed: " + " | ".join(tail)
    return str(venv / "bin" / "vdirsyncer"), f"installed in {time.monotonic() - began:.0f}s"


def vdirsyncer_config(folder: Path, url: str) -> Path:
    (folder / "status").mkdir(parents=True)
    (folder / "vdir").mkdir()
    config = folder / "config"
    config.write_text(
        "[general]\n"
        f'status_path = "{folder / "status"}/"\n\n'
        "[pair bench]\n"
        'a = "bench_remote"\nb = "bench_local"\ncollections = null\n'
        'conflict_resolution = "a wins"\n\n'
        "[storage bench_remote]\n"
        f'type = "caldav"\nurl = "{url}"\nusername = "{USER}"\npassword = "x"\n\n'
        "[storage bench_local]\n"
        f'type = "filesystem"\npath = "{folder / "vdir"}/"\nfileext = ".ics"\n'
    )
    return config


def run_vdirsyncer(exe: str, config: Path, *args: str) -> float:
    began = time.perf_counter()
    done = subprocess.run(
        [exe, "-c", str(config), *args], capture_output=True, text=True, timeout=1800, input=""
    )
    took = time.perf_counter() - began
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise RuntimeError(
            f"vdirsyncer {' '.join(args)} exited {done.returncode}: " + " | ".join(tail)
        )
    return took


def vdirsyncer_figures(exe: str | None, folder: Path, url: str, reps: int) -> dict[str, Any]:
    if exe is None:
        return {"available": False}
    config = vdirsyncer_config(folder, url)
    startup = run_vdirsyncer(exe, config, "--version")
    run_vdirsyncer(exe, config, "discover")
    say("vdirsyncer: full sync ...")
    full = run_vdirsyncer(exe, config, "sync")
    files = len(list((folder / "vdir").glob("*.ics")))
    say(f"vdirsyncer: full sync {full:.1f}s ({files} files); no-change syncs ...")
    nochange = [run_vdirsyncer(exe, config, "sync") for _ in range(max(2, reps // 2))]
    return {
        "available": True,
        "startup_seconds": round(startup, 3),
        "full_seconds": round(full, 3),
        "files": files,
        "nochange_seconds": [round(x, 3) for x in nochange],
        "nochange_median": median(nochange),
    }


# --------------------------------------------------------------------------- caldav


def bench_caldav(
    stack: ExitStack, tmp: Path, args: argparse.Namespace, singles: list[Single], many: list[Series]
) -> dict[str, Any]:
    import httpx

    from assistant.entrypoints.embedded import EmbeddedRadicale

    radicale = stack.enter_context(EmbeddedRadicale(tmp / "radicale"))
    url = radicale.new_calendar("bench", user=USER)
    folder = radicale.storage_folder / "collection-root" / USER / "bench"
    if not (folder / ".Radicale.props").is_file():
        raise RuntimeError(
            f"Radicale's storage layout is not as expected: no {folder}/.Radicale.props"
        )
    began = time.perf_counter()
    seed_radicale(folder, singles, many)
    seeded = time.perf_counter() - began
    http = stack.enter_context(httpx.Client(timeout=600, auth=(USER, "x")))
    say(
        f"caldav: {len(singles) + len(many)} items written in {seeded:.1f}s; "
        "radicale --verify-storage reads them ..."
    )
    verified = verify_storage(radicale.storage_folder)
    token, first = current_token(http, url)
    began = time.perf_counter()
    listing = http.request("PROPFIND", url, headers={"Depth": "1"}, content=b"")
    propfind = time.perf_counter() - began
    listed = listing.text.count("<response>") - 1
    if listed != len(singles) + len(many):
        raise RuntimeError(f"Radicale lists {listed} items, not {len(singles) + len(many)}")
    say(
        f"caldav: verify-storage {verified:.1f}s, then sync-collection {first:.1f}s, "
        f"PROPFIND {propfind:.1f}s ({listed} items listed)"
    )
    floors: list[float] = []

    def floor() -> None:
        floors.append(floor_request(http, url, current[0]))

    current = [token]
    figures = {
        "url_items": listed,
        "seed_seconds": round(seeded, 2),
        "verify_storage_seconds": round(verified, 2),
        "warmup_sync_seconds": round(first, 2),
        "warmup_propfind_seconds": round(propfind, 2),
    }
    spec = {"provider": "caldav", "url": url}
    no_ops: Callable[[], Counter[str]] = Counter

    # vdirsyncer runs before the changes, on the same calendar, after our no-change syncs
    def changes() -> None:
        reads = [*before_full, *(read_floor(http, url) for _ in range(args.reps))]
        figures["read_floor"] = {"seconds": [round(x, 4) for x in reads], "median": median(reads)}
        if not args.no_vdirsyncer:
            figures["vdirsyncer"] = vdirsyncer_part(tmp, url, args)
        change_radicale(url, singles, many)

    # one read floor right before the full sync too: the machine's load changes by the minute
    before_full = [read_floor(http, url)]
    figures.update(run_provider("caldav", spec, args.reps, no_ops, changes, between=floor))
    figures["floor"] = {"seconds": [round(x, 4) for x in floors], "median": median(floors)}
    return figures


def verify_storage(storage_folder: Path) -> float:
    """``radicale --verify-storage`` on the folder: Radicale parses every item and writes its
    item cache, history and a sync token (without fsync, unlike the same work done inside a
    request, which costs ~20 ms of file system calls per item here); its seconds."""
    began = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "radicale",
            "--config",
            "",
            "--logging-level",
            "error",
            "--storage-filesystem-folder",
            str(storage_folder),
            "--verify-storage",
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError("radicale --verify-storage failed: " + done.stderr[-500:])
    return time.perf_counter() - began


def vdirsyncer_part(tmp: Path, url: str, args: argparse.Namespace) -> dict[str, Any]:
    exe, message = (args.vdirsyncer, "given") if args.vdirsyncer else install_vdirsyncer(tmp)
    if exe is None:
        say(f"vdirsyncer NOT MEASURED: {message}")
        return {"available": False, "reason": message}
    say(f"vdirsyncer: {message}")
    try:
        result = vdirsyncer_figures(exe, tmp / "vdirsyncer", url, args.reps)
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        say(f"vdirsyncer NOT MEASURED: {exc}")
        return {"available": False, "reason": str(exc)}
    result["version"] = subprocess.run(
        [exe, "--version"], capture_output=True, text=True
    ).stdout.strip()
    return result


# ------------------------------------------------------------------ protocol servers


def bench_ews(
    stack: ExitStack, tmp: Path, args: argparse.Namespace, singles: list[Single], many: list[Series]
) -> dict[str, Any]:
    from tests.support.ews_server import EwsServer

    server = stack.enter_context(EwsServer())
    items = seed_ews(server.mailbox, singles, many)
    spec = {
        "provider": "ews",
        "url": server.url,
        "mailbox": server.mailbox.address,
        "username": server.username,
        "password": server.password,
    }
    return run_provider(
        "ews",
        spec,
        args.reps,
        lambda: Counter(server.operations()),
        lambda: change_ews(server.mailbox, items, singles, many),
    )


def bench_graph(
    stack: ExitStack, tmp: Path, args: argparse.Namespace, singles: list[Single], many: list[Series]
) -> dict[str, Any]:
    from tests.support.graph_server import GraphServer

    (tmp / "graph").mkdir()
    server = stack.enter_context(GraphServer(tmp / "graph", user=EMAIL))
    ids = seed_graph(server, singles, many)
    spec = {
        "provider": "graph",
        "user": server.user,
        "tenant": server.tenant,
        "client_id": server.client_id,
        "client_secret": server.client_secret,
        "graph_url": server.graph_url,
        "authority_host": server.authority_host,
        "ca_file": server.ca_file,
    }

    def ops() -> Counter[str]:
        return Counter(f"{s.method} {s.path.rsplit('/', 1)[-1]}" for s in server.graph_requests())

    return run_provider(
        "graph", spec, args.reps, ops, lambda: change_graph(server, ids, singles, many)
    )


def bench_google(
    stack: ExitStack, tmp: Path, args: argparse.Namespace, singles: list[Single], many: list[Series]
) -> dict[str, Any]:
    from tests.support.google_server import GoogleCalendarServer

    server = stack.enter_context(GoogleCalendarServer(time_zone=ZONE))
    client_id, client_secret = server.add_client()
    ids = seed_google(server, singles, many)
    spec = {
        "provider": "google",
        "client_id": client_id,
        "client_secret": client_secret,
        "refresh_token": server.issue_refresh_token(EMAIL, client_id),
        "token_uri": server.token_uri,
        "api_root": server.url,
    }

    def ops() -> Counter[str]:
        return Counter(f"{r.method} {r.path.rsplit('/', 1)[-1]}" for r in server.api_requests())

    return run_provider(
        "google", spec, args.reps, ops, lambda: change_google(server, ids, singles, many)
    )


# --------------------------------------------------------------------------- report


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def targets(results: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    one_request = {name: r["nochange"]["requests"] == [1] for name, r in results.items()}
    out["nochange_one_request"] = {"per_provider": one_request, "pass": all(one_request.values())}
    cal = results.get("caldav")
    if cal:
        ratio = (
            cal["nochange"]["median"] / cal["floor"]["median"] if cal["floor"]["median"] else None
        )
        out["nochange_vs_floor"] = {
            "ratio": None if ratio is None else round(ratio, 3),
            "limit": 1.2,
            "pass": ratio is not None and ratio <= 1.2,
        }
        vds = cal.get("vdirsyncer") or {}
        if vds.get("available"):
            speedup = vds["full_seconds"] / cal["full"]["seconds"]
            out["full_vs_vdirsyncer"] = {
                "speedup": round(speedup, 2),
                "limit": SPEEDUP,
                "pass": speedup >= SPEEDUP,
            }
        else:
            out["full_vs_vdirsyncer"] = {"speedup": None, "limit": SPEEDUP, "pass": None}
        read_floor = cal["read_floor"]["median"]
        over = cal["full"]["seconds"] - read_floor if read_floor is not None else None
        peak = cal["full"]["peak_rss_kib"] / 1024
        out["full_vs_read_floor"] = {
            "full_seconds": cal["full"]["seconds"],
            "read_floor_seconds": read_floor,
            "over_seconds": None if over is None else round(over, 3),
            "limit_seconds": OVER_READ_FLOOR,
            "pass": over is not None and over <= OVER_READ_FLOOR,
        }
        out["full_peak_memory"] = {
            "peak_mib": round(peak, 1),
            "limit_mib": PEAK_MIB,
            "pass": peak <= PEAK_MIB,
        }
        kinds = cal["changed"]["kinds"]
        ok = (
            kinds.get("sync-collection") == 1
            and kinds.get("calendar-multiget", 0) <= 1
            and cal["changed"]["requests"] == sum(kinds.values())
        )
        out["changed_sync_plus_multiget"] = {"kinds": kinds, "pass": ok}
    return out


def print_report(results: dict[str, Any], goals: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"\nCalendar sync: {args.events:,} VEVENTs ({args.singles:,} singles, "
        f"{args.series} weekly series of {COUNT}), window {PAST}+{FUTURE} days; "
        f"{args.reps} no-change syncs each (median)"
    )
    head = (
        f"{'provider':<8} {'full s':>8} {'req':>5} {'events':>7} {'peak MiB':>9} "
        f"{'before':>7} {'nochg s':>8} {'req':>4} {'10chg s':>8} {'req':>4} "
        f"{'fresh req':>9}  requests after 10 changes"
    )
    print(head)
    print("-" * len(head))
    for name, r in results.items():
        full, changed = r["full"], r["changed"]
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(changed["kinds"].items()))
        print(
            f"{name:<8} {full['seconds']:>8.2f} {full['requests']:>5} {full['events']:>7} "
            f"{full['peak_rss_kib'] / 1024:>9.0f} {full['rss_before_kib'] / 1024:>7.0f} "
            f"{r['nochange']['median']:>8.3f} {'/'.join(map(str, r['nochange']['requests'])):>4} "
            f"{changed['seconds']:>8.3f} {changed['requests']:>4} "
            f"{r['fresh']['requests']:>9}  {kinds}"
        )
    cal = results.get("caldav")
    if cal:
        floor = cal["floor"]
        print(
            f"\nRadicale floor (one sync-collection REPORT, valid token, httpx): median "
            f"{floor['median']:.3f}s of {floor['seconds']}"
        )
        print(f"our no-change syncs on Radicale: {cal['nochange']['seconds']}")
        reads = cal["read_floor"]
        print(
            "Radicale read floor (PROPFIND sync-token + calendar-query with all data, httpx, "
            f"nothing parsed): median {reads['median']:.3f}s of {reads['seconds']}"
        )
        vds = cal.get("vdirsyncer") or {}
        if vds.get("available"):
            print(
                f"{vds.get('version', 'vdirsyncer')}: full sync {vds['full_seconds']:.1f}s "
                f"({vds['files']} files), no-change {vds['nochange_seconds']} "
                f"(process start-up alone {vds['startup_seconds']:.2f}s)"
            )
        else:
            print(f"vdirsyncer: NOT MEASURED ({vds.get('reason', 'skipped with --no-vdirsyncer')})")
    for name, r in results.items():
        if r["full"]["skipped"] or r["changed"]["skipped"]:
            sample = r["full"]["skipped_sample"] or r["changed"]["skipped_sample"]
            print(f"{name}: skipped resources: {sample}")
    print("\nTargets")
    g = goals
    floor, changed = g.get("nochange_vs_floor", {}), g.get("changed_sync_plus_multiget", {})
    print(
        f"  no-change sync = 1 request per calendar: {verdict(g['nochange_one_request']['pass'])} "
        f"{g['nochange_one_request']['per_provider']}"
    )
    if "nochange_vs_floor" in g:
        print(
            f"  no-change sync <= 1.2x the floor (CalDAV): {verdict(floor['pass'])} "
            f"(x{floor['ratio']})"
        )
        fv, rf, pk = g["full_vs_vdirsyncer"], g["full_vs_read_floor"], g["full_peak_memory"]
        print(
            f"  full sync >= {SPEEDUP:g}x faster than vdirsyncer: {verdict(fv['pass'])} "
            f"({'x' + str(fv['speedup']) if fv['speedup'] else 'vdirsyncer not measured'})"
        )
        print(
            f"  full sync <= read floor + {OVER_READ_FLOOR:g}s: {verdict(rf['pass'])} "
            f"({rf['full_seconds']:.2f}s, read floor {rf['read_floor_seconds']:.2f}s, "
            f"+{rf['over_seconds']:.2f}s)"
        )
        print(
            f"  full sync peak memory <= {PEAK_MIB} MiB: {verdict(pk['pass'])} "
            f"({pk['peak_mib']:.0f} MiB)"
        )
        print(
            f"  after 10 changes: one sync + at most one multiget (CalDAV): "
            f"{verdict(changed['pass'])} {changed['kinds']}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    parser.add_argument(
        "--events", type=int, default=10_000, help="VEVENTs in the calendar (default 10000)"
    )
    parser.add_argument(
        "--series", type=int, default=500, help="of which weekly series (default 500)"
    )
    parser.add_argument(
        "--reps", type=int, default=5, help="no-change syncs per provider (default 5)"
    )
    parser.add_argument(
        "--providers",
        default=",".join(PROVIDERS),
        help=f"comma-separated subset of {','.join(PROVIDERS)}",
    )
    parser.add_argument(
        "--vdirsyncer",
        metavar="PATH",
        help="a vdirsyncer executable to use instead of installing one",
    )
    parser.add_argument("--no-vdirsyncer", action="store_true", help="leave vdirsyncer out")
    parser.add_argument(
        "--tmp",
        metavar="DIR",
        help="where the temporary folder goes (default: the system's; "
        "/dev/shm puts Radicale's storage in memory)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return 0
    chosen = [p.strip() for p in args.providers.split(",") if p.strip()]
    unknown = set(chosen) - set(PROVIDERS)
    if unknown or not 0 < args.series < args.events:
        parser.error(
            f"unknown providers {sorted(unknown)}" if unknown else "need 0 < --series < --events"
        )
    singles, many = calendar(args.events, args.series)
    args.singles = len(singles)
    benches = {
        "caldav": bench_caldav,
        "ews": bench_ews,
        "graph": bench_graph,
        "google": bench_google,
    }
    results: dict[str, Any] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-calendar-sync-", dir=args.tmp) as name:
        tmp = Path(name)
        try:
            for provider in chosen:
                with ExitStack() as servers:  # each provider's server stops before the next
                    results[provider] = benches[provider](servers, tmp, args, singles, many)
        except KeyboardInterrupt:
            say("interrupted; stopping everything")
            return 130
    goals = targets(results)
    print_report(results, goals, args)
    print(
        json.dumps(
            {
                "bench": "calendar_sync",
                "events": args.events,
                "series": args.series,
                "reps": args.reps,
                "seconds": round(time.monotonic() - started, 1),
                "results": results,
                "targets": goals,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
