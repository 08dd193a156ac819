"""The Google Calendar connector beyond the contract: paging, service accounts, refused
refreshes, all-day and private events, write-back retries, and real Google payloads.

Everything runs through google-api-python-client over real HTTP against the
protocol-level server in ``tests/support/google_server.py``.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from assistant.domain.model import Attendee, Response
from connectors.base import (
    AuthExpired,
    CalendarDelta,
    NotFound,
    OwnEvent,
    RateLimited,
    TokenExpired,
    Transient,
    Window,
)
from connectors.google.calendar import GoogleCalendar, event_id_for
from tests.support.google_server import GoogleCalendarServer

MANAGER = "alex@example.com"
ZONE = "Europe/Paris"
PARIS = ZoneInfo(ZONE)
WINDOW = Window(datetime(2026, 11, 20, tzinfo=UTC), datetime(2027, 3, 1, tzinfo=UTC), ZONE)
EVALDATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "evaldata" / "google"


@pytest.fixture
def server() -> Iterator[GoogleCalendarServer]:
    with GoogleCalendarServer(time_zone=ZONE) as s:
        yield s


class Other:
    """The manager's other client: raw REST calls with a token faults leave alone."""

    def __init__(self, server: GoogleCalendarServer, user: str = MANAGER) -> None:
        self.http = httpx.Client(
            base_url=f"{server.url}calendar/v3/calendars/primary/",
            headers={"Authorization": f"Bearer {server.access_token_for(user, exempt=True)}"},
            timeout=10,
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def create(self, summary: str, start: datetime, minutes: int = 60, **extra: Any) -> str:
        body = {
            "summary": summary,
            "start": {"dateTime": start.isoformat(), "timeZone": ZONE},
            "end": {"dateTime": (start + timedelta(minutes=minutes)).isoformat(), "timeZone": ZONE},
            **extra,
        }
        return str(self.call("POST", "events", json=body)["id"])


@pytest.fixture
def other(server: GoogleCalendarServer) -> Iterator[Other]:
    client = Other(server)
    yield client
    client.http.close()


def connect(server: GoogleCalendarServer, timeout: float = 5, **kwargs: Any) -> GoogleCalendar:
    client_id, client_secret = server.add_client()
    refresh = server.issue_refresh_token(MANAGER, client_id)
    return GoogleCalendar.installed_app(
        client_id, client_secret, refresh, token_uri=server.token_uri, api_root=server.url,
        zone=ZONE, timeout=timeout, **kwargs,
    )  # fmt: skip


def paris(day: int, hour: int, minute: int = 0, month: int = 12) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=PARIS)


def events_of(delta: CalendarDelta) -> dict[tuple[str, str], Any]:
    return {e.key: e for r in delta.resources for e in r.events}


def list_requests(server: GoogleCalendarServer) -> int:
    return sum(1 for r in server.api_requests() if r.method == "GET" and r.path.endswith("/events"))


# ------------------------------------------------------------------------ paging


def test_paging_full_then_incremental_then_nothing(
    server: GoogleCalendarServer, other: Other
) -> None:
    ids = [other.create(f"Meeting {n}", paris(n + 1, 9)) for n in range(7)]
    master = other.create(
        "Weekly", paris(1, 10), 30, recurrence=["RRULE:FREQ=WEEKLY;COUNT=5"], iCalUID="weekly-1"
    )
    other.call("PATCH", f"events/{master}_20261208T090000Z",
               json={"start": {"dateTime": paris(9, 11).isoformat(), "timeZone": ZONE},
                     "end": {"dateTime": paris(9, 11, 30).isoformat(), "timeZone": ZONE}})  # fmt: skip
    other.call("DELETE", f"events/{master}_20261215T090000Z")
    calendar = connect(server, page_size=3)

    full = calendar.changes(None, WINDOW)
    assert full.full
    assert list_requests(server) == 4, "10 items (7 single, master, 2 exceptions) by 3"
    assert {r.href for r in full.resources} == {*ids, master}
    weekly = sorted(k[1] for k in events_of(full) if k[0] == "weekly-1")
    assert weekly == ["20261201T090000Z", "20261208T090000Z", "20261222T090000Z",
                      "20261229T090000Z"]  # fmt: skip
    assert events_of(full)[("weekly-1", "20261208T090000Z")].start == paris(9, 11).astimezone(UTC)

    for n in (0, 1):
        other.call("PATCH", f"events/{ids[n]}",
                   json={"start": {"dateTime": paris(n + 1, 15).isoformat()},
                         "end": {"dateTime": paris(n + 1, 16).isoformat()}})  # fmt: skip
    other.call("DELETE", f"events/{ids[2]}")
    new = [other.create("New 1", paris(20, 9)), other.create("New 2", paris(21, 9))]
    before = list_requests(server)
    delta = calendar.changes(full.token, WINDOW)
    assert list_requests(server) - before == 2, "5 changed items by 3"
    assert not delta.full
    assert {r.href for r in delta.resources} == {ids[0], ids[1], *new}
    assert delta.deleted == (ids[2],)
    assert events_of(delta)[(f"{ids[0]}@google.com", "")].start == paris(1, 15).astimezone(UTC)

    count = calendar.requests
    quiet = calendar.changes(delta.token, WINDOW)
    assert quiet.unchanged
    assert quiet.token == delta.token
    assert calendar.requests - count == 1, "a no-change sync is one request"


def test_a_changed_exception_brings_its_whole_series(
    server: GoogleCalendarServer, other: Other
) -> None:
    master = other.create("Weekly", paris(1, 10), 30, recurrence=["RRULE:FREQ=WEEKLY;COUNT=4"])
    calendar = connect(server)
    token = calendar.changes(None, WINDOW).token
    other.call("DELETE", f"events/{master}_20261215T090000Z")
    count = calendar.requests
    delta = calendar.changes(token, WINDOW)
    # A cancelled instance comes without its iCalUID: get the master, then list by iCalUID.
    assert calendar.requests - count == 3
    assert [r.href for r in delta.resources] == [master]
    assert [e.recurrence_id for e in delta.resources[0].events] == [
        "20261201T090000Z", "20261208T090000Z", "20261222T090000Z"
    ]  # fmt: skip
    other.call("PATCH", f"events/{master}_20261208T090000Z", json={"location": "Room 2"})
    count = calendar.requests
    delta = calendar.changes(delta.token, WINDOW)
    assert calendar.requests - count == 2, "the sync listing and one events.list(iCalUID)"
    assert [e.location for e in delta.resources[0].events] == ["", "Room 2", ""]
    other.call("DELETE", f"events/{master}")
    gone = calendar.changes(delta.token, WINDOW)
    assert gone.deleted == (master,)
    assert gone.resources == ()


# --------------------------------------------------------------------- auth


def test_service_account_with_domain_wide_delegation(
    server: GoogleCalendarServer, other: Other
) -> None:
    key = server.new_service_account("sync@exec-assistant.iam.gserviceaccount.com", (MANAGER,))
    other.create("Board", paris(1, 10))
    calendar = GoogleCalendar.service_account(key, MANAGER, api_root=server.url, zone=ZONE)
    delta = calendar.changes(None, WINDOW)
    assert [e.summary for r in delta.resources for e in r.events] == ["Board"]
    grants = [r for r in server.requests if r.path == "/token"]
    assert [g.status for g in grants] == [200]

    stranger = GoogleCalendar.service_account(key, "ceo@example.com", api_root=server.url)
    with pytest.raises(AuthExpired):
        stranger.changes(None, WINDOW)


def test_service_account_from_settings(server: GoogleCalendarServer, other: Other) -> None:
    key = server.new_service_account("sync@exec-assistant.iam.gserviceaccount.com", (MANAGER,))
    other.create("Board", paris(1, 10))
    settings = {"auth": "service_account", "service_account_key": {"env": "X"},
                "subject": MANAGER, "api_root": server.url, "token_uri": server.token_uri}  # fmt: skip
    calendar = GoogleCalendar.from_settings(settings, lambda ref: json.dumps(key))
    assert len(calendar.changes(None, WINDOW).resources) == 1


def test_an_expired_access_token_is_refreshed_once(
    server: GoogleCalendarServer, other: Other
) -> None:
    calendar = connect(server)
    token = calendar.changes(None, WINDOW).token
    other.create("Board", paris(1, 10))
    server.expire_access_tokens()
    grants = sum(1 for r in server.requests if r.path == "/token")
    assert len(calendar.changes(token, WINDOW).resources) == 1
    assert sum(1 for r in server.requests if r.path == "/token") == grants + 1


def test_a_refused_refresh_is_auth_expired(server: GoogleCalendarServer) -> None:
    client_id, secret = server.add_client()
    refresh = server.issue_refresh_token(MANAGER, client_id)
    calendar = GoogleCalendar.installed_app(
        client_id, secret, refresh, token_uri=server.token_uri, api_root=server.url
    )
    token = calendar.changes(None, WINDOW).token
    server.revoke_refresh_token(refresh)
    server.expire_access_tokens()  # the next call gets 401, and the refresh is refused
    with pytest.raises(AuthExpired, match="refresh was refused"):
        calendar.changes(token, WINDOW)
    fresh = GoogleCalendar.installed_app(
        client_id, secret, refresh, token_uri=server.token_uri, api_root=server.url
    )
    with pytest.raises(AuthExpired):
        fresh.changes(None, WINDOW)


# ----------------------------------------------------------------- errors


def test_provider_errors_map_onto_our_tree(server: GoogleCalendarServer) -> None:
    calendar = connect(server)
    token = calendar.changes(None, WINDOW).token
    server.fail_next(403, reason="userRateLimitExceeded", retry_after=7)
    with pytest.raises(RateLimited) as caught:
        calendar.changes(token, WINDOW)
    assert caught.value.retry_after == 7
    server.fail_next(403, reason="rateLimitExceeded")
    with pytest.raises(RateLimited):
        calendar.changes(token, WINDOW)
    server.fail_next(403, reason="forbidden")
    with pytest.raises(AuthExpired):
        calendar.changes(token, WINDOW)
    server.fail_next(503)
    with pytest.raises(Transient):
        calendar.changes(token, WINDOW)
    server.expire_sync_tokens()
    with pytest.raises(TokenExpired):
        calendar.changes(token, WINDOW)
    elsewhere = connect(server, calendar_id="someone-else@example.com")
    with pytest.raises(NotFound):
        elsewhere.changes(None, WINDOW)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/"
    unreachable = GoogleCalendar(calendar._credentials, api_root=dead, timeout=2)
    with pytest.raises(Transient):
        unreachable.changes(token, WINDOW)


# ------------------------------------------------------------------ mapping


def test_all_day_private_and_meeting_details(server: GoogleCalendarServer, other: Other) -> None:
    other.call("POST", "events", json={
        "summary": "Holiday", "start": {"date": "2026-12-24"}, "end": {"date": "2026-12-26"},
        "transparency": "transparent",
    })  # fmt: skip
    other.create(
        "Doctor", paris(2, 8), visibility="private", location="Clinic",
        attendees=[
            {"email": MANAGER, "self": True, "responseStatus": "declined"},
            {"email": "Dr.Who@Example.com", "displayName": "Dr Who", "optional": True,
             "responseStatus": "accepted"},
        ],
        conferenceData={"entryPoints": [
            {"entryPointType": "phone", "uri": "tel:+33-1-2345"},
            {"entryPointType": "video", "uri": "https://meet.google.com/abc-defg-hij"},
        ]},
    )  # fmt: skip
    other.create("Call", paris(3, 8), hangoutLink="https://meet.google.com/xyz-abcd-efg")
    events = {
        e.summary: e for r in connect(server).changes(None, WINDOW).resources for e in r.events
    }

    holiday = events["Holiday"]
    assert holiday.all_day
    assert (holiday.start_date, holiday.end_date) == (date(2026, 12, 24), date(2026, 12, 26))
    assert holiday.start == datetime(2026, 12, 24, tzinfo=PARIS).astimezone(UTC)
    assert not holiday.busy
    assert holiday.timezone == ""

    doctor = events["Doctor"]
    assert doctor.private
    assert doctor.busy
    assert doctor.timezone == ZONE
    assert doctor.start == paris(2, 8).astimezone(UTC)
    assert doctor.location == "Clinic"
    assert doctor.organizer == MANAGER
    assert doctor.attendees == (
        Attendee(MANAGER, "", Response.DECLINED, True),
        Attendee("dr.who@example.com", "Dr Who", Response.ACCEPTED, False),
    )
    assert doctor.online_meeting_url == "https://meet.google.com/abc-defg-hij"
    assert events["Call"].online_meeting_url == "https://meet.google.com/xyz-abcd-efg"


def test_all_day_series_with_a_cancelled_and_a_moved_day(
    server: GoogleCalendarServer, other: Other
) -> None:
    master = other.call("POST", "events", json={
        "summary": "Offsite", "start": {"date": "2026-12-01"}, "end": {"date": "2026-12-02"},
        "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=3"],
    })["id"]  # fmt: skip
    other.call("DELETE", f"events/{master}_20261208")
    other.call("PATCH", f"events/{master}_20261215",
               json={"start": {"date": "2026-12-16"}, "end": {"date": "2026-12-17"}})  # fmt: skip
    events = connect(server).changes(None, WINDOW).resources[0].events
    assert [(e.recurrence_id, e.start_date) for e in events] == [
        ("20261201", date(2026, 12, 1)), ("20261215", date(2026, 12, 16))
    ]  # fmt: skip


# --------------------------------------------------------------- write-back


def checkpoint(**changes: Any) -> OwnEvent:
    event = OwnEvent(
        uid="task-7:red_line@exec-assistant", summary="Red Line: budget",
        description="On track?", start=paris(4, 9), end=paris(4, 9, 30), timezone=ZONE,
        marker="7:red_line", attendees=(Attendee("sam@example.com", "Sam"),),
        url="https://assistant.example/t/7",
    )  # fmt: skip
    return replace(event, **changes)


def live_with_uid(server: GoogleCalendarServer, uid: str) -> list[dict[str, Any]]:
    return [
        e for e in server.calendar(MANAGER).events.values()
        if e.get("iCalUID") == uid and e.get("status") != "cancelled"
    ]  # fmt: skip


def test_a_retried_insert_never_duplicates(server: GoogleCalendarServer) -> None:
    server.hang_next(1.5)  # the insert is stored, but its answer comes too late
    with pytest.raises(Transient):
        connect(server, timeout=0.5).put_event(checkpoint())
    writer = connect(server)
    written = writer.put_event(checkpoint(summary="Red Line: budget (v2)"))
    assert written.href == event_id_for(checkpoint().uid)
    assert len(live_with_uid(server, checkpoint().uid)) == 1
    held = writer.get_event(checkpoint().uid)
    assert held is not None
    assert held.summary == "Red Line: budget (v2)"
    assert held.own_marker == "7:red_line"
    assert held.uid == checkpoint().uid
    assert held.attendees == (Attendee("sam@example.com", "Sam"),)
    stored = live_with_uid(server, checkpoint().uid)[0]
    assert stored["extendedProperties"]["private"]["x-exec-assistant-checkpoint"] == "7:red_line"


def test_deleted_then_written_again_comes_back(server: GoogleCalendarServer) -> None:
    writer = connect(server)
    writer.put_event(checkpoint())
    assert writer.delete_event(checkpoint().uid)
    assert writer.get_event(checkpoint().uid) is None
    writer.put_event(checkpoint(start=paris(5, 9), end=paris(5, 10)))
    held = writer.get_event(checkpoint().uid)
    assert held is not None
    assert held.start == paris(5, 9).astimezone(UTC)
    assert len(live_with_uid(server, checkpoint().uid)) == 1


def test_our_event_is_found_by_uid_when_the_id_differs(
    server: GoogleCalendarServer, other: Other
) -> None:
    """An event of ours written under another id (an older version, an import)."""
    uid = "legacy-1@exec-assistant"
    other.create("Dead Line: report", paris(6, 9), iCalUID=uid, extendedProperties={
        "private": {"x-exec-assistant-checkpoint": "3:dead_line", "x-exec-assistant-uid": uid}
    })  # fmt: skip
    writer = connect(server)
    held = writer.get_event(uid)
    assert held is not None
    assert held.own_marker == "3:dead_line"
    assert writer.delete_event(uid) is True
    assert writer.get_event(uid) is None
    assert writer.delete_event(uid) is False


# ----------------------------------------------------------------- evaldata

CALENDAR_DATA = EVALDATA / "calendar"
PAYLOADS = {
    "okami/googledata.json": (None, 2016),
    "northworld-google_calendar/events.json": ("items", 2011),
    "northworld-google_calendar/repeating_events.json": ("items", 2014),
    "northworld-google_calendar/query_events.json": ("items", None),
    "ase-pda-james/listEventsResponse.json": ("items", 2020),
    "destiny/getList_MOCK.json": ("items", 2023),
    "auto-meeting/events.testadata.json": ("testevents", 2020),
}
SINGLE_EVENTS = ("create_event.json", "create_quickadd_event.json", "find_event_by_id.json",
                 "find__all_day_event_by_id.json", "missing_date.json", "cancelled_events.json")  # fmt: skip


def _items(name: str, key: str | None) -> list[dict[str, Any]]:
    data = json.loads((CALENDAR_DATA / name).read_text(encoding="utf-8"))
    return list(data if key is None else data[key])


def _span_of(items: list[dict[str, Any]]) -> Window:
    moments = []
    for item in items:
        for part in ("start", "end", "originalStartTime"):
            value = item.get(part) or {}
            if "dateTime" in value:
                moments.append(datetime.fromisoformat(value["dateTime"]).astimezone(UTC))
            elif "date" in value:
                moments.append(datetime.fromisoformat(value["date"]).replace(tzinfo=UTC))
    return Window(min(moments) - timedelta(days=2), max(moments) + timedelta(days=60), ZONE)


@pytest.mark.evaldata
@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_real_google_event_payloads_map_or_are_rejected_clearly(
    server: GoogleCalendarServer, name: str
) -> None:
    if not CALENDAR_DATA.is_dir():
        pytest.skip(f"evaldata absent: {CALENDAR_DATA}")
    items = _items(name, PAYLOADS[name][0])
    server.load(MANAGER, items)
    delta = connect(server, page_size=7).changes(None, _span_of(items))
    assert delta.skipped == ()
    hrefs = {r.href for r in delta.resources}
    for item in items:
        if item.get("status") == "cancelled" or item.get("recurringEventId"):
            continue
        assert item["id"] in hrefs, f"{item['id']} ({item.get('summary')}) was lost"
    events = [e for r in delta.resources for e in r.events]
    assert events
    for event in events:
        assert event.start.tzinfo is UTC and event.end >= event.start
        assert event.uid
        assert event.all_day == (event.start_date is not None)


@pytest.mark.evaldata
def test_real_payload_details(server: GoogleCalendarServer) -> None:
    if not CALENDAR_DATA.is_dir():
        pytest.skip(f"evaldata absent: {CALENDAR_DATA}")
    okami = _items("okami/googledata.json", None)
    server.load(MANAGER, okami)
    calendar = connect(server)
    events = [e for r in calendar.changes(None, _span_of(okami)).resources for e in r.events]
    point = [e for e in events if e.summary == "Point UX : brique RH"]
    assert len(point) == 17, "Tuesdays from 31 May 2016; UNTIL 27 Sep 12:29:59Z excludes that day"
    assert point[0].online_meeting_url.startswith("https://plus.google.com/hangouts/")
    assert point[0].timezone == "Europe/Paris"
    assert point[0].recurrence_id == "20160531T123000Z"

    server2 = GoogleCalendarServer(time_zone=ZONE).start()
    try:
        james = _items("ase-pda-james/listEventsResponse.json", "items")
        server2.load(MANAGER, james)
        found = {e.summary: e for r in connect(server2).changes(None, _span_of(james)).resources
                 for e in r.events}  # fmt: skip
    finally:
        server2.stop()
    show = found["RuPaul’s Drag Race Werq The World Tour 2020"]
    assert show.private and not show.busy
    assert show.attendees[0].response is Response.ACCEPTED
    birthday = found["Stina-Minas Geburtstag, norwegischer Nationaltag"]
    assert birthday.all_day and birthday.recurrence_id == "20200517"
    assert birthday.href == "nipdmajsfuvt7frcq4ec0uukoc"


@pytest.mark.evaldata
def test_real_single_event_payloads(server: GoogleCalendarServer) -> None:
    folder = CALENDAR_DATA / "northworld-google_calendar"
    if not folder.is_dir():
        pytest.skip(f"evaldata absent: {folder}")
    items = []
    for name in SINGLE_EVENTS:
        item = json.loads((folder / name).read_text(encoding="utf-8"))
        items.append({**item, "id": f"{item['id']}{len(items)}"})  # some share an id
    server.load(MANAGER, items)
    window = Window(datetime(2008, 1, 1, tzinfo=UTC), datetime(2016, 1, 1, tzinfo=UTC), ZONE)
    delta = connect(server).changes(None, window)
    assert sorted(delta.skipped) == [
        "fhru34kt6ikmr20knd2456l10n3: event fhru34kt6ikmr20knd2456l10n3 has a malformed date "
        "'2008-09-24T10:30:00-07:00'",  # a "date" holding a date-time
        "fhru34kt6ikmr20knd2456l12n4: event fhru34kt6ikmr20knd2456l12n4 has no start",  # dateTimes
    ]
    # the rest map; the cancelled instance of a series we do not hold is no event at all
    assert len(delta.resources) == 3


@pytest.mark.evaldata
def test_real_error_bodies_map_onto_our_tree(server: GoogleCalendarServer) -> None:
    """Google's own error bodies, served verbatim, become our errors."""
    folder = CALENDAR_DATA / "northworld-google_calendar"
    if not folder.is_dir():
        pytest.skip(f"evaldata absent: {folder}")
    calendar = connect(server)
    token = calendar.changes(None, WINDOW).token
    expected = {
        "403_rate_limit.json": RateLimited, "403_user_rate_limit.json": RateLimited,
        "403_calendar_rate_limit.json": RateLimited, "403_daily_limit.json": RateLimited,
        "403_forbidden.json": AuthExpired, "404.json": NotFound, "410.json": TokenExpired,
    }  # fmt: skip
    for name, error in expected.items():
        body = json.loads((folder / name).read_text(encoding="utf-8"))
        server.fail_next(int(body["error"]["code"]), reason=body["error"]["errors"][0]["reason"])
        with pytest.raises(error):
            calendar.changes(token, WINDOW)
