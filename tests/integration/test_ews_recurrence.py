"""Our local expansion of EWS series against the EWS server's own, for every pattern.

The connector (connectors/ews/calendar.py, real exchangelib over real HTTP) expands a
series master itself, from its Recurrence, ModifiedOccurrences and DeletedOccurrences.
tests/support/ews_server expands the same series by plain calendar arithmetic (no
dateutil, none of the connector's code) for its CalendarView: that view is the reference
here. Each case puts one series in the mailbox, syncs it, checks that the connector did
expand it locally (no FindItem: a series it gave up on would be read from the very view
it is compared with), and compares our occurrences with the view's over the window:
original start (recurrence id), start, end, subject and location.

The reference itself is checked against hand-computed dates (the 31st in shorter months,
the last Friday, the second Tuesday of March, 29 February in other years), and the
Recurrence XML it sends against what exchangelib reads and writes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from exchangelib import CalendarItem, EWSDateTime, EWSTimeZone
from exchangelib.recurrence import (
    AbsoluteMonthlyPattern,
    AbsoluteYearlyPattern,
    DailyPattern,
    EndDatePattern,
    NoEndPattern,
    NumberedPattern,
    RelativeMonthlyPattern,
    RelativeYearlyPattern,
    WeeklyPattern,
)
from exchangelib.recurrence import Recurrence as EwsRecurrence

from connectors.base import Window
from connectors.ews.account import EwsSettings
from connectors.ews.calendar import EwsCalendar
from tests.support.ews_server import (
    Appointment,
    Change,
    EwsServer,
    Recurrence,
    absolute_monthly,
    absolute_yearly,
    daily,
    relative_monthly,
    relative_yearly,
    weekly,
)

BERLIN = ZoneInfo("Europe/Berlin")
PACIFIC = ZoneInfo("America/Los_Angeles")
EASTERN = ZoneInfo("America/New_York")
WEST_EUROPE = "W. Europe Standard Time"
WINDOW = Window(
    datetime(2026, 10, 1, tzinfo=UTC), datetime(2028, 4, 1, tzinfo=UTC), "Europe/Berlin"
)

# recurrence id, start, end (all-day: dates, the end exclusive), subject, location
Occurrence = tuple[str, date, date, str, str]


@dataclass(frozen=True)
class Case:
    recurrence: Recurrence
    start: datetime  # the first occurrence's (wall-clock time of every one)
    minutes: int
    zone: str = WEST_EUROPE  # the Windows zone Exchange stores
    moved: dict[int, timedelta] = field(default_factory=dict)  # index → shift
    deleted: tuple[int, ...] = ()  # indexes (0-based, of the original starts)
    local_hour: tuple[ZoneInfo, int] | None = None  # every occurrence at that wall-clock hour
    all_day: bool = False  # ``minutes`` is then a number of whole days


def b(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN)


CASES = {
    # over the end of DST in Europe (25 October 2026): 08:30 in Berlin throughout
    "daily-across-berlin-dst": Case(daily(count=10), b(2026, 10, 20, 8, 30), 30,
                                    deleted=(3,), local_hour=(BERLIN, 8)),
    "daily-every-3-days-no-end": Case(daily(3), b(2027, 2, 1, 7), 15, deleted=(5,)),
    "daily-every-2-days-until": Case(daily(2, until=date(2027, 4, 2)), b(2027, 3, 20, 12), 60,
                                     local_hour=(BERLIN, 12)),  # over 28 March 2027
    # several days, every other week, weeks from Sunday; US DST ends 1 Nov, starts 14 Mar
    "weekly-mon-wed-fri-biweekly-pacific": Case(
        weekly("Monday", "Wednesday", "Friday", interval=2, first_day="Sunday",
               until=date(2027, 4, 30)),
        datetime(2026, 10, 14, 10, tzinfo=PACIFIC), 45, zone="Pacific Standard Time",
        moved={4: timedelta(days=1, hours=2)}, deleted=(7,), local_hour=(PACIFIC, 10)),
    "weekly-tue-thu-across-berlin-dst": Case(weekly("Tuesday", "Thursday", count=12),
                                             b(2026, 10, 13, 9), 60, local_hour=(BERLIN, 9)),
    "weekly-saturday-every-3-weeks-no-end": Case(weekly("Saturday", interval=3),
                                                 b(2026, 10, 3, 11), 90),
    "monthly-on-the-31st": Case(absolute_monthly(31, count=14), b(2026, 10, 31, 18), 60,
                                local_hour=(BERLIN, 18)),
    "monthly-15th-every-2-months-until": Case(absolute_monthly(15, 2, until=date(2027, 12, 31)),
                                              b(2026, 10, 15, 12), 30),
    "monthly-last-friday": Case(relative_monthly("Friday", "Last"), b(2026, 10, 30, 16), 60,
                                moved={2: timedelta(days=-2, hours=-2)}, deleted=(3,)),
    "monthly-first-weekday": Case(relative_monthly("Weekday", "First", count=8),
                                  b(2026, 10, 1, 9), 30),
    "monthly-last-day-every-3-months": Case(relative_monthly("Day", "Last", 3, count=6),
                                            b(2026, 10, 31, 17), 60),
    "monthly-second-weekend-day": Case(relative_monthly("WeekendDay", "Second",
                                                        until=date(2027, 9, 30)),
                                       b(2026, 10, 4, 10), 120),
    # StartDate (1 Oct) before the first occurrence (31 Oct): the range starts there
    "monthly-31st-start-date-before-first": Case(absolute_monthly(31, 2, count=6),
                                                 b(2026, 10, 1, 18), 60),
    # weeks from Sunday, starting on a Sunday: Mon 19 + Sat 24 Oct are one week
    "weekly-mon-sat-biweekly-weeks-from-sunday": Case(
        weekly("Monday", "Saturday", interval=2, first_day="Sunday", count=9),
        b(2026, 10, 18, 7), 60, deleted=(0,)),
    # all-day, Saturday and Sunday, one weekend over 25 October 2026 (a 25-hour Sunday)
    "all-day-weekends-across-berlin-dst": Case(weekly("Saturday", count=4), b(2026, 10, 17, 0),
                                               2 * 24 * 60, all_day=True, deleted=(2,)),
    "all-day-last-friday-pacific": Case(
        relative_monthly("Friday", "Last", count=6), datetime(2026, 10, 30, tzinfo=PACIFIC),
        24 * 60, zone="Pacific Standard Time", all_day=True),
    "yearly-29-february": Case(absolute_yearly(29, "February"), b(2027, 2, 28, 9), 60),
    # second Tuesday of March: 9 Mar 2027 (before US DST starts), 14 Mar 2028 (after)
    "yearly-second-tuesday-of-march-eastern": Case(
        relative_yearly("Tuesday", "Second", "March", count=3),
        datetime(2027, 3, 9, 11, tzinfo=EASTERN), 60, zone="Eastern Standard Time",
        local_hour=(EASTERN, 11)),
    "yearly-began-years-ago": Case(absolute_yearly(1, "December", count=20), b(2019, 12, 1, 8), 60,
                                   moved={8: timedelta(hours=3)}),
}  # fmt: skip

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


def add_series(server: EwsServer, uid: str, case: Case) -> Appointment:
    mb = server.mailbox
    end = case.start + timedelta(minutes=case.minutes)
    if case.all_day:  # midnight to midnight in the zone, whatever the DST
        end = case.start.replace(tzinfo=None) + timedelta(minutes=case.minutes)
        end = end.replace(tzinfo=case.start.tzinfo)
    master = mb.add(uid, f"Series {uid}", case.start, end, zone=case.zone, all_day=case.all_day,
                    recurrence=case.recurrence, location="Room 4")  # fmt: skip
    originals = master.original_starts()
    for index, shift in case.moved.items():
        moved = originals[index] + shift
        master.modified[originals[index]] = Change(
            moved, moved + timedelta(minutes=case.minutes), subject=f"Series {uid} (moved)",
            location="Elsewhere",
        )  # fmt: skip
    for index in case.deleted:
        master.deleted.add(originals[index])
    return master


def utc(value: datetime) -> datetime:
    """A plain UTC datetime (exchangelib's EWSDateTime wants its own zones)."""
    return datetime.fromtimestamp(value.timestamp(), tz=UTC)


def rid(value: datetime) -> str:
    return f"{utc(value):%Y%m%dT%H%M%SZ}"


def ours(
    cal: EwsCalendar, token: str | None, window: Window = WINDOW
) -> tuple[set[Occurrence], str | None]:
    delta = cal.changes(token, window)
    assert not delta.skipped
    return {
        (e.recurrence_id, e.start_date, e.end_date, e.summary, e.location)
        if e.all_day and e.start_date and e.end_date
        else (e.recurrence_id, e.start, e.end, e.summary, e.location)
        for r in delta.resources
        for e in r.events
    }, delta.token


def server_view(cal: EwsCalendar, window: Window = WINDOW) -> set[Occurrence]:
    """The server's CalendarView (FindItem) over the window, through exchangelib."""
    ews_utc = EWSTimeZone("UTC")
    view = cal._calendar().view(
        start=EWSDateTime.from_datetime(window.start).astimezone(ews_utc),
        end=EWSDateTime.from_datetime(window.end).astimezone(ews_utc),
    )
    found: set[Occurrence] = set()
    fields = ("subject", "location", "start", "end", "type", "original_start", "is_all_day",
              "_start_timezone")  # fmt: skip
    for item in view.only(*fields):
        assert item.type in ("Occurrence", "Exception"), "only series in these mailboxes"
        if item.is_all_day:  # exchangelib's all-day end date is inclusive
            zone = ZoneInfo(item._start_timezone.key)
            day = f"{utc(item.original_start).astimezone(zone):%Y%m%d}"
            found.add((day, date(item.start.year, item.start.month, item.start.day),
                       date(item.end.year, item.end.month, item.end.day) + timedelta(days=1),
                       item.subject, item.location or ""))  # fmt: skip
            continue
        found.add((rid(item.original_start), utc(item.start), utc(item.end), item.subject,
                   item.location or ""))  # fmt: skip
    return found


# ---------------------------------------------------- our expansion vs the server's


@pytest.mark.parametrize("name", list(CASES))
def test_our_occurrences_equal_the_servers_calendar_view(server: EwsServer, name: str) -> None:
    case = CASES[name]
    add_series(server, name, case)
    cal = connect(server)
    mark = len(server.requests)
    mine, _ = ours(cal, None)
    assert "FindItem" not in server.operations()[mark:], "expanded locally, not by the server"
    reference = server_view(cal)
    assert len(reference) >= 2, "the window holds several occurrences of the series"
    assert sorted(mine, key=lambda o: o[1]) == sorted(reference, key=lambda o: o[1])
    if case.local_hour:
        zone, hour = case.local_hour
        starts = [o[1] for o in mine if "moved" not in o[3]]
        assert {s.astimezone(zone).hour for s in starts if isinstance(s, datetime)} == {hour}


def test_changes_to_occurrences_after_the_first_sync(server: EwsServer) -> None:
    """Moving and deleting occurrences of synced series (an incremental sync), then moving
    one whose original start is past the window into it: still the server's view."""
    masters = {n: add_series(server, n, CASES[n])
               for n in ("monthly-last-friday", "weekly-mon-wed-fri-biweekly-pacific",
                         "daily-every-3-days-no-end")}  # fmt: skip
    cal = connect(server)
    first, token = ours(cal, None)
    assert first == server_view(cal)
    mb = server.mailbox
    with mb.edit(masters["monthly-last-friday"]) as item:
        starts = item.original_starts(until=WINDOW.end)
        item.deleted.add(starts[6])
        item.modified[starts[7]] = Change(starts[7] + timedelta(days=3),
                                          starts[7] + timedelta(days=3, hours=1))  # fmt: skip
    with mb.edit(masters["daily-every-3-days-no-end"]) as item:
        later = item.original_starts(until=WINDOW.end + timedelta(days=30))[-1]
        assert later > WINDOW.end
        item.modified[later] = Change(b(2028, 3, 30, 7), b(2028, 3, 30, 8), subject="pulled in")
    with mb.edit(masters["weekly-mon-wed-fri-biweekly-pacific"]) as item:
        item.deleted.add(item.original_starts()[0])  # its first occurrence
    mark = len(server.requests)
    changed, token = ours(cal, token)
    assert "FindItem" not in server.operations()[mark:]
    assert changed == server_view(cal)
    pulled = (rid(later), utc(b(2028, 3, 30, 7)), utc(b(2028, 3, 30, 8)), "pulled in", "Room 4")
    assert pulled in changed, "moved into the window from past it, under its original start"
    assert ours(cal, None)[0] == changed


def test_a_window_that_cuts_through_series(server: EwsServer) -> None:
    """A narrow window (two months), with slack occurrences just outside it."""
    for name in (
        "monthly-on-the-31st",
        "weekly-tue-thu-across-berlin-dst",
        "monthly-last-friday",
        "daily-across-berlin-dst",
        "yearly-second-tuesday-of-march-eastern",
    ):
        add_series(server, name, CASES[name])  # fmt: skip
    window = Window(datetime(2026, 10, 27, tzinfo=UTC), datetime(2027, 3, 10, 15, tzinfo=UTC),
                    "Europe/Berlin")  # fmt: skip
    cal = connect(server)
    mine, _ = ours(cal, None, window)
    assert mine == server_view(cal, window)


# --------------------------------------------------------- the reference itself


def _view_starts(server: EwsServer, case: Case, zone: ZoneInfo = BERLIN) -> list[str]:
    add_series(server, "s", case)
    starts = [o[1] for o in server_view(connect(server))]
    return sorted(f"{s.astimezone(zone):%Y-%m-%d %H:%M}" for s in starts if isinstance(s, datetime))


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (Case(absolute_monthly(31, count=5), b(2026, 10, 1, 18), 60),  # moved to the 31st
         ["2026-10-31 18:00", "2026-11-30 18:00", "2026-12-31 18:00", "2027-01-31 18:00",
          "2027-02-28 18:00"]),
        (Case(relative_monthly("Friday", "Last", until=date(2027, 2, 26)), b(2026, 11, 1, 16), 60),
         ["2026-11-27 16:00", "2026-12-25 16:00", "2027-01-29 16:00", "2027-02-26 16:00"]),
        (Case(relative_yearly("Tuesday", "Second", "March", count=2), b(2026, 10, 1, 10), 60),
         ["2027-03-09 10:00", "2028-03-14 10:00"]),
        (Case(absolute_yearly(29, "February", count=2), b(2027, 1, 1, 9), 60),
         ["2027-02-28 09:00", "2028-02-29 09:00"]),
        # every other week counts from the week of the start date (Mon 28 Dec - Sun 3 Jan)
        (Case(weekly("Monday", "Wednesday", interval=2, count=4), b(2027, 1, 1, 9), 60),
         ["2027-01-11 09:00", "2027-01-13 09:00", "2027-01-25 09:00", "2027-01-27 09:00"]),
        (Case(relative_monthly("Weekday", "First", 2, count=3), b(2027, 1, 1, 9), 60),
         ["2027-01-01 09:00", "2027-03-01 09:00", "2027-05-03 09:00"]),
        (Case(relative_monthly("WeekendDay", "Last", count=2), b(2027, 1, 1, 9), 60),
         ["2027-01-31 09:00", "2027-02-28 09:00"]),
        (Case(daily(count=3), b(2026, 10, 24, 9), 60),  # 25 Oct: CEST → CET
         ["2026-10-24 09:00", "2026-10-25 09:00", "2026-10-26 09:00"]),
    ],
)  # fmt: skip
def test_the_servers_view_matches_hand_computed_dates(
    server: EwsServer, case: Case, expected: list[str]
) -> None:
    assert _view_starts(server, case) == expected


def test_a_deleted_and_a_moved_occurrence_in_the_servers_view(server: EwsServer) -> None:
    case = Case(relative_monthly("Friday", "Last", count=4), b(2026, 10, 30, 16), 60,
                moved={1: timedelta(days=-2)}, deleted=(2,))  # fmt: skip
    assert _view_starts(server, case) == ["2026-10-30 16:00", "2026-11-25 16:00",
                                          "2027-01-29 16:00"]  # fmt: skip


_EXCHANGELIB = {
    "daily-every-3-days-no-end": (DailyPattern(interval=3), NoEndPattern),
    "daily-every-2-days-until": (DailyPattern(interval=2), EndDatePattern),
    "weekly-mon-wed-fri-biweekly-pacific": (
        WeeklyPattern(interval=2, weekdays=[1, 3, 5], first_day_of_week=7), EndDatePattern),
    "monthly-on-the-31st": (AbsoluteMonthlyPattern(interval=1, day_of_month=31), NumberedPattern),
    "monthly-last-friday": (RelativeMonthlyPattern(interval=1, weekday=5, week_number=5),
                            NoEndPattern),
    "monthly-second-weekend-day": (RelativeMonthlyPattern(interval=1, weekday=10, week_number=2),
                                   EndDatePattern),
    "yearly-29-february": (AbsoluteYearlyPattern(day_of_month=29, month=2), NoEndPattern),
    "yearly-second-tuesday-of-march-eastern": (
        RelativeYearlyPattern(weekday=2, week_number=2, month=3), NumberedPattern),
}  # fmt: skip


@pytest.mark.parametrize("name", list(_EXCHANGELIB))
def test_recurrence_xml_reads_as_exchangelib_expects(server: EwsServer, name: str) -> None:
    case = CASES[name]
    master = add_series(server, name, case)
    cal = connect(server)
    (item,) = cal._mailbox().fetch(ids=[(master.item_id, master.change_key)],
                                   only_fields=["recurrence", "first_occurrence",
                                                "last_occurrence", "type"])  # fmt: skip
    pattern, boundary = _EXCHANGELIB[name]
    assert item.type == "RecurringMaster"
    assert item.recurrence.pattern == pattern
    assert type(item.recurrence.boundary) is boundary
    assert item.recurrence.boundary.start == case.start.date()
    if case.recurrence.count:
        assert item.recurrence.boundary.number == case.recurrence.count
    if case.recurrence.end_date:
        assert item.recurrence.boundary.end == case.recurrence.end_date
    kept = [o for o in master.original_starts() if o not in master.deleted]
    assert item.first_occurrence.original_start == kept[0]
    if boundary is NoEndPattern:
        assert item.last_occurrence is None
    else:
        assert item.last_occurrence.original_start == kept[-1]


@pytest.mark.parametrize(
    ("pattern", "boundary", "expected"),
    [
        (RelativeYearlyPattern(weekday=2, week_number=2, month=3),
         lambda d: NumberedPattern(start=d, number=2), relative_yearly("Tuesday", "Second", "March",
                                                                       count=2)),
        (WeeklyPattern(interval=2, weekdays=[1, 5], first_day_of_week=7),
         lambda d: EndDatePattern(start=d, end=date(2027, 2, 1)),
         weekly("Monday", "Friday", interval=2, first_day="Sunday", until=date(2027, 2, 1))),
        (AbsoluteMonthlyPattern(interval=1, day_of_month=31), lambda d: NoEndPattern(start=d),
         absolute_monthly(31)),
    ],
)  # fmt: skip
def test_a_series_created_through_exchangelib(
    server: EwsServer, pattern: object, boundary: Callable[[date], object], expected: Recurrence
) -> None:
    """CreateItem with a Recurrence: the server stores the pattern exchangelib wrote, moves
    the master to its first occurrence, and expands it as the series made directly."""
    cal = connect(server)
    account = cal._mailbox()
    zone = EWSTimeZone("Europe/Berlin")
    start = EWSDateTime(2026, 10, 20, 9, tzinfo=zone)
    CalendarItem(
        account=account, folder=cal._calendar(), subject="Created", uid="created",
        start=start, end=start + timedelta(hours=1),
        recurrence=EwsRecurrence(pattern=pattern, boundary=boundary(date(2026, 10, 20))),
    ).save()  # fmt: skip
    master = server.mailbox.by_uid("created")
    assert master.recurrence == replace(expected, start_date=date(2026, 10, 20))
    assert master.start == master.original_starts()[0] >= datetime(2026, 10, 20, 7, tzinfo=UTC)
    assert ours(connect(server), None)[0] == server_view(cal)


def test_invalid_recurrences_are_refused() -> None:
    with pytest.raises(ValueError):
        relative_monthly("Friday", "Fifth")
    with pytest.raises(ValueError):
        weekly()
    with pytest.raises(ValueError):
        absolute_yearly(32, "March")
    with pytest.raises(ValueError):
        daily(count=2, until=date(2027, 1, 1))
