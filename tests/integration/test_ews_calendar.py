"""The EWS connector through real exchangelib over real HTTP, against tests/support/ews_server.

What the contract suite does not cover: request counts per sync, SyncFolderItems paging,
CalendarView capping, Windows zones and DST, all-day events, EWS faults (ErrorServerBusy
with BackOffMilliseconds, ResponseMessage errors), write-back details, and the recorded
Exchange payloads in ../shared/evaldata/ews.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from exchangelib import CalendarItem
from exchangelib.recurrence import (
    AbsoluteMonthlyPattern,
    AbsoluteYearlyPattern,
    DailyPattern,
    EndDatePattern,
    NoEndPattern,
    NumberedPattern,
    RelativeMonthlyPattern,
    WeeklyPattern,
)
from lxml import etree

from assistant.domain.model import Attendee, EventData, EventStatus, Response
from connectors.base import (
    AuthExpired,
    NotFound,
    OwnEvent,
    RateLimited,
    TokenExpired,
    Transient,
    Window,
)
from connectors.ews.account import EwsSettings
from connectors.ews.calendar import _ITEM_FIELDS, EwsCalendar
from connectors.ews.series import event_from_item, expand_series, recurrence_rule
from tests.support.ews_server import SOAP, Change, EwsServer, M, T
from tests.support.ews_server import Attendee as ServerAttendee

WINDOW = Window(
    datetime(2026, 10, 1, tzinfo=UTC), datetime(2027, 1, 31, tzinfo=UTC), "Europe/Berlin"
)
NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
EVALDATA = Path(__file__).resolve().parents[2].parent / "shared" / "evaldata" / "ews"
evaldata = pytest.mark.skipif(not EVALDATA.is_dir(), reason=f"evaldata not present at {EVALDATA}")


@pytest.fixture
def server() -> Iterator[EwsServer]:
    with EwsServer() as srv:
        yield srv


def connect(server: EwsServer, **kw: object) -> EwsCalendar:
    settings = EwsSettings(
        mailbox=server.mailbox.address, service_endpoint=server.url,
        username=server.username, password=server.password,
    )  # fmt: skip
    return EwsCalendar(settings, timeout=5, zone="Europe/Berlin", **kw)  # type: ignore[arg-type]


def at(month: int, day: int, hour: int, zone: ZoneInfo = BERLIN) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=zone)


def ops_since(server: EwsServer, mark: int) -> list[str]:
    return server.operations()[mark:]


# ------------------------------------------------------------------- sync & costs


def test_first_sync_lists_everything_and_costs_a_known_number_of_requests(
    server: EwsServer,
) -> None:
    mb = server.mailbox
    mb.add("single", "Board", at(12, 1, 10), at(12, 1, 12), location="Boardroom")
    mb.add("weekly", "1:1", at(12, 1, 16), at(12, 1, 17), weekly_count=3)
    mb.add("old", "Long ago", at(1, 5, 9), at(1, 5, 10))  # outside the window
    cal = connect(server)
    delta = cal.changes(None, WINDOW)
    assert delta.full and delta.token
    hrefs = {r.href: r for r in delta.resources}
    assert len(hrefs) == 3, "every item is a resource, in the window or not"
    assert hrefs[mb.by_uid("old").item_id].events == ()
    weekly = hrefs[mb.by_uid("weekly").item_id]
    assert weekly.etag == mb.by_uid("weekly").change_key
    assert [e.recurrence_id for e in weekly.events] == [
        "20261201T150000Z", "20261208T150000Z", "20261215T150000Z",
    ]  # fmt: skip
    board = hrefs[mb.by_uid("single").item_id].events[0]
    assert (board.summary, board.location, board.timezone) == (
        "Board",
        "Boardroom",
        "Europe/Berlin",
    )
    assert board.start == at(12, 1, 10).astimezone(UTC) and board.recurrence_id == ""
    # ConvertId (version), GetFolder root + calendar, then the sync proper: no view, one
    # GetItem for the single in the window and the master (the series expanded here).
    assert server.operations() == [
        "ConvertId", "GetFolder", "GetFolder", "SyncFolderItems", "GetItem",
    ]  # fmt: skip


def test_incremental_costs(server: EwsServer) -> None:
    mb = server.mailbox
    mb.add("single", "Board", at(12, 1, 10), at(12, 1, 12))
    mb.add("weekly", "1:1", at(12, 1, 16), at(12, 1, 17), weekly_count=3)
    cal = connect(server)
    token = cal.changes(None, WINDOW).token

    mark = len(server.requests)
    nothing = cal.changes(token, WINDOW)
    assert nothing.unchanged and ops_since(server, mark) == ["SyncFolderItems"]

    with mb.edit("single") as item:
        item.subject = "Board (moved room)"
    mark = len(server.requests)
    delta = cal.changes(nothing.token, WINDOW)
    assert ops_since(server, mark) == ["SyncFolderItems", "GetItem"], "a single: no view"
    assert [r.events[0].summary for r in delta.resources] == ["Board (moved room)"]

    with mb.edit("weekly") as item:
        item.deleted.add(item.original_starts()[1])
    mark = len(server.requests)
    delta = cal.changes(delta.token, WINDOW)
    # GetItem of the master (recurrence, deleted occurrences): expanded here, no view
    assert ops_since(server, mark) == ["SyncFolderItems", "GetItem"]
    (series,) = delta.resources
    assert [e.recurrence_id for e in series.events] == ["20261201T150000Z", "20261215T150000Z"]

    mb.remove(mb.by_uid("single").item_id)
    mark = len(server.requests)
    delta = cal.changes(delta.token, WINDOW)
    assert delta.deleted == (mb.tombstones and next(iter(mb.tombstones)),)
    assert delta.resources == () and ops_since(server, mark) == ["SyncFolderItems"]


def test_sync_folder_items_pages_until_the_last_item_in_range(server: EwsServer) -> None:
    mb = server.mailbox
    for i in range(7):
        mb.add(f"u{i}", f"Meeting {i}", at(12, 2 + i, 9), at(12, 2 + i, 10))
    cal = connect(server, sync_page=3)
    delta = cal.changes(None, WINDOW)
    assert len(delta.resources) == 7
    assert server.operations().count("SyncFolderItems") == 3  # 3 + 3 + 1
    for i in range(4):
        with mb.edit(f"u{i}") as item:
            item.location = "Room 1"
    mark = len(server.requests)
    delta = cal.changes(delta.token, WINDOW)
    assert ops_since(server, mark).count("SyncFolderItems") == 2
    assert sorted(r.events[0].uid for r in delta.resources) == ["u0", "u1", "u2", "u3"]
    assert cal.changes(delta.token, WINDOW).unchanged


def test_a_capped_calendar_view_is_split_until_every_part_fits(server: EwsServer) -> None:
    mb = server.mailbox
    mb.add("daily-ish", "Stand-up", at(11, 2, 9), at(11, 2, 10), weekly_count=10)
    mb.add("other", "Other", at(11, 3, 9), at(11, 3, 10), weekly_count=10)
    cal = connect(server, view_cap=4, expand_locally=False)  # the server expands the series
    delta = cal.changes(None, WINDOW)
    assert sum(len(r.events) for r in delta.resources) == 20
    ops = server.operations()
    assert ops.count("FindItem") > 1
    # probes are FindItem alone: GetItem of the masters, the occurrences' UIDs, their properties
    assert ops.count("GetItem") == 3


def test_moved_and_cancelled_occurrences(server: EwsServer) -> None:
    mb = server.mailbox
    series = mb.add("weekly", "1:1", at(12, 1, 16), at(12, 1, 17), weekly_count=4)
    starts = series.original_starts()
    cal = connect(server)
    token = cal.changes(None, WINDOW).token
    with mb.edit("weekly") as item:
        item.modified[starts[1]] = Change(at(12, 9, 9), at(12, 9, 10), subject="1:1 (moved)")
        item.deleted.add(starts[2])
    (resource,) = cal.changes(token, WINDOW).resources
    got = {e.recurrence_id: e for e in resource.events}
    assert set(got) == {"20261201T150000Z", "20261208T150000Z", "20261222T150000Z"}
    moved = got["20261208T150000Z"]
    assert moved.start == at(12, 9, 9).astimezone(UTC) and moved.summary == "1:1 (moved)"
    assert all(e.href == series.item_id and e.uid == "weekly" for e in resource.events)


def test_a_changed_series_with_an_exception_costs_three_requests(server: EwsServer) -> None:
    mb = server.mailbox
    series = mb.add("weekly", "1:1", at(10, 6, 16), at(10, 6, 17), weekly_count=30)
    mb.add("single", "Board", at(12, 1, 10), at(12, 1, 12))
    cal = connect(server)
    token = cal.changes(None, WINDOW).token
    starts = series.original_starts()
    with mb.edit("weekly") as item:
        item.modified[starts[3]] = Change(at(10, 28, 9), at(10, 28, 10), subject="moved")
        item.deleted.add(starts[5])
    mark = len(server.requests)
    (resource,) = cal.changes(token, WINDOW).resources
    # SyncFolderItems, GetItem of the master, GetItem of its exception: whatever its length
    assert ops_since(server, mark) == ["SyncFolderItems", "GetItem", "GetItem"]
    assert len(resource.events) == len([s for s in starts if s < WINDOW.end]) - 1
    moved = next(e for e in resource.events if e.summary == "moved")
    assert moved.start == at(10, 28, 9).astimezone(UTC)
    assert moved.recurrence_id == f"{starts[3]:%Y%m%dT%H%M%SZ}"
    assert f"{starts[5]:%Y%m%dT%H%M%SZ}" not in {e.recurrence_id for e in resource.events}


def test_a_full_sync_of_many_series_reads_masters_not_occurrences(server: EwsServer) -> None:
    mb = server.mailbox
    for i in range(150):
        series = mb.add(f"s{i}", f"Series {i}", at(10, 5, 8) + timedelta(hours=i % 9, days=i % 5),
                        at(10, 5, 9) + timedelta(hours=i % 9, days=i % 5), weekly_count=16)  # fmt: skip
        if i % 10 == 0:
            o = series.original_starts()[2]
            series.modified[o] = Change(o + timedelta(hours=2), o + timedelta(hours=3))
    for i in range(40):
        mb.add(f"u{i}", f"Single {i}", at(11, 1 + i % 28, 9), at(11, 1 + i % 28, 10))
    mb.add("old", "Long ago", at(1, 5, 9), at(1, 5, 10))
    cal = connect(server, view_cap=1000)
    delta = cal.changes(None, WINDOW)
    assert sum(len(r.events) for r in delta.resources) == 150 * 16 + 40
    ops = server.operations()[3:]  # after ConvertId and the two GetFolder
    # one SyncFolderItems page; 190 singles and masters (not "old"), 100 a GetItem; 15 exceptions
    assert ops == ["SyncFolderItems", "GetItem", "GetItem", "GetItem"]


Snapshot = tuple[set[tuple[str, str]], set[EventData]]


def _snapshot(cal: EwsCalendar, token: str | None) -> Snapshot:
    delta = cal.changes(token, WINDOW)
    assert not delta.skipped
    return {(r.href, r.etag) for r in delta.resources}, {
        e for r in delta.resources for e in r.events
    }


def test_local_expansion_equals_the_servers_across_daylight_saving(server: EwsServer) -> None:
    """The same EventData as the server's CalendarView expansion (the path before), for
    weekly series over both DST changes of 2026 (Europe 25 Oct, US 1 Nov), in two zones,
    all-day, with moved and cancelled occurrences, before and after a change."""
    mb = server.mailbox
    ny = mb.add("ny", "NY sync", at(10, 13, 9, NEW_YORK), at(10, 13, 10, NEW_YORK),
                zone="Eastern Standard Time", weekly_count=8,
                attendees=[ServerAttendee("sam@example.com", "Sam", "Accept")])  # fmt: skip
    berlin = mb.add("berlin", "Jour fixe", at(10, 14, 9), at(10, 14, 10, ), weekly_count=10,
                    body="<html><body>Agenda</body></html>", location="Room 1")  # fmt: skip
    mb.add("allday", "Home office", at(10, 16, 0), at(10, 17, 0), all_day=True,
           free_busy="Free", weekly_count=6)  # fmt: skip
    mb.add("early", "Began before", at(9, 2, 8), at(9, 2, 9), weekly_count=10)  # fmt: skip
    mb.add("single", "Board", at(12, 1, 10), at(12, 1, 12))
    ny_starts, berlin_starts = ny.original_starts(), berlin.original_starts()
    ny.modified[ny_starts[3]] = Change(ny_starts[3] + timedelta(days=1),
                                       ny_starts[3] + timedelta(days=1, hours=1),
                                       subject="NY sync (moved)", location="Hudson")  # fmt: skip
    ny.deleted.add(ny_starts[2])
    berlin.modified[berlin_starts[2]] = Change(at(10, 27, 15), at(10, 27, 16))
    berlin.deleted.add(berlin_starts[4])
    local, remote = connect(server), connect(server, expand_locally=False)
    local_full, remote_full = _snapshot(local, None), _snapshot(remote, None)
    assert local_full == remote_full
    events = {(e.uid, e.recurrence_id): e for e in local_full[1]}
    assert [events[("ny", f"{s:%Y%m%dT%H%M%SZ}")].start.astimezone(NEW_YORK).hour
            for s in ny_starts if s not in (ny_starts[2], ny_starts[3])] == [9] * 6  # fmt: skip
    assert {events[("berlin", f"{s:%Y%m%dT%H%M%SZ}")].start.astimezone(BERLIN).hour
            for s in berlin_starts[5:]} == {9}  # fmt: skip
    assert events[("allday", "20261023")].start_date == date(2026, 10, 23)
    token = local.changes(None, WINDOW).token
    with mb.edit("berlin") as item:
        item.deleted.add(berlin_starts[6])
        item.modified[berlin_starts[7]] = Change(berlin_starts[7] + timedelta(hours=1),
                                                 berlin_starts[7] + timedelta(hours=2))  # fmt: skip
    assert _snapshot(local, token) == _snapshot(remote, token)
    assert _snapshot(local, None) == _snapshot(remote, None)


def test_a_series_the_server_contradicts_is_expanded_by_the_server(server: EwsServer) -> None:
    master = server.mailbox.add("w", "1:1", at(12, 1, 16), at(12, 1, 17), weekly_count=3)
    cal = connect(server)
    (item,) = cal._mailbox().fetch(ids=[(master.item_id, master.change_key)],
                                   only_fields=list(_ITEM_FIELDS))  # fmt: skip
    expansion = expand_series(item, WINDOW)
    assert expansion is not None and len(expansion.occurrences) == 3
    item.first_occurrence.original_start += timedelta(hours=1)  # not an occurrence of ours
    assert expand_series(item, WINDOW) is None


_FROM = date(2027, 1, 1)  # a Friday


@pytest.mark.parametrize(
    ("pattern", "boundary", "expected"),
    [
        # day 31 falls on the last day of shorter months, as in Exchange
        (AbsoluteMonthlyPattern(interval=1, day_of_month=31), NumberedPattern(start=_FROM, number=4),
         ["2027-01-31", "2027-02-28", "2027-03-31", "2027-04-30"]),
        (RelativeMonthlyPattern(interval=1, weekday=5, week_number=5),  # last Friday
         EndDatePattern(start=_FROM, end=date(2027, 3, 31)),
         ["2027-01-29", "2027-02-26", "2027-03-26"]),
        (RelativeMonthlyPattern(interval=2, weekday=9, week_number=1),  # first weekday
         NumberedPattern(start=_FROM, number=3), ["2027-01-01", "2027-03-01", "2027-05-03"]),
        (AbsoluteYearlyPattern(day_of_month=29, month=2), NumberedPattern(start=_FROM, number=2),
         ["2027-02-28", "2028-02-29"]),
        # every other week counts from the week of the start date (28 Dec - 3 Jan)
        (WeeklyPattern(interval=2, weekdays=[1, 3], first_day_of_week=1),
         NumberedPattern(start=_FROM, number=4),
         ["2027-01-11", "2027-01-13", "2027-01-25", "2027-01-27"]),
        (DailyPattern(interval=3), NoEndPattern(start=_FROM),
         ["2027-01-01", "2027-01-04", "2027-01-07"]),
    ],
)  # fmt: skip
def test_recurrence_patterns_as_exchange_expands_them(
    pattern: object, boundary: object, expected: list[str]
) -> None:
    rule = recurrence_rule(pattern, boundary, datetime(2027, 1, 1, 9))
    assert rule is not None
    assert [f"{d:%Y-%m-%d}" for d in itertools.islice(rule, len(expected))] == expected


# ------------------------------------------------------------ zones and all-day


def test_windows_zones_and_a_series_across_daylight_saving(server: EwsServer) -> None:
    mb = server.mailbox
    # 9:00 in New York, weekly over the end of DST (1 November 2026): 13:00Z, then 14:00Z.
    mb.add("ny", "NY sync", at(10, 20, 9, NEW_YORK), at(10, 20, 10, NEW_YORK),
           zone="Eastern Standard Time", weekly_count=4)  # fmt: skip
    mb.add("tokyo", "Tokyo call", datetime(2026, 11, 4, 8, tzinfo=ZoneInfo("Asia/Tokyo")),
           datetime(2026, 11, 4, 9, tzinfo=ZoneInfo("Asia/Tokyo")), zone="Tokyo Standard Time")  # fmt: skip
    delta = connect(server).changes(None, WINDOW)
    events = {(e.uid, e.recurrence_id): e for r in delta.resources for e in r.events}
    ny = sorted((e for e in events.values() if e.uid == "ny"), key=lambda e: e.start)
    assert [e.recurrence_id for e in ny] == [
        "20261020T130000Z", "20261027T130000Z", "20261103T140000Z", "20261110T140000Z",
    ]  # fmt: skip
    assert {e.timezone for e in ny} == {"America/New_York"}
    assert all(e.start.astimezone(NEW_YORK).hour == 9 for e in ny)
    assert events[("tokyo", "")].timezone == "Asia/Tokyo"
    assert events[("tokyo", "")].start == datetime(2026, 11, 3, 23, tzinfo=UTC)


def test_all_day_events_are_dates(server: EwsServer) -> None:
    server.mailbox.add(
        "offsite", "Offsite", at(12, 3, 0), at(12, 5, 0), all_day=True, free_busy="Free",
    )  # fmt: skip
    (resource,) = connect(server).changes(None, WINDOW).resources
    (event,) = resource.events
    assert event.all_day and (event.start_date, event.end_date) == (
        date(2026, 12, 3),
        date(2026, 12, 5),
    )
    assert event.start == at(12, 3, 0).astimezone(UTC) and not event.busy


def test_item_properties_map(server: EwsServer) -> None:
    server.mailbox.add(
        "rich", "Budget", at(12, 4, 14), at(12, 4, 15), sensitivity="Private",
        body="<html><body><p>Agenda</p><p>https://teams.microsoft.com/l/meetup-join/19%3a1</p>"
             "</body></html>",
        categories=["Finance"], organizer="cfo@example.com",
        attendees=[ServerAttendee("alex@example.com", "Alex", "Accept"),
                   ServerAttendee("sam@example.com", "Sam", "Tentative", required=False)],
    )  # fmt: skip
    with server.mailbox.edit("rich") as item:
        item.cancelled = True
    (resource,) = connect(server).changes(None, WINDOW).resources
    (event,) = resource.events
    assert event.private and event.status is EventStatus.CANCELLED
    assert event.description.startswith("Agenda")
    assert event.online_meeting_url == "https://teams.microsoft.com/l/meetup-join/19%3a1"
    assert event.organizer == "cfo@example.com" and event.categories == ("Finance",)
    assert event.attendees == (
        Attendee("alex@example.com", "Alex", Response.ACCEPTED, True),
        Attendee("sam@example.com", "Sam", Response.TENTATIVE, False),
    )


# --------------------------------------------------------------------- errors


def test_invalid_sync_state_is_token_expired(server: EwsServer) -> None:
    cal = connect(server)
    token = cal.changes(None, WINDOW).token
    server.mailbox.expire_states()
    with pytest.raises(TokenExpired):
        cal.changes(token, WINDOW)
    with pytest.raises(TokenExpired):
        cal.changes("bm90IGEgc3RhdGU=", WINDOW)
    assert cal.changes(None, WINDOW).full


def test_server_busy_back_off_becomes_retry_after(server: EwsServer) -> None:
    cal = connect(server)
    token = cal.changes(None, WINDOW).token
    server.server_busy(297749)
    with pytest.raises(RateLimited) as caught:
        cal.changes(token, WINDOW)
    assert caught.value.retry_after == pytest.approx(297.749)
    assert server.requests[-1] == ("SyncFolderItems", 500), "no retry inside the connector"
    assert cal.changes(token, WINDOW).unchanged


@pytest.mark.parametrize(
    ("status", "retry_after", "error"),
    [(429, 30, RateLimited), (503, 7, RateLimited), (503, None, RateLimited),
     (401, None, AuthExpired), (500, None, Transient), (502, None, Transient)],
)  # fmt: skip
def test_http_statuses(server: EwsServer, status: int, retry_after: int | None,
                       error: type[Exception]) -> None:  # fmt: skip
    cal = connect(server)
    token = cal.changes(None, WINDOW).token
    server.fail_next(status, retry_after=retry_after)
    with pytest.raises(error) as caught:
        cal.changes(token, WINDOW)
    if isinstance(caught.value, RateLimited):
        assert caught.value.retry_after == retry_after
    assert cal.changes(token, WINDOW).unchanged


def test_timeouts_and_refused_connections_are_transient(server: EwsServer) -> None:
    cal = connect(server)
    token = cal.changes(None, WINDOW).token
    cal.timeout = 0.3
    server.hang_next(1.0)
    with pytest.raises(Transient):
        cal.changes(token, WINDOW)
    cal.timeout = 5
    assert cal.changes(token, WINDOW).unchanged
    gone = EwsSettings(mailbox="alex@example.com", service_endpoint="http://127.0.0.1:9/EWS/Exchange.asmx",
                       username="a", password="b")  # fmt: skip
    with pytest.raises(Transient):
        EwsCalendar(gone, timeout=2).changes(None, WINDOW)


@pytest.mark.parametrize(
    ("code", "error"),
    [("ErrorItemNotFound", NotFound), ("ErrorMailboxStoreUnavailable", Transient),
     ("ErrorAccessDenied", AuthExpired), ("ErrorServerBusy", RateLimited)],
)  # fmt: skip
def test_response_message_errors(server: EwsServer, code: str, error: type[Exception]) -> None:
    cal = connect(server)
    event = own_event()
    cal.put_event(event)
    server.error_next("UpdateItem", code)
    with pytest.raises(error):
        cal.put_event(event)


# ---------------------------------------------------------------- write-back


def own_event(**kw: object) -> OwnEvent:
    values: dict[str, object] = dict(
        uid="cp-1@exec-assistant", summary="Dead Line: report", description="Accept the work.",
        start=at(12, 10, 9), end=at(12, 10, 9) + timedelta(minutes=30), timezone="Europe/Berlin",
        marker="7:dead_line", attendees=(Attendee("sam@example.com", "Sam"),),
        url="https://assistant.example.com/t/7",
    )  # fmt: skip
    values.update(kw)
    return OwnEvent(**values)  # type: ignore[arg-type]


def test_write_back_round_trip(server: EwsServer) -> None:
    cal = connect(server)
    written = cal.put_event(own_event())
    again = cal.put_event(own_event(summary="Dead Line: final report"))
    assert again.href == written.href and again.etag != written.etag
    (item,) = server.mailbox.items.values()
    assert item.uid == "cp-1@exec-assistant" and item.zone == "W. Europe Standard Time"
    assert [a.email for a in item.attendees] == ["sam@example.com"]
    assert ("PublicStrings", "X-EXEC-ASSISTANT-CHECKPOINT", "String") in item.extended
    held = cal.get_event("cp-1@exec-assistant")
    assert held is not None
    assert (held.summary, held.own_marker, held.href) == (
        "Dead Line: final report",
        "7:dead_line",
        written.href,
    )
    assert "https://assistant.example.com/t/7" in held.description
    creates = [b.decode() for b in server.bodies if b"<m:CreateItem" in b]
    assert len(creates) == 1 and 'SendMeetingInvitations="SendToNone"' in creates[0]
    delta = cal.changes(None, WINDOW)
    assert [e.own_marker for r in delta.resources for e in r.events] == ["7:dead_line"]
    assert cal.delete_event("cp-1@exec-assistant") and server.mailbox.items == {}
    assert cal.get_event("cp-1@exec-assistant") is None
    assert cal.delete_event("cp-1@exec-assistant") is False


def test_a_create_whose_answer_was_lost_is_not_repeated(server: EwsServer) -> None:
    cal = connect(server)
    cal.put_event(own_event())  # pretend the reply never came: the caller retries
    cal.put_event(own_event())
    assert len(server.mailbox.items) == 1
    assert server.operations().count("CreateItem") == 1


def test_duplicates_from_an_earlier_race_are_collapsed(server: EwsServer) -> None:
    cal = connect(server)
    for _ in range(2):
        server.mailbox.add(
            "cp-1@exec-assistant", "dup", at(12, 10, 9), at(12, 10, 10),
            extended={("PublicStrings", "X-EXEC-ASSISTANT-UID", "String"): "cp-1@exec-assistant"},
        )  # fmt: skip
    cal.put_event(own_event())
    (item,) = server.mailbox.items.values()
    assert item.subject == "Dead Line: report"


# ------------------------------------------------------------------ evaldata


def _real(text: str) -> bytes:
    """Undo what the docs did to the recorded bodies: namespaces printed with https
    (Exchange sends http) and HTML bodies escaped twice."""
    for mangled, real in (
        ("https://schemas.xmlsoap.org", "http://schemas.xmlsoap.org"),
        ("https://schemas.microsoft.com", "http://schemas.microsoft.com"),
        ("&amp;lt;", "&lt;"),
        ("&amp;gt;", "&gt;"),
    ):
        text = text.replace(mangled, real)
    return text.encode()


def _parsed(path: Path) -> etree._Element | None:
    """The recorded body, or None for the few the docs mangled (line-broken namespaces)."""
    try:
        return etree.fromstring(_real(path.read_text(encoding="utf-8")))
    except etree.XMLSyntaxError:
        return None


def _evaldata_files(kind: str, element: str) -> list[Path]:
    with (EVALDATA / "INDEX.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [
        EVALDATA / row["file"]
        for row in rows
        if row["kind"] == kind and row["well_formed_xml"] == "yes"
        and element in (EVALDATA / row["file"]).read_text(encoding="utf-8")
    ]  # fmt: skip


@evaldata
def test_every_recorded_calendar_item_maps_or_is_refused_clearly(server: EwsServer) -> None:
    cal = connect(server)
    account = cal._mailbox()  # the account parses items (its default zone is UTC)
    mapped, refused = [], []
    for path in _evaldata_files("response", "CalendarItem>"):
        root = _parsed(path)
        for elem in root.iter(f"{{{T}}}CalendarItem") if root is not None else ():
            item = CalendarItem.from_xml(elem=elem, account=account)
            try:
                event = event_from_item(item, item.id or path.name, "Europe/Berlin")
            except ValueError as exc:
                refused.append((path.name, str(exc)))
                continue
            assert event.start.tzinfo is UTC and event.end >= event.start
            mapped.append((path.name, event))
    assert len(mapped) >= 5
    assert all("without" in reason for _, reason in refused), refused
    by_summary = {e.summary: e for _, e in mapped}
    review = by_summary["Review current quarterly deliverables"]
    assert review.start == datetime(2014, 1, 19, 18, 59, 7, tzinfo=UTC)
    assert review.description.startswith("Wrap up all outstanding deliverables")
    code_blast = by_summary["Code Blast"]
    assert {a.email for a in code_blast.attendees} == {
        "mack@contoso.com", "sadie@contoso.com", "magdalena@contoso.com",
    }  # fmt: skip


@evaldata
def test_recorded_faults_map_to_our_errors(server: EwsServer) -> None:
    cal = connect(server)
    token = cal.changes(None, WINDOW).token
    busy = EVALDATA / "exchangelib-tests" / "tests_test_services__L111_fault.xml"
    server.reply_next(_real(busy.read_text(encoding="utf-8")), status=500)
    with pytest.raises(RateLimited) as caught:
        cal.changes(token, WINDOW)
    assert caught.value.retry_after == pytest.approx(297.749)
    invalid = (
        EVALDATA / "msdocs" / "web-service-reference" / "syncfolderitems-operation__03_response.xml"
    )
    server.reply_next(_real(invalid.read_text(encoding="utf-8")))
    with pytest.raises(TokenExpired):
        cal.changes(token, WINDOW)


@evaldata
@pytest.mark.parametrize("operation", ["SyncFolderItems", "GetItem", "FindItem", "CreateItem",
                                       "UpdateItem", "DeleteItem", "GetFolder"])  # fmt: skip
def test_server_replies_are_shaped_like_recorded_exchange_replies(
    server: EwsServer, operation: str
) -> None:
    """Each element our server puts in a response message is one Exchange puts there too."""
    cal = connect(server)
    server.mailbox.add("w", "1:1", at(12, 1, 16), at(12, 1, 17), weekly_count=2)
    cal.changes(None, WINDOW)
    cal.put_event(own_event())
    cal.put_event(own_event(summary="again"))
    cal.delete_event("cp-1@exec-assistant")
    recorded: set[str] = set()
    for path in _evaldata_files("response", f"{operation}ResponseMessage"):
        root = _parsed(path)
        for msg in root.iter(f"{{{M}}}{operation}ResponseMessage") if root is not None else ():
            recorded |= {etree.QName(c).localname for c in msg}
    assert recorded, f"no recorded {operation} response"
    ours: set[str] = set()
    replies = [reply for op, reply in server.replies if op == operation]
    assert replies
    for reply in replies:
        root = etree.fromstring(reply)
        assert root.find(f"{{{SOAP}}}Header/{{{T}}}ServerVersionInfo") is not None
        for msg in root.iter(f"{{{M}}}{operation}ResponseMessage"):
            assert msg.get("ResponseClass") == "Success"
            ours |= {etree.QName(c).localname for c in msg}
    assert ours <= recorded | {"MessageText", "DescriptiveLinkKey"}, ours - recorded
