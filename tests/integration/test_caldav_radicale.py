"""The CalDAV connector against a real Radicale server (and a scripted HTTP server for the
failure statuses Radicale cannot be made to send)."""

from __future__ import annotations

import threading
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from zoneinfo import ZoneInfo

import httpx
import icalendar
import pytest

from assistant.domain.model import EventData
from assistant.entrypoints.embedded import EmbeddedRadicale
from connectors.base import (
    AuthExpired,
    CalendarSource,
    CalendarWriter,
    InvalidData,
    NotFound,
    OwnEvent,
    RateLimited,
    TokenExpired,
    Transient,
    Window,
)
from connectors.caldav.calendar import ETAGS_PREFIX, CalDavCalendar
from connectors.netguard import NetPolicy, TooLarge

WINDOW = Window(datetime(2030, 3, 1, tzinfo=UTC), datetime(2030, 5, 1, tzinfo=UTC), "Europe/Berlin")
BERLIN = ZoneInfo("Europe/Berlin")


def ics(uid: str, start: datetime, summary: str = "Meeting", minutes: int = 60) -> str:
    end = start + timedelta(minutes=minutes)
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20300101T000000Z\r\n"
        f"DTSTART:{start:%Y%m%dT%H%M%SZ}\r\nDTEND:{end:%Y%m%dT%H%M%SZ}\r\n"
        f"SUMMARY:{summary}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )


def put(url: str, text: str) -> None:
    response = httpx.put(url, content=text, headers={"Content-Type": "text/calendar"})
    assert response.status_code in (201, 204), response.text


def at(day: int, hour: int) -> datetime:
    return datetime(2030, 3, day, hour, tzinfo=UTC)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int]] = []

    def __call__(self, method: str, url: str, status: int) -> None:
        self.calls.append((method, url, status))


@pytest.fixture
def calendar_url(radicale: EmbeddedRadicale) -> str:
    url = radicale.new_calendar("work")
    for i in range(5):
        put(f"{url}seed-{i}.ics", ics(f"seed-{i}@test", at(4 + i, 9), f"Seed {i}"))
    return url


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def cal(calendar_url: str, recorder: Recorder) -> Iterator[CalDavCalendar]:
    connector = CalDavCalendar(calendar_url, timeout=5, zone="Europe/Berlin", on_request=recorder)
    yield connector
    connector.close()


def events(delta_resources: object) -> dict[str, EventData]:
    return {e.uid: e for r in delta_resources for e in r.events}  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------- sync


def test_implements_the_calendar_interfaces(cal: CalDavCalendar) -> None:
    assert isinstance(cal, CalendarSource)
    assert isinstance(cal, CalendarWriter)


def test_full_sync_reads_the_token_then_every_event_in_one_query(
    cal: CalDavCalendar, recorder: Recorder
) -> None:
    delta = cal.changes(None, WINDOW)
    assert delta.full and not delta.unchanged and delta.skipped == ()
    assert delta.token and delta.token.startswith("http://radicale.org/ns/sync/")
    assert sorted(r.href for r in delta.resources) == [
        f"/manager/work/seed-{i}.ics" for i in range(5)
    ]
    assert all(r.etag for r in delta.resources)
    seed = events(delta.resources)["seed-2@test"]
    assert (seed.summary, seed.start, seed.href) == ("Seed 2", at(6, 9), "/manager/work/seed-2.ics")
    assert [c[0] for c in recorder.calls] == ["PROPFIND", "REPORT"]


def test_a_change_between_the_token_and_the_query_is_reported_again_not_lost(
    calendar_url: str,
) -> None:
    """The token is read before the data: an event created in between is in the full
    sync and comes again in the next one (the caller compares content), never missed."""
    created: list[str] = []

    def create_after_the_token(method: str, url: str, status: int) -> None:
        if method == "PROPFIND" and not created:
            created.append(url)
            put(f"{calendar_url}late.ics", ics("late@test", at(8, 14), "Late"))

    cal = CalDavCalendar(calendar_url, timeout=5, on_request=create_after_the_token)
    try:
        full = cal.changes(None, WINDOW)
        assert "late@test" in events(full.resources)
        again = cal.changes(full.token, WINDOW)
    finally:
        cal.close()
    assert created and "late@test" in events(again.resources)


def test_sync_without_changes_costs_exactly_one_request(
    cal: CalDavCalendar, recorder: Recorder
) -> None:
    first = cal.changes(None, WINDOW)
    recorder.calls.clear()
    delta = cal.changes(first.token, WINDOW)
    assert delta.unchanged and not delta.full
    assert (delta.resources, delta.deleted, delta.token) == ((), (), first.token)
    assert recorder.calls == [("REPORT", cal.url, 207)]
    assert cal.requests == 3


def test_incremental_sync_reports_exactly_the_created_moved_and_deleted(
    cal: CalDavCalendar, calendar_url: str, recorder: Recorder
) -> None:
    first = cal.changes(None, WINDOW)
    put(f"{calendar_url}new.ics", ics("new@test", at(20, 14), "New one"))
    put(f"{calendar_url}seed-1.ics", ics("seed-1@test", at(5, 15), "Seed 1"))  # moved 09 → 15
    httpx.delete(f"{calendar_url}seed-3.ics").raise_for_status()
    recorder.calls.clear()

    delta = cal.changes(first.token, WINDOW)

    assert not delta.full and not delta.unchanged
    assert sorted(r.href for r in delta.resources) == [
        "/manager/work/new.ics",
        "/manager/work/seed-1.ics",
    ]
    assert delta.deleted == ("/manager/work/seed-3.ics",)
    assert events(delta.resources)["seed-1@test"].start == at(5, 15)
    assert events(delta.resources)["new@test"].summary == "New one"
    assert delta.token != first.token
    assert len(recorder.calls) == 1  # Radicale returns the data inline
    again = cal.changes(delta.token, WINDOW)
    assert again.unchanged


def test_a_resource_renamed_on_the_server_is_a_deletion_plus_a_new_href(
    cal: CalDavCalendar, calendar_url: str
) -> None:
    first = cal.changes(None, WINDOW)
    httpx.request(
        "MOVE", f"{calendar_url}seed-0.ics", headers={"Destination": f"{calendar_url}renamed.ics"}
    ).raise_for_status()
    delta = cal.changes(first.token, WINDOW)
    assert delta.deleted == ("/manager/work/seed-0.ics",)
    assert [r.href for r in delta.resources] == ["/manager/work/renamed.ics"]
    assert [e.uid for e in delta.resources[0].events] == ["seed-0@test"]


def test_without_inline_data_ten_changes_cost_one_sync_and_one_multiget(
    calendar_url: str, recorder: Recorder
) -> None:
    cal = CalDavCalendar(calendar_url, inline_data=False, on_request=recorder)
    first = cal.changes(None, WINDOW)
    assert len(first.resources) == 5 and len(recorder.calls) == 2
    for i in range(10):
        put(f"{calendar_url}batch-{i}.ics", ics(f"batch-{i}@test", at(10, 8 + i)))
    recorder.calls.clear()

    delta = cal.changes(first.token, WINDOW)

    assert [c[0] for c in recorder.calls] == ["REPORT", "REPORT"]
    assert sorted(events(delta.resources)) == sorted(f"batch-{i}@test" for i in range(10))
    assert all(r.etag for r in delta.resources)


def test_unknown_or_garbage_tokens_raise_token_expired(cal: CalDavCalendar) -> None:
    with pytest.raises(TokenExpired):
        cal.changes("http://radicale.org/ns/sync/" + "0" * 64, WINDOW)
    with pytest.raises(TokenExpired):
        cal.changes("not-a-token", WINDOW)


def test_a_malformed_resource_is_skipped_and_the_rest_still_syncs(
    cal: CalDavCalendar, calendar_url: str
) -> None:
    bad = ics("bad@test", at(12, 9)).replace("PRODID:-//test//EN", "X-WR-TIMEZONE:Nowhere/Land")
    put(f"{calendar_url}bad.ics", bad)
    delta = cal.changes(None, WINDOW)
    assert len(delta.resources) == 5
    assert len(delta.skipped) == 1 and delta.skipped[0].startswith("/manager/work/bad.ics")


def test_recurring_series_with_a_moved_occurrence_and_an_exdate(
    cal: CalDavCalendar, calendar_url: str
) -> None:
    series = icalendar.Event()
    series.add("UID", "standup@test")
    series.add("DTSTAMP", datetime(2030, 1, 1, tzinfo=UTC))
    series.add("DTSTART", datetime(2030, 3, 18, 9, tzinfo=BERLIN))
    series.add("DTEND", datetime(2030, 3, 18, 9, 30, tzinfo=BERLIN))
    series.add("SUMMARY", "Standup")
    series.add("RRULE", {"FREQ": "DAILY", "COUNT": 5})
    series.add("EXDATE", datetime(2030, 3, 19, 9, tzinfo=BERLIN))
    moved = icalendar.Event()
    moved.add("UID", "standup@test")
    moved.add("DTSTAMP", datetime(2030, 1, 1, tzinfo=UTC))
    moved.add("RECURRENCE-ID", datetime(2030, 3, 20, 9, tzinfo=BERLIN))
    moved.add("DTSTART", datetime(2030, 3, 20, 11, tzinfo=BERLIN))
    moved.add("DTEND", datetime(2030, 3, 20, 12, tzinfo=BERLIN))
    moved.add("SUMMARY", "Standup (moved)")
    vcal = icalendar.Calendar()
    vcal.add("PRODID", "-//test//EN")
    vcal.add("VERSION", "2.0")
    vcal.add_component(series)
    vcal.add_component(moved)
    vcal.add_missing_timezones()
    put(f"{calendar_url}standup.ics", vcal.to_ical().decode())

    delta = cal.changes(None, WINDOW)

    (resource,) = [r for r in delta.resources if r.href.endswith("standup.ics")]
    got = sorted((e.recurrence_id, e.start, e.summary, e.timezone) for e in resource.events)
    # 18, (19 excluded), 20 moved to 11:00, 21, 22 — all in CET (UTC+1)
    assert got == [
        ("20300318T080000Z", datetime(2030, 3, 18, 8, tzinfo=UTC), "Standup", "Europe/Berlin"),
        (
            "20300320T080000Z",
            datetime(2030, 3, 20, 10, tzinfo=UTC),
            "Standup (moved)",
            "Europe/Berlin",
        ),
        ("20300321T080000Z", datetime(2030, 3, 21, 8, tzinfo=UTC), "Standup", "Europe/Berlin"),
        ("20300322T080000Z", datetime(2030, 3, 22, 8, tzinfo=UTC), "Standup", "Europe/Berlin"),
    ]


def test_etag_listing_fallback_tokens(
    cal: CalDavCalendar, calendar_url: str, recorder: Recorder
) -> None:
    """The path taken for servers without sync-collection, driven here by its token."""
    first = cal.changes(ETAGS_PREFIX + "stale", WINDOW)
    assert first.full and len(first.resources) == 5
    assert first.token and first.token.startswith(ETAGS_PREFIX)
    recorder.calls.clear()
    same = cal.changes(first.token, WINDOW)
    assert same.unchanged and same.token == first.token and len(recorder.calls) == 1
    put(f"{calendar_url}seed-4.ics", ics("seed-4@test", at(8, 16), "Seed 4 moved"))
    changed = cal.changes(first.token, WINDOW)
    assert changed.full and changed.token != first.token
    assert events(changed.resources)["seed-4@test"].start == at(8, 16)


# --------------------------------------------------------------------------- writer


def checkpoint(uid: str, hour: int = 10, summary: str = "Red Line: board pack") -> OwnEvent:
    start = datetime(2030, 3, 13, hour, tzinfo=BERLIN)
    return OwnEvent(
        uid=uid,
        summary=summary,
        description="Is the task on track? What support is needed?",
        start=start.astimezone(UTC),
        end=(start + timedelta(minutes=30)).astimezone(UTC),
        timezone="Europe/Berlin",
        marker="42:red_line",
    )


def test_put_event_twice_leaves_one_event_and_matches_the_synced_href(
    cal: CalDavCalendar,
) -> None:
    uid = "0b7c7f6e-1111-4c1e-9f00-000000000001@exec-assistant"
    first = cal.put_event(checkpoint(uid))
    second = cal.put_event(checkpoint(uid, hour=11, summary="Red Line (moved)"))
    assert first.href == second.href and first.href.startswith("/manager/work/")
    assert first.etag and second.etag and first.etag != second.etag

    delta = cal.changes(None, WINDOW)
    ours = [r for r in delta.resources if any(e.uid == uid for e in r.events)]
    assert [(r.href, r.etag) for r in ours] == [(second.href, second.etag)]
    event = ours[0].events[0]
    assert (event.own_marker, event.summary) == ("42:red_line", "Red Line (moved)")
    assert event.start == datetime(2030, 3, 13, 10, tzinfo=UTC)


def test_get_and_delete_event(cal: CalDavCalendar) -> None:
    cal.put_event(checkpoint("cp-1@exec-assistant"))
    got = cal.get_event("cp-1@exec-assistant")
    assert got is not None and got.is_ours and got.timezone == "Europe/Berlin"
    assert got.start == datetime(2030, 3, 13, 9, tzinfo=UTC)
    assert cal.get_event("missing@exec-assistant") is None
    assert cal.delete_event("cp-1@exec-assistant") is True
    assert cal.delete_event("cp-1@exec-assistant") is False
    assert cal.get_event("cp-1@exec-assistant") is None


def test_an_event_the_user_moved_to_another_href_is_found_replaced_and_deleted_there(
    cal: CalDavCalendar, calendar_url: str
) -> None:
    uid = "cp-2@exec-assistant"
    written = cal.put_event(checkpoint(uid))
    text = httpx.get(calendar_url + written.href.rsplit("/", 1)[1]).text
    httpx.delete(calendar_url + written.href.rsplit("/", 1)[1]).raise_for_status()
    put(f"{calendar_url}elsewhere.ics", text)

    found = cal.get_event(uid)
    assert found is not None and found.href == "/manager/work/elsewhere.ics"
    again = cal.put_event(checkpoint(uid, hour=14))
    assert again.href == "/manager/work/elsewhere.ics"
    delta = cal.changes(None, WINDOW)
    assert [r.href for r in delta.resources if r.events and r.events[0].uid == uid] == [again.href]
    assert cal.delete_event(uid) is True
    assert cal.get_event(uid) is None


# --------------------------------------------------------------------------- errors


def test_a_calendar_that_does_not_exist_is_not_found(radicale: EmbeddedRadicale) -> None:
    radicale.new_calendar("work")
    for url in (f"{radicale.url}manager/nope/", f"{radicale.url}nobody/work/"):
        cal = CalDavCalendar(url)
        with pytest.raises(NotFound):
            cal.changes(None, WINDOW)
        with pytest.raises(NotFound):
            cal.put_event(checkpoint("x@exec-assistant"))


def test_a_stopped_server_is_transient(radicale: EmbeddedRadicale, cal: CalDavCalendar) -> None:
    token = cal.changes(None, WINDOW).token
    radicale.stop()
    with pytest.raises(Transient):
        cal.changes(token, WINDOW)
    with pytest.raises(Transient):
        cal.put_event(checkpoint("x@exec-assistant"))


Reply = tuple[int, dict[str, str], bytes]


class Script:
    """What the scripted server answers, in order, and the (method, body) it was sent."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.replies: list[Reply] = []
        self.seen: list[tuple[str, bytes]] = []


class Scripted(BaseHTTPRequestHandler):
    script: ClassVar[Script]

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.script.seen.append((self.command, body))
        status, headers, content = self.script.replies.pop(0)
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(content))}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(content)

    do_REPORT = do_PUT = do_GET = do_DELETE = do_PROPFIND = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[Script]:
    script = Script("")
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (Scripted,), {"script": script}))
    script.url = f"http://127.0.0.1:{server.server_address[1]}/cal/"
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield script
    server.shutdown()
    server.server_close()


XML = {"Content-Type": "application/xml"}


@pytest.mark.parametrize(
    ("status", "headers", "error", "retry_after"),
    [
        (429, {"Retry-After": "7"}, RateLimited, 7.0),
        (503, {"Retry-After": "3"}, RateLimited, 3.0),
        (503, {}, Transient, None),
        (500, {}, Transient, None),
        (403, {}, AuthExpired, None),
        (401, {"WWW-Authenticate": 'Basic realm="cal"'}, AuthExpired, None),
        (404, {}, NotFound, None),
    ],
)
def test_http_failures_map_to_our_errors(
    scripted: Script,
    status: int,
    headers: dict[str, str],
    error: type[Exception],
    retry_after: float | None,
) -> None:
    scripted.replies.extend([(status, headers, b"")] * 2)  # a 401 is retried with credentials
    cal = CalDavCalendar(scripted.url, username="alex", password="secret")
    with pytest.raises(error) as caught:
        cal.changes("http://example.com/sync/1", WINDOW)
    if retry_after is not None:
        assert isinstance(caught.value, RateLimited) and caught.value.retry_after == retry_after


def multistatus(*responses: str, token: str) -> bytes:
    return (
        '<?xml version="1.0"?><d:multistatus xmlns:d="DAV:" '
        'xmlns:c="urn:ietf:params:xml:ns:caldav">'
        + "".join(responses)
        + f"<d:sync-token>{token}</d:sync-token></d:multistatus>"
    ).encode()


def item(href: str, text: str) -> str:
    return (
        f'<d:response><d:href>{href}</d:href><d:propstat><d:prop><d:getetag>"{href}"</d:getetag>'
        f"<c:calendar-data>{text}</c:calendar-data></d:prop>"
        "<d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>"
    )


def test_a_truncated_sync_reply_is_followed_to_the_end(scripted: Script) -> None:
    script = scripted.replies
    gone = "<d:response><d:href>/cal/a.ics</d:href><d:status>HTTP/1.1 404 Not Found</d:status></d:response>"
    truncated = "<d:response><d:href>/cal/</d:href><d:status>HTTP/1.1 507 Insufficient Storage</d:status></d:response>"
    script.append(
        (207, XML, multistatus(item("/cal/a.ics", ics("a", at(4, 9))), truncated, token="t2"))
    )
    script.append(
        (207, XML, multistatus(item("/cal/b%20c.ics", ics("b", at(4, 10))), gone, token="t3"))
    )
    delta = CalDavCalendar(scripted.url).changes("t1", WINDOW)
    assert delta.token == "t3"
    assert [r.href for r in delta.resources] == ["/cal/b c.ics"]
    assert delta.deleted == ("/cal/a.ics",)


def token_property(token: str) -> bytes:
    return (
        '<?xml version="1.0"?><d:multistatus xmlns:d="DAV:"><d:response><d:href>/cal/</d:href>'
        f"<d:propstat><d:prop><d:sync-token>{token}</d:sync-token></d:prop>"
        "<d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response></d:multistatus>"
    ).encode()


def test_a_full_sync_is_the_token_property_then_one_query(scripted: Script) -> None:
    scripted.replies += [
        (207, XML, token_property("t1")),
        (207, XML, multistatus(item("/cal/a.ics", ics("a", at(4, 9))), token="")),
    ]
    delta = CalDavCalendar(scripted.url).changes(None, WINDOW)
    assert (
        delta.full and delta.token == "t1" and [r.href for r in delta.resources] == ["/cal/a.ics"]
    )
    (m1, b1), (m2, b2) = scripted.seen
    assert (m1, m2) == ("PROPFIND", "REPORT")
    assert b"sync-token" in b1 and b"calendar-query" in b2 and b"calendar-data" in b2


@pytest.mark.parametrize(
    ("token_reply", "query_reply"),
    [
        ((207, XML, token_property("t1")), (400, {}, b"")),  # Radicale: > 10,000 VEVENTs
        ((207, XML, token_property("t1")), (507, {}, b"")),
        ((207, XML, multistatus(token="")), None),  # no sync-token property
        ((405, {}, b""), None),  # no PROPFIND
    ],
    ids=["query-too-large", "query-507", "no-token-property", "propfind-refused"],
)
def test_without_the_token_or_the_query_a_full_sync_goes_the_sync_collection_way(
    scripted: Script, token_reply: Reply, query_reply: Reply | None
) -> None:
    hrefs = ["/cal/a.ics", "/cal/b.ics"]
    scripted.replies += [token_reply, *([query_reply] if query_reply else [])]
    scripted.replies += [
        (207, XML, multistatus(*(etag_only(h) for h in hrefs), token="t2")),
        (
            207,
            XML,
            multistatus(*(item(h, ics(h, at(4, 9 + i))) for i, h in enumerate(hrefs)), token=""),
        ),
    ]
    delta = CalDavCalendar(scripted.url).changes(None, WINDOW)
    assert delta.full and delta.token == "t2"
    assert sorted(r.href for r in delta.resources) == hrefs
    kinds = [b"sync-collection" in b or b"calendar-multiget" in b for _, b in scripted.seen]
    assert kinds[-2:] == [True, True] and scripted.replies == []


def etag_only(href: str) -> str:
    return (
        f'<d:response><d:href>{href}</d:href><d:propstat><d:prop><d:getetag>"1"</d:getetag>'
        "</d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>"
    )


def test_replies_too_large_for_the_server_are_asked_again_in_smaller_pieces(
    scripted: Script,
) -> None:
    """Radicale, for one, refuses (400) a REPORT with more than 10,000 VEVENTs."""
    hrefs = ["/cal/a.ics", "/cal/b.ics", "/cal/c.ics"]
    data = {h: item(h, ics(h, at(4, 9 + i))) for i, h in enumerate(hrefs)}
    scripted.replies += [
        (400, {}, b""),  # sync-collection with calendar-data
        (207, XML, multistatus(*(etag_only(h) for h in hrefs), token="t2")),
        (400, {}, b""),  # multiget of 3
        (207, XML, multistatus(data[hrefs[0]], token="")),  # multiget of 1
        (207, XML, multistatus(data[hrefs[1]], data[hrefs[2]], token="")),  # multiget of 2
    ]
    delta = CalDavCalendar(scripted.url).changes("t1", WINDOW)
    assert sorted(r.href for r in delta.resources) == hrefs and delta.token == "t2"
    bodies = [body for _, body in scripted.seen]
    assert [b"calendar-data" in b for b in bodies[:2]] == [True, False]
    assert [b.count(b"<d:href>") for b in bodies[2:]] == [3, 1, 2]


# ------------------------------------------------- the full sync's streamed query


def _full_sync_with(
    scripted: Script, query_reply: Reply, *then: Reply, **options: object
) -> object:
    """A full sync whose token PROPFIND is answered, its query with ``query_reply``, and
    any later requests with ``then``."""
    scripted.replies += [(207, XML, token_property("t1")), query_reply, *then]
    return CalDavCalendar(scripted.url, **options).changes(None, WINDOW)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "body",
    [
        multistatus(
            item("/cal/a.ics", ics("a", at(4, 9))),
            item("/cal/b.ics", ics("b", at(4, 10))),
            token="",
        )[:-40],
        b'<?xml version="1.0"?><d:error xmlns:d="DAV:"><d:response><d:href>/cal/a.ics</d:href></d:response></d:error>',
        b"",
        b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
    ],
    ids=["xml-ends-early", "not-a-multistatus", "empty", "not-xml"],
)
def test_a_streamed_query_reply_that_is_not_a_whole_multistatus_is_invalid(
    scripted: Script, body: bytes
) -> None:
    with pytest.raises(InvalidData):
        _full_sync_with(scripted, (207, XML, body))


def test_a_streamed_query_reply_larger_than_the_policy_allows_is_refused(
    scripted: Script,
) -> None:
    items = [item(f"/cal/{i}.ics", ics(f"u{i}", at(4, 9))) for i in range(40)]
    body = multistatus(*items, token="")
    policy = NetPolicy(operator=True, max_response_bytes=len(body) // 2)
    with pytest.raises(TooLarge):
        _full_sync_with(scripted, (207, XML, body), policy=policy)
    scripted.replies.clear()
    delta = _full_sync_with(scripted, (207, XML, body), policy=NetPolicy(operator=True))
    assert len(delta.resources) == 40  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("status", "headers", "error", "retry_after"),
    [
        (429, {"Retry-After": "7"}, RateLimited, 7.0),
        (503, {"Retry-After": "3"}, RateLimited, 3.0),
        (401, {"WWW-Authenticate": 'Basic realm="cal"'}, AuthExpired, None),
    ],
)
def test_the_streamed_query_maps_http_failures_as_every_request_does(
    scripted: Script,
    status: int,
    headers: dict[str, str],
    error: type[Exception],
    retry_after: float | None,
) -> None:
    reply = (status, headers, b"")
    again = [reply, reply] if status == 401 else []  # asked again, then with credentials
    with pytest.raises(error) as caught:
        _full_sync_with(scripted, reply, *again, username="alex", password="secret")
    assert scripted.replies == []
    if retry_after is not None:
        assert isinstance(caught.value, RateLimited) and caught.value.retry_after == retry_after


def test_a_refused_streamed_query_goes_the_sync_collection_way_with_its_preconditions(
    scripted: Script,
) -> None:
    refusal = b'<?xml version="1.0"?><d:error xmlns:d="DAV:"><d:number-of-matches-within-limits/></d:error>'
    delta = _full_sync_with(
        scripted,
        (403, XML, refusal),
        (207, XML, multistatus(etag_only("/cal/a.ics"), token="t2")),
        (207, XML, multistatus(item("/cal/a.ics", ics("a", at(4, 9))), token="")),
    )
    assert delta.token == "t2" and [r.href for r in delta.resources] == ["/cal/a.ics"]  # type: ignore[attr-defined]
    assert scripted.replies == []


def test_a_full_sync_holds_no_copy_of_the_whole_reply(scripted: Script) -> None:
    """Each resource is parsed as its part of the reply arrives and its XML and text are
    dropped: the Python memory a full sync needs at its peak is a fraction of the reply
    (events far outside the window, so that the result itself holds next to nothing)."""
    filler = "DESCRIPTION:" + "x" * 70 + "\r\n " + ("y" * 70 + "\r\n ") * 40 + "z\r\n"
    text = ics("u", datetime(2031, 1, 1, 9, tzinfo=UTC)).replace("SUMMARY:", filler + "SUMMARY:")
    body = multistatus(*(item(f"/cal/{i}.ics", text) for i in range(1500)), token="")
    assert len(body) > 4_000_000
    tracemalloc.start()
    try:
        delta = _full_sync_with(scripted, (207, XML, body))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(delta.resources) == 1500  # type: ignore[attr-defined]
    # A copy of the reply alone would be len(body); the server thread's send buffers and
    # pytest-xdist's channel thread are traced too (1.4 MB seen in a full run), hence half.
    assert peak < len(body) / 2, f"peak {peak} bytes for a reply of {len(body)}"
