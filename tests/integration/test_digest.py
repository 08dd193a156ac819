"""The assistant's daily digest: sections, held changes, idempotency, DST, locale, privacy.

Real store (SQLite and PostgreSQL), calendars synced from ICS files, changes dispatched
by the real ``dispatch``; time is injected.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from huey import MemoryHuey
from sqlalchemy import select, update

from assistant.bootstrap import Service, build
from assistant.services.digest import (
    DigestReport,
    digest,
    digest_command,
    digest_date,
    next_digest_at,
    pairs_due,
)
from assistant.services.notifications import dispatch
from assistant.services.pairs import add_account, add_pair
from assistant.services.priorities import add_rule
from assistant.services.sync import SyncPolicy, sync_calendar
from assistant.store.db import UnitOfWork
from assistant.store.tables import (
    Checkpoint,
    DelegatedTask,
    Message,
    OutboxEntry,
    Pair,
    ScheduleChange,
)
from config.settings import NotifySettings, Settings, load
from connectors.ics.feed import IcsFeed
from jobs import runtime, tasks
from tests.support.deps import deps_for

NOW = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)  # Tuesday 08:00 in Berlin: digest time
YESTERDAY = NOW - timedelta(days=1)  # the last digest
POLICY = SyncPolicy(horizon=timedelta(days=14))
NOTIFY = NotifySettings(coalesce_seconds=0, travel_buffer_minutes=30)
SETTINGS = Settings()


def at_time(uow: UnitOfWork, at: datetime) -> Service:
    """The service as it is at ``at``."""
    return Service(settings=SETTINGS, engine=uow.engine, uow=uow, clock=lambda: at)


def vevent(
    uid: str, start: str, end: str, summary: str, location: str = "", extra: str = ""
) -> str:
    loc = f"LOCATION:{location}\n" if location else ""
    return (
        f"BEGIN:VEVENT\nUID:{uid}\nDTSTART;TZID=Europe/Berlin:{start}\n"
        f"DTEND;TZID=Europe/Berlin:{end}\nSUMMARY:{summary}\n{loc}{extra}END:VEVENT\n"
    )


BOARD = vevent("board", "20261124T100000", "20261124T120000", "Board meeting", "Boardroom")
STRATEGY = vevent("strategy", "20261124T113000", "20261124T123000", "Strategy review", "Room 2")
CHECK = vevent(
    "cp-1",
    "20261124T150000",
    "20261124T153000",
    "Red Line: Q4 plan",
    "",
    "X-EXEC-ASSISTANT-CHECKPOINT:1:red_line\n",
)
DOCTOR = vevent(
    "doc", "20261124T170000", "20261124T180000", "Oncologist", "Clinic", "CLASS:PRIVATE\n"
)
LUNCH = vevent("lunch", "20261125T120000", "20261125T130000", "Investor lunch", "Café Central")
LUNCH_MOVED = LUNCH.replace("T120000", "T130000").replace("T130000\nSUM", "T140000\nSUM")
GYM = vevent("gym", "20261125T170000", "20261125T180000", "Gym", "Fitness First")
GYM_MOVED = GYM.replace("T170000", "T180000").replace("T180000\nSUM", "T190000\nSUM")
FAR = vevent("far", "20261126T090000", "20261126T100000", "Quarterly review")
FAR_MOVED = FAR.replace("T090000", "T093000")


@dataclass
class World:
    uow: UnitOfWork
    path: Path
    account_id: int
    pair_id: int

    def write(self, *events: str) -> None:
        self.path.write_text(
            "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//t//EN\n" + "".join(events) + "END:VCALENDAR\n"
        )

    def change(self, at: datetime, *events: str) -> None:
        """The calendar changes at ``at``; the change is dispatched at once."""
        self.write(*events)
        sync_calendar(self.uow, self.account_id, IcsFeed(str(self.path)), at, POLICY)
        dispatch(self.uow, self.pair_id, at, NOTIFY)

    def digest(self, at: datetime) -> DigestReport:
        return digest(at_time(self.uow, at), self.pair_id)

    def set_pair(self, **values: Any) -> None:
        with self.uow.begin() as s:
            s.execute(update(Pair).where(Pair.id == self.pair_id).values(**values))

    def pair(self) -> Pair:
        with self.uow.read() as s:
            pair = s.get(Pair, self.pair_id)
            assert pair is not None
            return pair

    def digests(self) -> list[OutboxEntry]:
        with self.uow.read() as s:
            return list(
                s.scalars(
                    select(OutboxEntry)
                    .where(OutboxEntry.idempotency_key.startswith("digest:"))
                    .order_by(OutboxEntry.id)
                )
            )

    def states(self) -> dict[str, str]:
        with self.uow.read() as s:
            return {r.summary: r.state for r in s.scalars(select(ScheduleChange))}

    def add(self, *rows: Any) -> None:
        with self.uow.begin() as s:
            s.add_all(rows)


def new_world(uow: UnitOfWork, tmp_path: Path, **pair: Any) -> World:
    p = add_pair(
        deps_for(uow, NOW - timedelta(days=3)),
        name="alex",
        manager_name="Alex",
        manager_email="alex@example.com",
        assistant_email="sam@example.com",
        timezone="Europe/Berlin",
        **pair,
    )
    path = tmp_path / "cal.ics"
    account = add_account(
        deps_for(uow, NOW - timedelta(days=3)),
        pair="alex",
        name="work",
        provider="ics",
        settings={"location": str(path)},
    )
    w = World(uow, path, account.id, p.id)
    w.set_pair(digest_time="08:00")
    return w


def message(pair_id: int, mid: str, sent: datetime, subject: str, *, from_manager: bool = False,
            reply_to: str = "") -> Message:  # fmt: skip
    sender, to = ("alex@example.com", "sam@example.com")
    if from_manager is False:
        sender, to = to, sender
    return Message(
        pair_id=pair_id, message_id=mid, subject=subject, from_addr=sender, to_addrs=[to],
        sent_at=sent, in_reply_to=reply_to, references=[reply_to] if reply_to else [],
        direction="manager_to_assistant" if from_manager else "assistant_to_manager",
    )  # fmt: skip


def task(pair_id: int, title: str, state: str, *lines: tuple[str, datetime]) -> DelegatedTask:
    t = DelegatedTask(
        pair_id=pair_id, title=title, delegator="alex@example.com", delegate="kim@example.com",
        term_start=NOW - timedelta(days=5), deadline=max(at for _, at in lines), state=state,
        created_at=NOW - timedelta(days=5), updated_at=NOW - timedelta(days=5),
    )  # fmt: skip
    for kind, at in lines:
        t.checkpoints.append(
            Checkpoint(
                kind=kind,
                line_at=at,
                start_at=at,
                end_at=at + timedelta(minutes=30),
                event_uid=f"{title}-{kind}",
                state="written",
            )
        )
    return t


@pytest.fixture
def world(uow: UnitOfWork, tmp_path: Path) -> World:
    """A Tuesday: four events today (a conflict, our checkpoint, a private one), two
    tomorrow, one after; a change sent before the last digest, one since, one held;
    messages answered, open and overdue; tasks with lines near and far."""
    w = new_world(uow, tmp_path)
    base = NOW - timedelta(days=2, hours=1)  # Sunday
    w.write(BOARD, STRATEGY, CHECK, DOCTOR, LUNCH, GYM, FAR)
    sync_calendar(uow, w.account_id, IcsFeed(str(w.path)), base, POLICY)
    w.change(base + timedelta(hours=1), BOARD, STRATEGY, CHECK, DOCTOR, LUNCH, GYM, FAR_MOVED)
    w.set_pair(last_digest_at=YESTERDAY)
    w.change(
        YESTERDAY + timedelta(hours=3), BOARD, STRATEGY, CHECK, DOCTOR, LUNCH_MOVED, GYM, FAR_MOVED
    )
    add_rule(deps_for(uow, YESTERDAY), pair="alex", kind="keyword", pattern="gym", level="low")
    w.change(
        YESTERDAY + timedelta(hours=4),
        BOARD,
        STRATEGY,
        CHECK,
        DOCTOR,
        LUNCH_MOVED,
        GYM_MOVED,
        FAR_MOVED,
    )
    assert w.states() == {"Quarterly review": "sent", "Investor lunch": "sent", "Gym": "digest"}
    monday_4pm = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
    w.add(
        message(w.pair_id, "<contract@x>", monday_4pm, "Contract for signature"),
        message(w.pair_id, "<travel@x>", YESTERDAY + timedelta(hours=2), "Travel plans"),
        message(
            w.pair_id,
            "<travel-re@x>",
            YESTERDAY + timedelta(hours=2, minutes=10),
            "Re: Travel plans",
            from_manager=True,
            reply_to="<travel@x>",
        ),
        message(w.pair_id, "<early@x>", NOW - timedelta(minutes=10), "Early question"),
        task(
            w.pair_id,
            "Q4 plan",
            "in_progress",
            ("red_line", datetime(2026, 11, 24, 14, 0, tzinfo=UTC)),
            ("dead_line", datetime(2026, 11, 27, 16, 0, tzinfo=UTC)),
        ),
        task(
            w.pair_id,
            "Hire analyst",
            "briefed",
            ("dead_line", datetime(2026, 11, 25, 16, 0, tzinfo=UTC)),
        ),
        task(
            w.pair_id,
            "Old task",
            "accepted",
            ("red_line", datetime(2026, 11, 24, 13, 0, tzinfo=UTC)),
        ),
    )
    return w


def test_the_digest_has_every_section(world: World) -> None:
    report = world.digest(NOW)
    assert report.queued and not report.already_sent
    [entry] = world.digests()
    assert entry.idempotency_key == f"digest:{world.pair_id}:2026-11-24:sam@example.com:smtp"
    assert entry.recipient == "sam@example.com"
    assert entry.subject == (
        "Daily digest for Alex, Tue 24 Nov: 4 meetings today, 2 changes, 1 conflict, "
        "1 waiting past SLA"
    )
    text = entry.body_text
    today, rest = text.split("== Tomorrow, Wed 25 Nov ==")
    tomorrow, rest = rest.split("== Changes since Mon 23 Nov 08:00 ==")
    changes, rest = rest.split("== Conflicts today and tomorrow ==")
    conflicts, rest = rest.split(
        "== Your messages waiting for an answer past the SLA (30 working min) =="
    )
    overdue, tasks_part = rest.split("== Red Lines and Dead Lines in the next two working days ==")
    assert "== Today, Tue 24 Nov ==" in today
    assert "* 10:00–12:00  Board meeting @ Boardroom" in today
    assert "* 11:30–12:30  Strategy review @ Room 2" in today
    assert "* 15:00–15:30  [our checkpoint] Red Line: Q4 plan" in today
    assert "* 17:00–18:00  Busy (private)" in today
    assert "* 13:00–14:00  Investor lunch @ Café Central" in tomorrow
    assert "* 18:00–19:00  Gym @ Fitness First" in tomorrow
    assert "Quarterly review" not in text, "Thursday's event and the change before the last digest"
    # the change sent yesterday and the one held for the digest, each once
    assert changes.count("Investor lunch") == 1 and changes.count("Gym") == 1
    assert "Moved: Investor lunch\n" in changes
    assert "Moved: Gym (new to you: held for the digest)" in changes
    assert "Time: Wed 25 Nov 17:00–18:00 -> Wed 25 Nov 18:00–19:00" in changes
    assert conflicts.strip() == (
        "! Board meeting, Tue 24 Nov 10:00–12:00 overlaps Strategy review, Tue 24 Nov 11:30–12:30"
    )
    assert '"Contract for signature", sent Mon 23 Nov 16:00: waiting 2 h 0 min' in overdue
    assert "Travel plans" not in overdue and "Early question" not in overdue
    assert "Red Line Tue 24 Nov 15:00: Q4 plan (kim@example.com)" in tasks_part
    assert "Dead Line Wed 25 Nov 17:00: Hire analyst" in tasks_part
    assert "Fri 27 Nov" not in tasks_part and "Old task" not in tasks_part
    assert "&#9873; Our checkpoint:" in entry.body_html and "Board meeting" in entry.body_html
    assert entry.payload["kind"] == "digest"
    assert entry.payload["counts"] == {"today": 4, "tomorrow": 2, "changes": 2, "conflicts": 1,
                                       "overdue": 1, "tasks": 2}  # fmt: skip
    # afterwards: the held change is sent, the digest time recorded
    assert world.states()["Gym"] == "sent"
    assert world.pair().last_digest_at == NOW
    assert report.next_at == NOW + timedelta(days=1)


def test_private_events_are_busy_time_unless_the_manager_allows(world: World) -> None:
    world.digest(NOW)
    [entry] = world.digests()
    for body in (entry.body_text, entry.body_html, json.dumps(entry.payload, ensure_ascii=False)):
        assert "Oncologist" not in body and "Clinic" not in body
    assert "Busy (private)" in entry.body_html
    [doc] = [e for e in entry.payload["agenda"]["2026-11-24"] if e["uid"] == "doc"]
    assert doc["private"] is True and "summary" not in doc
    world.set_pair(share_private_details=True)
    svc = Service(settings=SETTINGS, engine=world.uow.engine, uow=world.uow, clock=lambda: NOW)
    shown = digest_command(svc, "alex").to_dict()  # `assistant digest`: a preview, nothing queued
    assert shown["sent"] is False and shown["already_sent"] is True
    assert "* 17:00–18:00  Oncologist @ Clinic" in shown["text"]
    assert len(world.digests()) == 1


def test_held_changes_are_reported_once_then_marked_sent(world: World) -> None:
    world.digest(NOW)
    assert world.states()["Gym"] == "sent"
    # later that day another low-priority change is held: it waits for tomorrow's digest
    gym_later = GYM_MOVED.replace("T180000", "T190000").replace("T190000\nSUM", "T200000\nSUM")
    world.change(
        NOW + timedelta(hours=3), BOARD, STRATEGY, CHECK, DOCTOR, LUNCH_MOVED, gym_later, FAR_MOVED
    )
    with world.uow.read() as s:
        held = list(s.scalars(select(ScheduleChange).where(ScheduleChange.state == "digest")))
    assert len(held) == 1
    tomorrow = world.digest(NOW + timedelta(days=1))
    assert tomorrow.queued and tomorrow.held_sent == 1
    second = world.digests()[1]
    changes = second.body_text.split("== Changes since Tue 24 Nov 08:00 ==")[1].split("==")[0]
    assert changes.count("Gym") == 1, "yesterday's report of the first gym change is not repeated"
    assert "Wed 25 Nov 18:00–19:00 -> Wed 25 Nov 19:00–20:00" in changes
    assert "Investor lunch" not in changes
    assert second.payload["change_ids"] == [held[0].id]
    third = world.digest(NOW + timedelta(days=2))
    assert "No changes." in world.digests()[2].body_text
    assert third.held_sent == 0


def test_a_digest_run_twice_the_same_day_is_one_message(world: World) -> None:
    first = world.digest(NOW)
    again = world.digest(NOW + timedelta(minutes=5))
    assert (first.queued, again.queued, again.already_sent) == (True, False, True)
    assert again.outbox_ids == [] and again.message is None
    # a change held after the digest is not swallowed by a late second run
    world.change(
        NOW + timedelta(hours=1), BOARD, STRATEGY, CHECK, DOCTOR, LUNCH_MOVED, GYM, FAR_MOVED
    )
    assert world.states()["Gym"] == "digest"
    assert world.digest(NOW + timedelta(hours=2)).already_sent
    # after midnight but before the digest time it is still that day's digest
    small_hours = datetime(2026, 11, 24, 23, 30, tzinfo=UTC)  # 00:30 Wednesday in Berlin
    assert digest_date(world.pair(), small_hours).isoformat() == "2026-11-24"
    assert world.digest(small_hours).already_sent
    assert world.states()["Gym"] == "digest"
    assert len(world.digests()) == 1
    assert world.pair().last_digest_at == NOW
    assert world.digest(NOW + timedelta(days=1)).held_sent == 1
    assert len(world.digests()) == 2


def test_the_safety_net_finds_overdue_digests(world: World) -> None:
    assert pairs_due(at_time(world.uow, NOW - timedelta(minutes=1))) == []  # yesterday's went
    assert pairs_due(at_time(world.uow, NOW)) == [world.pair_id]
    world.digest(NOW)
    assert pairs_due(at_time(world.uow, NOW + timedelta(minutes=1))) == []
    assert pairs_due(at_time(world.uow, NOW + timedelta(days=1))) == [world.pair_id]
    world.set_pair(digest_time="")
    assert pairs_due(at_time(world.uow, NOW + timedelta(days=1))) == []
    # moved to the evening after today's digest went: today's is not sent again
    world.set_pair(digest_time="18:00")
    assert pairs_due(at_time(world.uow, NOW + timedelta(hours=11))) == []
    assert pairs_due(at_time(world.uow, NOW + timedelta(days=1, hours=11))) == [world.pair_id]


def test_russian(world: World) -> None:
    world.set_pair(locale="ru", assistant_timezone="Europe/Moscow")
    at = NOW - timedelta(hours=2)  # 08:00 in Moscow
    assert world.digest(at).queued
    [entry] = world.digests()
    assert entry.subject == (
        "Сводка на вт 24 ноября (Alex): встреч сегодня — 4, изменений — 2, конфликтов — 1, "
        "без ответа сверх срока — 1"
    )
    text = entry.body_text
    assert "Время указано по зоне Berlin." in text
    assert "== Сегодня, вт 24 ноября ==" in text and "== Завтра, ср 25 ноября ==" in text
    assert "* 10:00–12:00  Board meeting @ Boardroom" in text
    assert "  ваше время: вт 24 ноября 12:00–14:00" in text
    assert "[наша контрольная точка] Red Line: Q4 plan" in text
    assert "Занят (личное)" in text and "Oncologist" not in text
    assert "== Изменения с пн 23 ноября 08:00 ==" in text  # in the zone of the header
    assert "Перенесена: Gym (новое для вас: ждало сводки)" in text
    assert "«Board meeting, вт 24 ноября 10:00–12:00» пересекается с «Strategy review" in text
    assert "«Contract for signature», отправлено пн 23 ноября 16:00: ждёт 2 ч 0 мин" in text
    assert "Красная линия вт 24 ноября 15:00: Q4 plan" in text
    assert "Мёртвая линия ср 25 ноября 17:00: Hire analyst" in text
    assert '<html lang="ru">' in entry.body_html and "Сегодня" in entry.body_html


def test_an_empty_day_says_so_in_every_section(uow: UnitOfWork, tmp_path: Path) -> None:
    w = new_world(uow, tmp_path)
    assert w.digest(NOW).queued
    [entry] = w.digests()
    assert entry.subject == "Daily digest for Alex, Tue 24 Nov: 0 meetings today"
    text = entry.body_text
    assert text.count("No meetings.") == 2
    assert "== Changes since the last 24 hours ==" in text and "No changes." in text
    for line in ("No conflicts.", "Nothing is waiting past the SLA.",
                 "None in the next two working days."):  # fmt: skip
        assert line in text
    assert entry.body_html.count("<p>No meetings.</p>") == 2
    w.set_pair(locale="ru")
    report = w.digest(NOW + timedelta(days=1))
    assert report.message is not None
    ru = report.message.text
    assert "Встреч нет." in ru and "Изменений нет." in ru and "Конфликтов нет." in ru
    assert "Сообщений без ответа сверх срока нет." in ru
    assert "В ближайшие два рабочих дня линий нет." in ru


# ---------------------------------------------------------------------------------- DST

OCT_SAT = datetime(2026, 10, 24, 6, 0, tzinfo=UTC)  # 08:00 CEST; the clocks go back Sunday


def test_next_digest_time_keeps_local_time_across_the_dst_change(uow: UnitOfWork,
                                                                  tmp_path: Path) -> None:  # fmt: skip
    pair = new_world(uow, tmp_path).pair()
    assert next_digest_at(pair, OCT_SAT - timedelta(seconds=1)) == OCT_SAT
    sunday = next_digest_at(pair, OCT_SAT)
    assert sunday == datetime(2026, 10, 25, 7, 0, tzinfo=UTC), "08:00 CET, 25 hours later"
    assert next_digest_at(pair, sunday) == datetime(2026, 10, 26, 7, 0, tzinfo=UTC)
    # a time the autumn fold repeats: the first of the two, and once that day
    pair.digest_time = "02:30"
    first = next_digest_at(pair, datetime(2026, 10, 25, 0, 0, tzinfo=UTC))
    assert first == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    assert next_digest_at(pair, first) == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)
    # a time the spring gap skips: moved forward by the gap
    pair.digest_time = "02:30"
    spring = next_digest_at(pair, datetime(2026, 3, 28, 12, 0, tzinfo=UTC))
    assert spring == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 CEST
    pair.digest_time = ""
    assert next_digest_at(pair, OCT_SAT) is None


def test_the_digest_on_the_25_hour_day(uow: UnitOfWork, tmp_path: Path) -> None:
    w = new_world(uow, tmp_path)
    late = vevent("late", "20261025T233000", "20261025T235000", "Late call")
    night = vevent("night", "20261026T003000", "20261026T013000", "Night flight")
    before = vevent("sat", "20261024T233000", "20261024T235000", "Saturday party")
    w.write(late, night, before)
    sync_calendar(uow, w.account_id, IcsFeed(str(w.path)), OCT_SAT, POLICY)
    w.set_pair(last_digest_at=OCT_SAT)
    sunday = datetime(2026, 10, 25, 7, 0, tzinfo=UTC)
    assert pairs_due(at_time(uow, sunday - timedelta(minutes=1))) == [], "07:59 CET: not yet"
    assert pairs_due(at_time(uow, sunday)) == [w.pair_id]
    report = w.digest(sunday)
    assert report.date is not None and report.date.isoformat() == "2026-10-25"
    assert report.next_at == datetime(2026, 10, 26, 7, 0, tzinfo=UTC)
    [entry] = w.digests()
    today, tomorrow = entry.body_text.split("== Tomorrow, Mon 26 Oct ==")
    assert "== Today, Sun 25 Oct ==" in today
    assert "* 23:30–23:50  Late call" in today and "Saturday party" not in today
    assert "* 00:30–01:30  Night flight" in tomorrow.split("== Changes")[0]
    assert entry.payload["counts"]["today"] == 1


# ---------------------------------------------------------------------------------- jobs


@pytest.fixture
def jobs_on(
    world: World, database_url: str, tmp_path: Path
) -> Iterator[tuple[MemoryHuey, list[datetime]]]:
    clock = [NOW]
    settings = load(None, data_dir=str(tmp_path / "data"), database={"url": database_url})
    svc = build(settings, clock=lambda: clock[0], channels={})
    huey = MemoryHuey(name="digest-test", utc=True)
    runtime.install(svc)
    tasks.register(huey, periodic=False)
    try:
        yield huey, clock
    finally:
        runtime.install(None)
        svc.engine.dispose()


def planned(huey: MemoryHuey) -> list[Any]:
    """send_digest runs queued with an ETA (the consumer moves them to its schedule)."""
    return [t for t in huey.pending() + huey.scheduled() if t.name == "send_digest" and t.eta]


def test_the_job_sends_and_schedules_itself_once(
    world: World, jobs_on: tuple[MemoryHuey, list[datetime]]
) -> None:
    huey, clock = jobs_on
    result = tasks.send_digest(world.pair_id)
    assert result["queued"] is True
    [scheduled] = planned(huey)
    assert scheduled.name == "send_digest"
    assert scheduled.eta == (NOW + timedelta(days=1)).replace(tzinfo=None)
    assert scheduled.args == (world.pair_id, (NOW + timedelta(days=1)).isoformat())
    # the tick's safety net runs it again (or a retry does): no second chain, no second mail
    assert tasks.send_digest(world.pair_id)["already_sent"] is True
    assert len(planned(huey)) == 1
    assert tasks.keep_digests() == []
    # the next day the chain's own run sends and plans the day after
    clock[0] = NOW + timedelta(days=1)
    assert tasks.send_digest(*scheduled.args)["queued"] is True
    assert len(world.digests()) == 2
    etas = sorted(t.eta for t in planned(huey))
    assert etas[-1] == (NOW + timedelta(days=2)).replace(tzinfo=None)


def test_the_tick_queues_overdue_digests(
    world: World, jobs_on: tuple[MemoryHuey, list[datetime]]
) -> None:
    huey, clock = jobs_on
    clock[0] = NOW + timedelta(minutes=3)  # the chain was lost
    tasks.tick()
    queued = [t for t in huey.pending() if t.name == "send_digest"]
    assert [t.args for t in queued] == [(world.pair_id,)]
    assert huey.execute(queued[0])["queued"] is True
    assert tasks.keep_digests() == []
    world.set_pair(digest_time="")
    assert tasks.send_digest(world.pair_id) == {"pair_id": world.pair_id, "skipped": "no digest"}
