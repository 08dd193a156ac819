"""From detected changes to messages: coalescing, priorities, quiet hours, conflicts.

Real store (SQLite and PostgreSQL), real sync from ICS files; time is injected.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from assistant.domain.model import EventData
from assistant.services.notifications import DispatchReport, dispatch, pairs_with_pending
from assistant.services.pairs import add_account, add_pair
from assistant.services.priorities import add_rule, list_rules, remove_rule
from assistant.services.sync import SyncPolicy, sync_calendar
from assistant.store.db import UnitOfWork
from assistant.store.tables import OutboxEntry, Pair, ScheduleChange
from config.settings import NotifySettings
from connectors.base import CalendarDelta, CalendarResource, Window
from connectors.ics.feed import IcsFeed
from tests.support.deps import deps_for

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)  # Tuesday 10:00 in Berlin
POLICY = SyncPolicy(horizon=timedelta(days=14))
SETTINGS = NotifySettings(coalesce_seconds=20, travel_buffer_minutes=30)


def vevent(uid: str, start: str, end: str, summary: str, location: str = "", extra: str = "") -> str:
    loc = f"LOCATION:{location}\n" if location else ""
    return (
        f"BEGIN:VEVENT\nUID:{uid}\nDTSTART;TZID=Europe/Berlin:{start}\nDTEND;TZID=Europe/Berlin:{end}\n"
        f"SUMMARY:{summary}\n{loc}{extra}END:VEVENT\n"
    )


BOARD = vevent("board", "20261126T100000", "20261126T120000", "Board meeting", "Boardroom")
LUNCH = vevent("lunch", "20261126T130000", "20261126T140000", "Investor lunch", "Café Central")
CEO = vevent("ceo", "20261127T090000", "20261127T093000", "CEO sync", "",
             "ORGANIZER:mailto:ceo@bigcorp.com\n")  # fmt: skip
GYM = vevent("gym", "20261127T180000", "20261127T190000", "Gym", "Fitness First")


@dataclass
class World:
    uow: UnitOfWork
    path: Path
    account_id: int
    pair_id: int

    def write(self, *events: str) -> None:
        self.path.write_text("BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//t//EN\n" + "".join(events)
                             + "END:VCALENDAR\n")  # fmt: skip

    def sync(self, at: datetime) -> int:
        return len(sync_calendar(self.uow, self.account_id, IcsFeed(str(self.path)), at, POLICY).changes)

    def dispatch(self, at: datetime, **kw: Any) -> DispatchReport:
        return dispatch(self.uow, self.pair_id, at, kw.pop("settings", SETTINGS), **kw)

    def outbox(self) -> list[OutboxEntry]:
        with self.uow.read() as s:
            return list(s.scalars(select(OutboxEntry).order_by(OutboxEntry.id)))

    def states(self) -> list[str]:
        with self.uow.read() as s:
            return list(s.scalars(select(ScheduleChange.state).order_by(ScheduleChange.id)))

    def set_pair(self, **values: Any) -> None:
        with self.uow.begin() as s:
            s.execute(update(Pair).where(Pair.id == self.pair_id).values(**values))


@pytest.fixture
def world(uow: UnitOfWork, tmp_path: Path) -> World:
    pair = add_pair(deps_for(uow, NOW), name="alex", manager_name="Alex", manager_email="alex@example.com",
                    assistant_email="sam@example.com", timezone="Europe/Berlin")  # fmt: skip
    path = tmp_path / "cal.ics"
    account = add_account(deps_for(uow, NOW), pair="alex", name="work", provider="ics",
                          settings={"location": str(path)})  # fmt: skip
    w = World(uow, path, account.id, pair.id)
    w.write(BOARD, LUNCH, CEO, GYM)
    assert w.sync(NOW) == 0
    return w


def moved(event: str, old: str, new: str) -> str:
    return event.replace(old, new)


def test_a_burst_of_changes_is_one_message_after_the_window(world: World) -> None:
    world.write(moved(BOARD, "T100000", "T080000").replace("T120000", "T090000"), LUNCH, CEO, GYM)
    assert world.sync(NOW + timedelta(minutes=1)) == 1
    world.write(moved(BOARD, "T100000", "T080000").replace("T120000", "T090000"), CEO, GYM)
    assert world.sync(NOW + timedelta(minutes=1, seconds=10)) == 1
    early = world.dispatch(NOW + timedelta(minutes=1, seconds=15))
    assert early.outbox_ids == ()
    assert early.next_due == NOW + timedelta(minutes=1, seconds=30), "quiet for the window"
    assert world.dispatch(NOW + timedelta(minutes=1, seconds=20)).outbox_ids == ()
    report = world.dispatch(NOW + timedelta(minutes=1, seconds=30))
    assert (report.sent, len(report.outbox_ids)) == (2, 1)
    [entry] = world.outbox()
    assert "2 changes" in entry.subject
    assert "Board meeting" in entry.body_text and "Investor lunch" in entry.body_text
    assert world.states() == ["sent", "sent"]
    # Run again (a retried job, a second worker): nothing more.
    assert world.dispatch(NOW + timedelta(minutes=2)).outbox_ids == ()
    assert len(world.outbox()) == 1


def test_a_change_undone_within_the_window_sends_nothing(world: World) -> None:
    world.write(moved(BOARD, "T100000", "T150000").replace("T120000", "T170000"), LUNCH, CEO, GYM)
    world.sync(NOW + timedelta(minutes=1))
    world.write(BOARD, LUNCH, CEO, GYM)
    world.sync(NOW + timedelta(minutes=1, seconds=5))
    report = world.dispatch(NOW + timedelta(minutes=2))
    assert (report.sent, report.undone, report.outbox_ids) == (0, 2, ())
    assert world.outbox() == []
    assert world.states() == ["undone", "undone"]
    assert pairs_with_pending(world.uow) == []


def test_high_priority_goes_at_once_and_says_why(world: World) -> None:
    add_rule(deps_for(world.uow, NOW), pair="alex", kind="domain", pattern="bigcorp.com", level="high")
    world.write(BOARD, LUNCH, moved(CEO, "T090000", "T113000").replace("T093000", "T120000"), GYM)
    world.sync(NOW + timedelta(minutes=1))
    report = world.dispatch(NOW + timedelta(minutes=1))  # no waiting for the window
    assert len(report.outbox_ids) == 1
    [entry] = world.outbox()
    assert entry.subject.startswith("Urgent:")
    assert "[!]" in entry.body_text
    assert "with anyone at bigcorp.com" in entry.body_text
    assert entry.payload["priority"] == "high"


def test_low_priority_waits_for_the_digest(world: World) -> None:
    add_rule(deps_for(world.uow, NOW), pair="alex", kind="keyword", pattern="gym", level="low")
    world.write(BOARD, LUNCH, CEO, moved(GYM, "T180000", "T190000").replace("T190000\nSUM", "T200000\nSUM"))
    world.sync(NOW + timedelta(minutes=1))
    # Without a digest there is nowhere else for it to go: it is sent like a normal one.
    assert world.dispatch(NOW + timedelta(minutes=2)).sent == 1
    world.write(BOARD, LUNCH, CEO, GYM)
    world.set_pair(digest_time="08:00")
    world.sync(NOW + timedelta(minutes=3))
    report = world.dispatch(NOW + timedelta(minutes=4))
    assert (report.digest, report.sent) == (1, 0)
    assert world.states()[-1] == "digest"
    assert len(world.outbox()) == 1


def test_quiet_hours_hold_normal_changes_and_let_high_ones_through(world: World) -> None:
    world.set_pair(quiet_hours={"start": "20:00", "end": "08:00", "high_breaks_through": True})
    night = datetime(2026, 11, 24, 21, 30, tzinfo=UTC)  # 22:30 in Berlin
    world.write(moved(BOARD, "T100000", "T150000").replace("T120000", "T170000"), LUNCH, CEO, GYM)
    world.sync(night)
    held = world.dispatch(night + timedelta(minutes=5))
    assert held.outbox_ids == ()
    assert held.next_due == datetime(2026, 11, 25, 7, 0, tzinfo=UTC)  # 08:00 Berlin
    add_rule(deps_for(world.uow, NOW), pair="alex", kind="person", pattern="ceo@bigcorp.com", level="high")
    world.write(moved(BOARD, "T100000", "T150000").replace("T120000", "T170000"), LUNCH, GYM)
    world.sync(night + timedelta(minutes=6))
    through = world.dispatch(night + timedelta(minutes=6))
    assert through.sent == 2, "the high change takes the pending normal one with it"
    assert len(through.outbox_ids) == 1


def test_a_move_onto_another_meeting_is_flagged_with_both(world: World) -> None:
    # Board meeting moved to 12:30-13:30: overlaps the lunch at 13:00.
    world.write(moved(BOARD, "T100000", "T123000").replace("T120000", "T133000"), LUNCH, CEO, GYM)
    world.sync(NOW + timedelta(minutes=1))
    world.dispatch(NOW + timedelta(minutes=2))
    [entry] = world.outbox()
    assert entry.subject.endswith("(conflict)")
    assert "Conflict: overlaps Investor lunch" in entry.body_text
    with world.uow.read() as s:
        stored = s.scalars(select(ScheduleChange.conflicts)).one()
    assert stored[0]["kind"] == "overlap"
    assert stored[0]["other"]["uid"] == "lunch"


def test_no_time_to_travel_between_places_is_flagged(world: World) -> None:
    # Board meeting now ends 12:50 in the Boardroom; lunch at Café Central at 13:00.
    world.write(moved(BOARD, "T120000", "T125000"), LUNCH, CEO, GYM)
    world.sync(NOW + timedelta(minutes=1))
    world.dispatch(NOW + timedelta(minutes=2))
    [entry] = world.outbox()
    assert "only 10 min to get from Boardroom to Café Central" in entry.body_text


def test_russian_and_html_carry_the_same_warnings(world: World) -> None:
    world.set_pair(locale="ru")
    world.write(moved(BOARD, "T100000", "T123000").replace("T120000", "T133000"), LUNCH, CEO, GYM)
    world.sync(NOW + timedelta(minutes=1))
    world.dispatch(NOW + timedelta(minutes=2))
    [entry] = world.outbox()
    assert "(конфликт)" in entry.subject
    assert "пересекается с «Investor lunch»" in entry.body_text
    assert "&#9888;" in entry.body_html and "Investor lunch" in entry.body_html


class ListSource:
    """A provider that says who changed each event (as EWS and Graph do)."""

    def __init__(self, events: list[EventData]) -> None:
        self.events = events

    def changes(self, token: str | None, window: Window) -> CalendarDelta:
        res = tuple(CalendarResource(f"h-{e.uid}", "1", (e,)) for e in self.events)
        return CalendarDelta(full=True, resources=res, token="t")


@pytest.mark.parametrize("mode", ["mark", "suppress"])
def test_changes_the_assistant_made(uow: UnitOfWork, mode: str) -> None:
    pair = add_pair(deps_for(uow, NOW), name="p", manager_email="alex@example.com", assistant_email="sam@example.com")  # fmt: skip
    account = add_account(deps_for(uow, NOW), pair="p", name="ews", provider="ics", settings={})
    start = NOW + timedelta(days=1)
    a = EventData(uid="a", start=start, end=start + timedelta(hours=1), summary="Dentist")
    sync_calendar(uow, account.id, ListSource([a]), NOW, POLICY)
    b = EventData(uid="a", start=start + timedelta(hours=2), end=start + timedelta(hours=3),
                  summary="Dentist", modified_by="Sam@example.com")  # fmt: skip
    sync_calendar(uow, account.id, ListSource([b]), NOW + timedelta(minutes=1), POLICY)
    report = dispatch(uow, pair.id, NOW + timedelta(minutes=2), NotifySettings(assistant_changes=mode))  # type: ignore[arg-type]
    with uow.read() as s:
        entries = list(s.scalars(select(OutboxEntry)))
    if mode == "suppress":
        assert (report.suppressed, entries) == (1, [])
    else:
        assert len(entries) == 1
        assert "(made by you)" in entries[0].body_text


def test_two_workers_dispatching_at_once_make_one_message(world: World) -> None:
    world.write(moved(BOARD, "T100000", "T150000").replace("T120000", "T170000"), LUNCH, CEO, GYM)
    world.sync(NOW + timedelta(minutes=1))
    reports: list[DispatchReport] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            reports.append(world.dispatch(NOW + timedelta(minutes=2)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(r.sent for r in reports) == 1
    assert len(world.outbox()) == 1


def test_priority_rules_are_listed_for_the_assistant(world: World) -> None:
    add_rule(deps_for(world.uow, NOW), pair="alex", kind="keyword", pattern="gym", level="low")
    rid = add_rule(deps_for(world.uow, NOW), pair="alex", kind="protected", pattern="mon-fri 07:00-09:00",
                   level="high", note="school run")  # fmt: skip
    again = add_rule(deps_for(world.uow, NOW), pair="alex", kind="keyword", pattern="gym", level="normal")
    listed = list_rules(deps_for(world.uow), "alex")
    assert [r.text for r in listed] == [
        "high: touches mon-fri 07:00-09:00 (school run)",
        "normal: mentions gym",
    ]
    assert again != rid
    remove_rule(deps_for(world.uow), rid, "alex")
    assert [r.pattern for r in list_rules(deps_for(world.uow), "alex")] == ["gym"]
    with pytest.raises(LookupError):
        remove_rule(deps_for(world.uow), rid, "alex")
    with pytest.raises(ValueError, match="not an email"):
        add_rule(deps_for(world.uow, NOW), pair="alex", kind="person", pattern="bob", level="high")


def test_machine_readable_changes_hide_private_details(world: World) -> None:
    private = vevent("doc", "20261127T070000", "20261127T080000", "Oncologist", "Clinic", "CLASS:PRIVATE\n")
    world.write(BOARD, LUNCH, CEO, GYM, private)
    world.sync(NOW + timedelta(minutes=1))
    world.dispatch(NOW + timedelta(minutes=2))
    [entry] = world.outbox()
    [c] = entry.payload["changes"]
    assert c["kind"] == "created"
    assert c["after"]["private"] is True
    assert "summary" not in c["after"]
    assert "Oncologist" not in entry.body_text and "Clinic" not in entry.body_text
    assert "Busy (private)" in entry.body_text


def test_a_russian_assistant_reads_why_in_russian(world: World) -> None:
    world.set_pair(locale="ru")
    add_rule(deps_for(world.uow, NOW), pair="alex", kind="keyword", pattern="board", level="high",
             note="совет директоров")  # fmt: skip
    world.write(moved(BOARD, "T100000", "T150000").replace("T120000", "T170000"), LUNCH, CEO, GYM)
    world.sync(NOW + timedelta(minutes=1))
    world.dispatch(NOW + timedelta(minutes=1))
    [entry] = world.outbox()
    assert entry.subject.startswith("Срочно:")
    assert "Высокий приоритет: высокий: упоминает board (совет директоров)" in entry.body_text


# ------------------------------------------------ a window that would hold in vain

POLLED = {"ics": False, "caldav": False, "ews": True}


def pushes(provider: str) -> bool:
    return POLLED[provider]


def move_board(world: World, at: datetime) -> None:
    world.write(moved(BOARD, "T100000", "T150000").replace("T120000", "T170000"), LUNCH, CEO, GYM)
    assert world.sync(at) == 1


def test_a_polled_calendar_gets_its_message_at_once_when_no_poll_comes_before_the_window_ends(
    world: World,
) -> None:
    seen = NOW + timedelta(minutes=1)
    move_board(world, seen)
    report = world.dispatch(seen + timedelta(seconds=1), next_poll_at=seen + timedelta(seconds=30),
                            pushes=pushes)  # fmt: skip
    assert (report.sent, len(report.outbox_ids), report.next_due) == (1, 1, None)


def test_the_window_holds_when_a_poll_comes_before_it_ends(world: World) -> None:
    seen = NOW + timedelta(minutes=1)
    move_board(world, seen)
    report = world.dispatch(seen + timedelta(seconds=1), next_poll_at=seen + timedelta(seconds=2),
                            pushes=pushes)  # fmt: skip
    assert (report.outbox_ids, report.next_due) == ((), seen + timedelta(seconds=20))


def test_the_window_holds_to_the_end_of_the_quiet_period_when_calendars_are_repolled(
    world: World,
) -> None:
    seen = NOW + timedelta(minutes=1)
    move_board(world, seen)
    later = seen + timedelta(seconds=30)  # the next round after the window
    held = world.dispatch(seen + timedelta(seconds=1), next_poll_at=later, pushes=pushes,
                          repolled=True)  # fmt: skip
    assert (held.outbox_ids, held.next_due, held.settles_at) == ((), seen + timedelta(seconds=20),
                                                                 seen + timedelta(seconds=20))
    report = world.dispatch(seen + timedelta(seconds=20), next_poll_at=later, pushes=pushes,
                            repolled=True)  # fmt: skip
    assert (report.sent, len(report.outbox_ids), report.settles_at) == (1, 1, None)


def test_the_early_close_counts_from_the_newest_change(world: World) -> None:
    seen = NOW + timedelta(minutes=1)
    move_board(world, seen)
    world.write(moved(BOARD, "T100000", "T150000").replace("T120000", "T170000"), CEO, GYM)
    assert world.sync(seen + timedelta(seconds=10)) == 1
    # The next round (at 25 s) comes before the quiet period ends (at 30 s): it holds...
    held = world.dispatch(seen + timedelta(seconds=11), next_poll_at=seen + timedelta(seconds=25),
                          pushes=pushes)  # fmt: skip
    assert (held.outbox_ids, held.next_due) == ((), seen + timedelta(seconds=30))
    # ...and when the next round comes after it, nothing can join: out at once.
    report = world.dispatch(seen + timedelta(seconds=11), next_poll_at=seen + timedelta(seconds=40),
                            pushes=pushes)  # fmt: skip
    assert (report.sent, len(report.outbox_ids)) == (2, 1)


def test_the_window_holds_for_a_calendar_that_pushes_or_has_not_synced_yet(
    world: World, tmp_path: Path
) -> None:
    seen = NOW + timedelta(minutes=1)
    move_board(world, seen)
    later = seen + timedelta(seconds=30)
    held = world.dispatch(seen + timedelta(seconds=1), next_poll_at=later,
                          pushes=lambda provider: True)  # fmt: skip
    assert held.outbox_ids == () and held.next_due == seen + timedelta(seconds=20)
    # A second calendar of the pair, not synced since the change was seen: it may add to it.
    other = tmp_path / "home.ics"
    other.write_text("BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//t//EN\nEND:VCALENDAR\n")
    home = add_account(deps_for(world.uow, seen), pair="alex", name="home", provider="ics",
                       settings={"location": str(other)})  # fmt: skip
    assert world.dispatch(seen + timedelta(seconds=2), next_poll_at=later,
                          pushes=pushes).outbox_ids == ()  # fmt: skip
    sync_calendar(world.uow, home.id, IcsFeed(str(other)), seen + timedelta(seconds=3), POLICY)
    report = world.dispatch(seen + timedelta(seconds=4), next_poll_at=later, pushes=pushes)
    assert (report.sent, len(report.outbox_ids)) == (1, 1)


def test_assistant_changes_shows_where_each_notification_went(world: World) -> None:
    """``assistant changes`` (the CLI's read model) and the web's changes feed say the same:
    the message that told the assistant about each change (it said "—" for every change
    since notifications name their changes, not a batch)."""
    from assistant.services.queries import recent_changes

    world.write(moved(BOARD, "T100000", "T080000").replace("T120000", "T090000"), CEO, GYM)
    assert world.sync(NOW + timedelta(minutes=1)) == 2
    assert [r.notified for r in recent_changes(deps_for(world.uow), "alex")] == ["—", "—"]
    world.dispatch(NOW + timedelta(minutes=2))
    [entry] = world.outbox()
    rows = recent_changes(deps_for(world.uow), "alex")
    assert [r.notified for r in rows] == [f"{entry.channel}:{entry.state}"] * 2


def test_cli_and_web_read_one_change_feed(world: World) -> None:
    """``assistant changes`` and the web's changes page are one read model
    (``services.queries.change_feed``): the same changes, the same notifications, a private
    event masked the same way for the assistant; the manager sees its title."""
    from assistant.entrypoints.web import views
    from assistant.services.queries import recent_changes
    from assistant.services.users import PairAccess

    secret = vevent("doc", "20261127T150000", "20261127T160000", "Oncologist", "Clinic",
                    "CLASS:PRIVATE\n")  # fmt: skip
    world.write(moved(BOARD, "T100000", "T080000").replace("T120000", "T090000"), CEO, GYM, secret)
    assert world.sync(NOW + timedelta(minutes=1)) == 3
    world.dispatch(NOW + timedelta(minutes=2))
    deps = deps_for(world.uow)

    def access(role: str) -> PairAccess:
        return PairAccess(world.pair_id, world.pair_id, "alex", role, True, role == "manager",
                          "Europe/Berlin", "en")  # fmt: skip

    cli = recent_changes(deps, "alex")
    page = views.changes(deps, access("assistant"))  # type: ignore[arg-type]
    boss = views.changes(deps, access("manager"))  # type: ignore[arg-type]
    assert [c.id for c in cli] == [c["id"] for c in page["changes"]] == [c["id"] for c in boss["changes"]]
    assert [c.notified for c in cli] == [
        ", ".join(f"{n['channel']}:{n['state']}" for n in c["notifications"]) for c in page["changes"]
    ]
    assert all(c.notified != "—" for c in cli)
    assert [c.summary for c in cli] == [c["summary"] for c in page["changes"]]
    assert "Busy (private)" in [c.summary for c in cli]
    assert "Oncologist" not in repr(cli) + repr(page) and "Clinic" not in repr(cli) + repr(page)
    assert "Oncologist" in [c["summary"] for c in boss["changes"]]
