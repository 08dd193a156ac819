"""The Graph connector over real HTTPS against the protocol-level Graph server (tests/support):
what the contract suite does not cover (paging, zones, delegated tokens, private events,
series identities, lost responses)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from assistant.domain.model import Attendee, Response
from connectors.base import (
    AuthExpired,
    CalendarSource,
    CalendarWriter,
    NotFound,
    OwnEvent,
    RateLimited,
    TokenExpired,
    Transient,
    Window,
)
from connectors.graph.calendar import UID_PROPERTY, GraphCalendar
from tests.support.graph_server import GOID_CLASS, GraphServer

BERLIN = ZoneInfo("Europe/Berlin")
WINDOW = Window(datetime(2030, 3, 1, tzinfo=UTC), datetime(2030, 5, 1, tzinfo=UTC), "Europe/Berlin")


def at(day: int, hour: int, minute: int = 0, zone: ZoneInfo = BERLIN) -> datetime:
    return datetime(2030, 4, day, hour, minute, tzinfo=zone)


@pytest.fixture
def graph(tmp_path: Path) -> Iterator[GraphServer]:
    with GraphServer(tmp_path) as server:
        yield server


def connect(graph: GraphServer, **options: Any) -> GraphCalendar:
    settings: dict[str, Any] = {
        "tenant": graph.tenant, "client_id": graph.client_id, "client_secret": graph.client_secret,
        "graph_url": graph.graph_url, "authority_host": graph.authority_host,
        "verify": graph.ca_file, "zone": "Europe/Berlin", "backoff": 0.0, "timeout": 5.0,
    }  # fmt: skip
    settings.update(options)
    return GraphCalendar(graph.user, **settings)


@pytest.fixture
def calendar(graph: GraphServer) -> Iterator[GraphCalendar]:
    connector = connect(graph)
    yield connector
    connector.close()


def test_is_a_calendar_source_and_writer(calendar: GraphCalendar) -> None:
    assert isinstance(calendar, CalendarSource)
    assert isinstance(calendar, CalendarWriter)


def test_paging_over_several_pages_then_one_request_per_sync(graph: GraphServer) -> None:
    for day in range(1, 9):
        graph.create_event(
            f"Meeting {day}", at(day, 9), at(day, 10), zone="W. Europe Standard Time"
        )
    calendar = connect(graph, page_size=3)
    first = calendar.changes(None, WINDOW)
    assert first.full
    assert sorted(e.summary for r in first.resources for e in r.events) == [
        f"Meeting {d}" for d in range(1, 9)
    ]
    delta_requests = graph.graph_requests("/calendarView/delta")
    assert len(delta_requests) == 3, "8 events at 3 a page"
    assert "$skiptoken" in delta_requests[1].query
    assert first.token is not None and "$deltatoken" in first.token

    quiet = calendar.changes(first.token, WINDOW)
    assert quiet.unchanged
    assert len(graph.graph_requests("/calendarView/delta")) == 4, "nothing new costs one request"

    moved = next(i for i in graph.items.values() if i.fields["subject"] == "Meeting 5")
    graph.update_event(moved.id, start=at(5, 14), end=at(5, 15))
    gone = next(i for i in graph.items.values() if i.fields["subject"] == "Meeting 6")
    graph.delete_event(gone.id)
    second = calendar.changes(quiet.token, WINDOW)
    assert not second.full
    assert [r.href for r in second.resources] == [moved.id]
    assert second.resources[0].events[0].start == at(5, 14).astimezone(UTC)
    assert second.deleted == (gone.id,)
    calendar.close()


def test_windows_zone_names_and_all_day_events(graph: GraphServer, calendar: GraphCalendar) -> None:
    pacific = ZoneInfo("America/Los_Angeles")
    graph.create_event("West coast call", at(2, 8, zone=pacific), at(2, 9, zone=pacific),
                       zone="Pacific Standard Time")  # fmt: skip
    graph.create_event("Offsite", datetime(2030, 4, 3, tzinfo=BERLIN),
                       datetime(2030, 4, 5, tzinfo=BERLIN), zone="W. Europe Standard Time",
                       all_day=True)  # fmt: skip
    events = {e.summary: e for r in calendar.changes(None, WINDOW).resources for e in r.events}
    call = events["West coast call"]
    assert call.timezone == "America/Los_Angeles"
    assert call.start == datetime(2030, 4, 2, 15, 0, tzinfo=UTC)  # 08:00 PDT
    offsite = events["Offsite"]
    assert offsite.all_day
    assert (offsite.start_date, offsite.end_date) == (date(2030, 4, 3), date(2030, 4, 5))
    assert offsite.start == datetime(2030, 4, 3, tzinfo=BERLIN).astimezone(UTC)
    assert offsite.timezone == ""


def test_series_occurrences_carry_the_series_uid_and_recurrence_ids(
    graph: GraphServer, calendar: GraphCalendar
) -> None:
    master = graph.create_event("Weekly", at(2, 16), at(2, 17), zone="W. Europe Standard Time",
                                weekly=3)  # fmt: skip
    graph.move_occurrence(master, at(9, 16), at(10, 8), at(10, 9))
    first = calendar.changes(None, WINDOW)
    events = sorted((e for r in first.resources for e in r.events), key=lambda e: e.start)
    master_uid = graph.items[master].ical_uid
    assert master_uid.startswith(GOID_CLASS)
    assert {e.uid for e in events} == {master_uid}
    assert [e.recurrence_id for e in events] == [
        "20300402T140000Z", "20300409T140000Z", "20300416T140000Z",
    ]  # fmt: skip
    assert events[1].start == at(10, 8).astimezone(UTC)
    assert len({r.href for r in first.resources}) == 3

    graph.delete_event(master)
    after = calendar.changes(first.token, WINDOW)
    assert after.resources == ()
    assert sorted(after.deleted) == sorted(r.href for r in first.resources)


def test_private_event_free_time_online_meeting_and_my_answer(
    graph: GraphServer, calendar: GraphCalendar
) -> None:
    graph.create_event(
        "Doctor", at(3, 8), at(3, 9), zone="W. Europe Standard Time",
        sensitivity="private", showAs="free",
    )  # fmt: skip
    graph.create_event(
        "Vendor pitch", at(4, 11), at(4, 12), zone="W. Europe Standard Time",
        location={"displayName": "Teams"}, isOnlineMeeting=True,
        onlineMeeting={"joinUrl": "https://teams.microsoft.com/l/meetup-join/abc"},
        organizer={"emailAddress": {"name": "Vera", "address": "vera@vendor.example"}},
        attendees=[
            {"type": "required", "status": {"response": "none"},
             "emailAddress": {"name": "Alex", "address": "alex@example.com"}},
            {"type": "optional", "status": {"response": "accepted"},
             "emailAddress": {"name": "Sam", "address": "sam@example.com"}},
        ],
        responseStatus={"response": "declined", "time": "2030-03-30T10:00:00Z"},
        body={"contentType": "html", "content": "<p>Agenda &amp; pricing</p>"},
    )  # fmt: skip
    events = {e.summary: e for r in calendar.changes(None, WINDOW).resources for e in r.events}
    doctor = events["Doctor"]
    assert doctor.private
    assert not doctor.busy
    pitch = events["Vendor pitch"]
    assert not pitch.private and pitch.busy
    assert pitch.online_meeting_url == "https://teams.microsoft.com/l/meetup-join/abc"
    assert pitch.location == "Teams"
    assert pitch.organizer == "vera@vendor.example"
    assert pitch.description == "Agenda & pricing"
    assert pitch.attendees == (
        Attendee("alex@example.com", "Alex", Response.DECLINED, True),
        Attendee("sam@example.com", "Sam", Response.ACCEPTED, False),
    )


def test_lost_token_is_token_expired(graph: GraphServer, calendar: GraphCalendar) -> None:
    first = calendar.changes(None, WINDOW)
    graph.invalidate_delta_tokens()
    with pytest.raises(TokenExpired):
        calendar.changes(first.token, WINDOW)
    with pytest.raises(TokenExpired):
        calendar.changes(
            "https://elsewhere.example/v1.0/users/x/calendarView/delta?$deltatoken=1", WINDOW
        )


def test_throttling_and_errors(graph: GraphServer, calendar: GraphCalendar) -> None:
    graph.fail_next(503, retry_after=7)
    with pytest.raises(RateLimited) as caught:
        calendar.changes(None, WINDOW)
    assert caught.value.retry_after == 7
    graph.fail_next(502, times=2)
    assert calendar.changes(None, WINDOW).full, "a short 5xx burst is ridden out"
    graph.fail_next(500, times=4)  # the first try and three retries
    with pytest.raises(Transient):
        calendar.changes(None, WINDOW)
    graph.fail_next(404)
    with pytest.raises(NotFound):
        calendar.changes(None, WINDOW)
    graph.fail_next(403)
    with pytest.raises(AuthExpired):
        calendar.changes(None, WINDOW)


def test_delegated_refresh_token_rotates_and_refusal_is_auth_expired(graph: GraphServer) -> None:
    rotated: list[str] = []
    start = graph.issue_refresh_token()
    calendar = connect(
        graph, client_secret="", refresh_token=start, on_refresh_token=rotated.append
    )
    first = calendar.changes(None, WINDOW)
    assert rotated and rotated[-1] != start and calendar.refresh_token == rotated[-1]
    graph.expire_access_tokens()  # the access token dies; the refresh token still works
    assert calendar.changes(first.token, WINDOW).unchanged
    assert graph.token_requests.count("refresh_token") == 2
    graph.revoke_refresh_tokens()
    graph.expire_access_tokens()
    with pytest.raises(AuthExpired):
        calendar.changes(first.token, WINDOW)
    calendar.close()


def test_unknown_client_secret_is_auth_expired(graph: GraphServer) -> None:
    calendar = connect(graph, client_secret="wrong")
    with pytest.raises(AuthExpired):
        calendar.changes(None, WINDOW)
    calendar.close()


def checkpoint(**changes: Any) -> OwnEvent:
    event = OwnEvent(
        uid="task-7-dead-line@exec-assistant", summary="Dead Line: Q2 budget",
        description="What percent is done? On time?", start=at(12, 10), end=at(12, 10, 30),
        timezone="Europe/Berlin", marker="7:dead_line",
        attendees=(Attendee("dana@example.com", "Dana"),), url="https://assistant.example/t/7",
    )  # fmt: skip
    return replace(event, **changes)


def test_a_write_retried_after_a_lost_response_does_not_duplicate(
    graph: GraphServer, calendar: GraphCalendar
) -> None:
    graph.drop_next("POST")
    with pytest.raises(Transient):
        calendar.put_event(checkpoint())
    assert len(graph.own_items(UID_PROPERTY)) == 1, (
        "the create went through; only the reply was lost"
    )
    written = calendar.put_event(checkpoint(summary="Dead Line: Q2 budget (final)"))
    ours = graph.own_items(UID_PROPERTY)
    assert [i.id for i in ours] == [written.href]
    assert ours[0].zone == "W. Europe Standard Time"
    held = calendar.get_event(checkpoint().uid)
    assert held is not None
    assert held.summary == "Dead Line: Q2 budget (final)"
    assert held.start == at(12, 10).astimezone(UTC)
    assert held.own_marker == "7:dead_line"
    assert held.timezone == "Europe/Berlin"
    assert held.attendees[0].email == "dana@example.com"


def test_our_events_come_back_from_sync_with_our_uid_and_marker(
    graph: GraphServer, calendar: GraphCalendar
) -> None:
    first = calendar.changes(None, WINDOW)
    calendar.put_event(checkpoint())
    delta = calendar.changes(first.token, WINDOW)
    [event] = [e for r in delta.resources for e in r.events]
    assert (event.uid, event.own_marker, event.is_ours) == (checkpoint().uid, "7:dead_line", True)
    assert calendar.delete_event(checkpoint().uid)
    assert not calendar.delete_event(checkpoint().uid)
    assert calendar.get_event(checkpoint().uid) is None
    after = calendar.changes(delta.token, WINDOW)
    assert after.deleted == (delta.resources[0].href,)


def test_timeout_is_transient(graph: GraphServer) -> None:
    calendar = connect(graph, timeout=0.3)
    calendar.changes(None, WINDOW)
    graph.hang_next(1.0)
    with pytest.raises(Transient):
        calendar.changes(None, WINDOW)
    calendar.close()


def test_sync_window_bounds_the_listing(graph: GraphServer, calendar: GraphCalendar) -> None:
    graph.create_event("Inside", at(20, 9), at(20, 10), zone="W. Europe Standard Time")
    graph.create_event("Later", at(20, 9) + timedelta(days=60), at(20, 10) + timedelta(days=60),
                       zone="W. Europe Standard Time")  # fmt: skip
    summaries = [e.summary for r in calendar.changes(None, WINDOW).resources for e in r.events]
    assert summaries == ["Inside"]
