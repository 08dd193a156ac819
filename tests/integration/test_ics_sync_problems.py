"""What a calendar's text leaves out reaches the account and the sync result (issue 14,
points 6 and 7), through the ICS feed connector and the sync service on a real database."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from assistant.services.pairs import add_account, add_pair
from assistant.services.sync import SyncPolicy, sync_calendar
from assistant.store.db import UnitOfWork
from assistant.store.tables import Account, EventSnapshot
from connectors.ics.feed import IcsFeed
from tests.support.deps import deps_for

NOW = datetime(2030, 1, 2, 9, 0, tzinfo=UTC)

SERIES = (
    "BEGIN:VEVENT\r\nUID:weekly\r\nDTSTART;TZID=Europe/Berlin:20300107T100000\r\n"
    "DURATION:PT1H\r\nRRULE:FREQ=WEEKLY;COUNT=3\r\n"
    "RDATE;TZID=Europe/Berlin:20300201T100000,2030XX02T100000\r\nSUMMARY:Weekly\r\nEND:VEVENT\r\n"
)
GARBAGE_SEQUENCE = (
    "BEGIN:VEVENT\r\nUID:board\r\nSEQUENCE:final-v2\r\nDTSTART:20300110T140000Z\r\n"
    "DTEND:20300110T150000Z\r\nSUMMARY:Board\r\nEND:VEVENT\r\n"
)
TWINS = (
    "BEGIN:VEVENT\r\nUID:twin\r\nDTSTART:20300111T080000Z\r\nSUMMARY:Twin one\r\nEND:VEVENT\r\n"
    "BEGIN:VEVENT\r\nUID:twin\r\nDTSTART:20300112T080000Z\r\nSUMMARY:Twin two\r\nEND:VEVENT\r\n"
)
UIDLESS = (
    "BEGIN:VEVENT\r\nDTSTART:20300108T090000\r\nDTEND:20300108T093000\r\n"
    "RRULE:FREQ=DAILY;COUNT=2\r\nSUMMARY:Stand-up\r\nEND:VEVENT\r\n"
)
LATER = "BEGIN:VEVENT\r\nUID:later\r\nDTSTART:20300115T080000Z\r\nSUMMARY:Added\r\nEND:VEVENT\r\n"


def calendar(*events: str) -> bytes:
    body = "".join(events)
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\n{body}END:VCALENDAR\r\n".encode()


def test_the_account_and_the_sync_result_name_what_was_left_out(
    uow: UnitOfWork, tmp_path: Path
) -> None:
    add_pair(
        deps_for(uow, NOW), name="alex", manager_email="alex@example.com",
        assistant_email="sam@example.com", timezone="Europe/Berlin",
    )  # fmt: skip
    path = tmp_path / "feed.ics"
    path.write_bytes(calendar(SERIES, GARBAGE_SEQUENCE, TWINS, UIDLESS))
    account_id = add_account(
        deps_for(uow, NOW), pair="alex", name="feed", provider="ics",
        settings={"location": str(path)},
    ).id
    report = sync_calendar(uow, account_id, IcsFeed(str(path)), NOW, SyncPolicy())
    # 4 of the series (one RDATE kept), the board meeting, both twins, 2 stand-ups
    assert report.events == 9
    assert any("uid:weekly" in s and "RDATE" in s for s in report.skipped)
    assert any("uid:board" in s and "SEQUENCE" in s for s in report.skipped)
    with uow.read() as session:
        account = session.get(Account, account_id)
        assert account is not None and account.state == "ok"
        assert "RDATE" in account.last_error and "uid:weekly" in account.last_error
        assert "(and 1 more)" in account.last_error
        assert any("SEQUENCE" in s for s in account.sync_state["skipped"])
        rows = session.scalars(
            select(EventSnapshot).where(EventSnapshot.account_id == account_id)
        ).all()
        summaries = sorted(r.summary for r in rows)
    assert summaries.count("Weekly") == 4 and "Board" in summaries
    assert "Twin one" in summaries and "Twin two" in summaries
    standups = {r.uid for r in rows if r.summary == "Stand-up"}
    assert len(standups) == 1  # one made-up UID for the whole series

    # The next sync reads a feed with one more event (placed first): the made-up UID
    # holds, so the only change is the new event.
    path.write_bytes(calendar(LATER, SERIES, GARBAGE_SEQUENCE, TWINS, UIDLESS))
    with uow.read() as session:
        token = session.get(Account, account_id).sync_token  # type: ignore[union-attr]
    again = sync_calendar(uow, account_id, IcsFeed(str(path)), NOW, SyncPolicy())
    assert token is not None and again.events == 10
    assert [c.after.uid for c in again.changes if c.after is not None] == ["later"]
    assert all(c.before is None for c in again.changes)
