"""The message the assistant reads: both locales, zones, private events."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from assistant.domain.changes import Change, ChangeKind
from assistant.domain.model import Attendee, EventData, Response
from assistant.domain.notify import Audience, render_changes

START = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)  # 10:00 in Berlin, 04:00 in New York
BOARD = EventData(
    uid="b",
    start=START,
    end=START + timedelta(hours=2),
    summary="Board meeting",
    location="Boardroom",
    attendees=(Attendee("alex@example.com", response=Response.ACCEPTED),),
)
MOVED = replace(BOARD, start=START + timedelta(hours=5), end=START + timedelta(hours=7), location="HQ")
AUD = Audience(
    locale="en",
    manager_zone="Europe/Berlin",
    assistant_zone="America/New_York",
    manager_name="Alex",
    manager_emails=frozenset({"alex@example.com"}),
)


def change(*kinds: ChangeKind, before: EventData | None = BOARD, after: EventData | None = MOVED) -> Change:
    return Change(frozenset(kinds), before, after)


def test_move_shows_before_and_after_in_both_zones() -> None:
    msg = render_changes([change(ChangeKind.MOVED, ChangeKind.RELOCATED)], AUD)
    assert msg.subject == "Schedule change: Moved · New place — Board meeting"
    assert "Thu 26 Nov 10:00–12:00 -> Thu 26 Nov 15:00–17:00" in msg.text
    assert "your time: Thu 26 Nov 09:00–11:00" in msg.text  # New York, after the move
    assert "Boardroom -> HQ" in msg.text
    assert "<s>Boardroom</s> &rarr; HQ" in msg.html


def test_russian_message() -> None:
    aud = replace(AUD, locale="ru", assistant_zone="")
    msg = render_changes([change(ChangeKind.MOVED)], aud)
    assert msg.subject.startswith("Изменение в расписании: Перенесена")
    assert "чт 26 ноября 10:00–12:00 -> чт 26 ноября 15:00–17:00" in msg.text
    assert "ваше время" not in msg.text  # same zone: shown once
    assert 'lang="ru"' in msg.html


def test_several_changes_one_message() -> None:
    cancelled = Change(frozenset({ChangeKind.DELETED}), replace(BOARD, uid="l", summary="Lunch"), None)
    msg = render_changes([change(ChangeKind.MOVED), cancelled], AUD)
    assert msg.subject == "2 changes to Alex's schedule"
    assert "Moved: Board meeting" in msg.text and "Removed: Lunch" in msg.text


def test_private_event_shows_busy_only() -> None:
    secret = replace(BOARD, summary="Cardiologist", location="Clinic", private=True)
    moved = replace(secret, start=START + timedelta(hours=1), end=START + timedelta(hours=3), location="Other clinic")
    msg = render_changes([change(ChangeKind.MOVED, ChangeKind.RELOCATED, before=secret, after=moved)], AUD)
    for text in (msg.subject, msg.text, msg.html):
        assert "Cardiologist" not in text and "Clinic" not in text and "clinic" not in text
    assert "Busy (private)" in msg.text
    assert "10:00–12:00 -> Thu 26 Nov 11:00–13:00" in msg.text  # the time still shows
    allowed = render_changes([change(ChangeKind.MOVED, before=secret, after=moved)], replace(AUD, share_private_details=True))
    assert "Cardiologist" in allowed.text


def test_response_and_all_day() -> None:
    declined = replace(MOVED, attendees=(Attendee("alex@example.com", response=Response.DECLINED),))
    msg = render_changes([change(ChangeKind.RESPONSE_CHANGED, after=declined)], AUD)
    assert "Answer: accepted -> declined" in msg.text
    day = datetime(2026, 11, 27, tzinfo=UTC).date()
    summit = EventData(uid="s", start=START, end=START, summary="Summit", all_day=True,
                       start_date=day, end_date=day + timedelta(days=1))  # fmt: skip
    msg = render_changes([Change(frozenset({ChangeKind.CREATED}), None, summit)], AUD)
    assert "Fri 27 Nov, all day" in msg.text


def test_html_escapes_event_text() -> None:
    evil = replace(BOARD, summary="<script>alert(1)</script>")
    msg = render_changes([Change(frozenset({ChangeKind.CREATED}), None, evil)], AUD)
    assert "<script>" not in msg.html and "&lt;script&gt;" in msg.html
